//! Run-time choice of the instruction set. The crate is compiled for the x86-64 baseline
//! (SSE2), so a loop uses AVX-512 or AVX2 + FMA only when it runs inside a function compiled
//! for them: [`simd`] runs a closure that way, inlined into such a function, on the best set
//! [`isa`] finds. Every kernel's inner loops go through it (BatchNorm and ReLU6 ran on SSE2
//! before they did: a third of EfficientNet-Lite0's step). [`Madd`] picks fused multiply-adds
//! where the processor has them and plain ones on the baseline, where `mul_add` is a library
//! call.

use std::sync::OnceLock;

/// `a·b + c`, fused (one rounding) where the processor has FMA.
pub(crate) trait Madd {
    fn madd(a: f32, b: f32, c: f32) -> f32;
}

pub(crate) struct Fused;
impl Madd for Fused {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

pub(crate) struct Plain;
impl Madd for Plain {
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// The instruction sets [`simd`] compiles for.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Isa {
    V4,
    V3,
    Base,
}

pub(crate) fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                return Isa::V4;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::V3;
            }
        }
        Isa::Base
    })
}

/// `f()` compiled for the processor's best instruction set (AVX-512, AVX2 + FMA or the
/// baseline), `f` inlined into the function that enables them (mark a closure
/// `#[inline(always)]`): lane arithmetic then runs on whole vector registers.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v3<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match isa() {
            // SAFETY: isa() saw these features on this processor
            Isa::V4 => return unsafe { v4(f) },
            // SAFETY: as above
            Isa::V3 => return unsafe { v3(f) },
            Isa::Base => {}
        }
    }
    f()
}
