//! Element types of checkpoint tensors and their conversion to f32, shared by the safetensors
//! reader ([`super::checkpoint`]) and the PyTorch reader ([`super::pytorch`]).

/// An element type a checkpoint tensor may have, as far as sptune reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// IEEE double.
    F64,
    /// IEEE single.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16 (the upper half of an f32).
    BF16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed byte.
    I8,
    /// Unsigned byte (also booleans, stored as 0 / 1).
    U8,
}

/// The byte order of a tensor's raw data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Little-endian (safetensors files).
    Little,
    /// The machine's own (what burn-store's PyTorch reader hands out).
    Native,
}

/// IEEE 754 half -> f32 (exact; subnormals, infinities and NaNs included).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: value = f * 2^-24
            let v = f as f32 * (2.0f32).powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 -> f32 (exact).
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Converts raw tensor bytes of element type `elem` in byte order `order` to f32 values
/// (integers by `as`; a trailing partial element is ignored).
pub(crate) fn to_f32(elem: Elem, bytes: &[u8], order: Order) -> Vec<f32> {
    let u16_of = |c: &[u8]| {
        let a = [c[0], c[1]];
        match order {
            Order::Little => u16::from_le_bytes(a),
            Order::Native => u16::from_ne_bytes(a),
        }
    };
    let u32_of = |c: &[u8]| {
        let a = [c[0], c[1], c[2], c[3]];
        match order {
            Order::Little => u32::from_le_bytes(a),
            Order::Native => u32::from_ne_bytes(a),
        }
    };
    let u64_of = |c: &[u8]| {
        let a: [u8; 8] = c.try_into().expect("8-byte chunk");
        match order {
            Order::Little => u64::from_le_bytes(a),
            Order::Native => u64::from_ne_bytes(a),
        }
    };
    match elem {
        Elem::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_bits(u64_of(c)) as f32)
            .collect(),
        Elem::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_bits(u32_of(c)))
            .collect(),
        Elem::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16_of(c)))
            .collect(),
        Elem::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16_to_f32(u16_of(c)))
            .collect(),
        Elem::I64 => bytes
            .chunks_exact(8)
            .map(|c| u64_of(c) as i64 as f32)
            .collect(),
        Elem::I32 => bytes
            .chunks_exact(4)
            .map(|c| u32_of(c) as i32 as f32)
            .collect(),
        Elem::I8 => bytes.iter().map(|v| *v as i8 as f32).collect(),
        Elem::U8 => bytes.iter().map(|v| *v as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_ieee() {
        // IEEE 754 half: 0x3c00 = 1.0, 0xc000 = -2.0, 0x3555 ~ 0.33325, 0x0001 = 2^-24
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert!((f16_to_f32(0x3555) - 0.333_251_95).abs() < 1e-7);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn byte_orders_and_types() {
        let le: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(to_f32(Elem::F32, &le, Order::Little), [1.5, -2.0]);
        let ne: Vec<u8> = [3.25f64].iter().flat_map(|x| x.to_ne_bytes()).collect();
        assert_eq!(to_f32(Elem::F64, &ne, Order::Native), [3.25]);
        let i: Vec<u8> = (-7i64).to_le_bytes().to_vec();
        assert_eq!(to_f32(Elem::I64, &i, Order::Little), [-7.0]);
        assert_eq!(
            to_f32(Elem::I32, &(-3i32).to_ne_bytes(), Order::Native),
            [-3.0]
        );
        assert_eq!(
            to_f32(Elem::BF16, &0x3f80u16.to_le_bytes(), Order::Little),
            [1.0]
        );
        assert_eq!(to_f32(Elem::I8, &[0xff], Order::Little), [-1.0]);
        assert_eq!(to_f32(Elem::U8, &[0xff], Order::Little), [255.0]);
    }
}
