//! Pixel-level transforms shared by the loaders and the batcher: channel conversion,
//! bilinear resizing, normalization constants.

use crate::{Error, Result};

/// Luma weights (ITU-R BT.601) used for RGB -> gray, as in PIL / torchvision `Grayscale`.
pub(crate) const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Per-channel normalization `(x - mean) / std`, applied to `[0, 1]` pixels in the batcher.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Mean per channel (of the model input, i.e. after channel conversion).
    pub mean: Vec<f32>,
    /// Standard deviation per channel; every entry must be finite and `> 0`.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Normalization with the given per-channel mean and std.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Self {
        Normalize { mean, std }
    }

    /// The identity: mean 0, std 1 for each of `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// The ImageNet statistics used by torchvision's pretrained models (3 channels).
    pub fn imagenet() -> Self {
        Normalize {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// Checks that there is one finite mean and one finite, positive std per channel.
    pub fn validate(&self, channels: usize) -> Result<()> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(Error::invalid(
                "normalize",
                format!(
                    "{} means and {} stds for {channels} channels",
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        for (c, (&m, &s)) in self.mean.iter().zip(&self.std).enumerate() {
            if !m.is_finite() || !s.is_finite() || s <= 0.0 {
                return Err(Error::invalid(
                    "normalize",
                    format!("channel {c}: mean {m}, std {s} (std must be finite and > 0)"),
                ));
            }
        }
        Ok(())
    }
}

/// Converts one CHW image from `from` to `to` channels (1 or 3 each): gray -> RGB replicates
/// the plane, RGB -> gray takes the [`LUMA`] weighted sum. Same count: a copy.
pub(crate) fn convert_channels(img: &[f32], from: usize, to: usize, plane: usize) -> Vec<f32> {
    match (from, to) {
        (1, 3) => {
            let mut out = Vec::with_capacity(3 * plane);
            for _ in 0..3 {
                out.extend_from_slice(&img[..plane]);
            }
            out
        }
        (3, 1) => {
            let (r, rest) = img.split_at(plane);
            let (g, b) = rest.split_at(plane);
            r.iter()
                .zip(g)
                .zip(b)
                .map(|((&r, &g), &b)| LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)
                .collect()
        }
        _ => img.to_vec(),
    }
}

/// Bilinear resize of one CHW image (half-pixel centers, edge clamped, no antialiasing; meant
/// for upsampling or mild scaling).
pub(crate) fn resize_bilinear(
    img: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    nh: usize,
    nw: usize,
) -> Vec<f32> {
    if (h, w) == (nh, nw) {
        return img.to_vec();
    }
    // Source coordinate and weight for each output row / column.
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|o| {
                let s = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f32);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let ys = axis(h, nh);
    let xs = axis(w, nw);
    let mut out = Vec::with_capacity(channels * nh * nw);
    for c in 0..channels {
        let src = &img[c * h * w..(c + 1) * h * w];
        for &(y0, y1, fy) in &ys {
            let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
            for &(x0, x1, fx) in &xs {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bot = r1[x0] + (r1[x1] - r1[x0]) * fx;
                out.push(top + (bot - top) * fy);
            }
        }
    }
    out
}

/// Output size when scaling `(h, w)` so that the shorter side becomes `short`.
pub(crate) fn shorter_side_to(h: usize, w: usize, short: usize) -> (usize, usize) {
    let scale = |long: usize, s: usize| {
        ((long as f64 * short as f64 / s as f64).round() as usize).max(short)
    };
    if h <= w {
        (short, scale(w, h))
    } else {
        (scale(h, w), short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_constant_stays_constant_and_identity_is_copy() {
        let img = vec![0.25f32; 2 * 3 * 3];
        let out = resize_bilinear(&img, 2, 3, 3, 7, 5);
        assert_eq!(out.len(), 2 * 7 * 5);
        assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-6));
        let img: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&img, 1, 2, 3, 2, 3), img);
    }

    #[test]
    fn resize_2x_upsample_matches_half_pixel_bilinear() {
        // 1x2 row [0, 1] -> 1x4: sample positions -0.25, 0.25, 0.75, 1.25 -> clamp -> 0, .25, .75, 1
        let out = resize_bilinear(&[0.0, 1.0], 1, 1, 2, 1, 4);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn shorter_side() {
        assert_eq!(shorter_side_to(10, 20, 5), (5, 10));
        assert_eq!(shorter_side_to(30, 20, 10), (15, 10));
        assert_eq!(shorter_side_to(3, 3, 8), (8, 8));
    }

    #[test]
    fn normalize_validation() {
        assert!(Normalize::identity(3).validate(3).is_ok());
        assert!(Normalize::identity(3).validate(1).is_err());
        assert!(Normalize::new(vec![0.0], vec![0.0]).validate(1).is_err());
    }
}
