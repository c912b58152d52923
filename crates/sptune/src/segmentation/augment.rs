//! Random scale, crop and horizontal flip, applied to an image and its mask together.
//!
//! One draw per image: a scale `s` uniform in `scale`, then the image resampled to
//! `round(h·s) × round(w·s)` (bilinear, pixel centres aligned: output pixel `o` reads source
//! position `(o + ½)/s − ½`) and the mask with the same mapping by nearest neighbour (source
//! pixel `⌊(o + ½)/s⌋`); then, with `crop`, padding to at least the crop size (image 0, mask
//! [`IGNORE`]) and a crop at a uniform offset; then, with `flip`, a mirror image with
//! probability ½. The mask is never interpolated, so its values stay classes.

use rand::Rng;

use super::{IGNORE, SegImage};

/// What [`augment`] draws.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SegAugment {
    /// The range of the scale factor (`(1.0, 1.0)`: no rescaling).
    pub scale: (f32, f32),
    /// The crop `(height, width)`, or none (the whole scaled image).
    pub crop: Option<(usize, usize)>,
    /// Mirror left-right with probability ½.
    pub flip: bool,
}

impl Default for SegAugment {
    /// torchvision's segmentation reference recipe: scale 0.5-2, no crop given, flips.
    fn default() -> Self {
        SegAugment {
            scale: (0.5, 2.0),
            crop: None,
            flip: true,
        }
    }
}

/// `im` (with `channels` channels) augmented as [`SegAugment`] says, with draws from `rng`.
pub fn augment(im: &SegImage, channels: usize, a: &SegAugment, rng: &mut impl Rng) -> SegImage {
    let (lo, hi) = (a.scale.0.min(a.scale.1), a.scale.0.max(a.scale.1));
    let s = if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    };
    let mut out = if (s - 1.0).abs() < 1e-6 {
        im.clone()
    } else {
        rescale(im, channels, s)
    };
    if let Some((ch, cw)) = a.crop {
        out = pad_to(&out, channels, ch, cw);
        let top = rng.random_range(0..=out.height - ch);
        let left = rng.random_range(0..=out.width - cw);
        out = crop(&out, channels, top, left, ch, cw);
    }
    if a.flip && rng.random_bool(0.5) {
        out = flip(&out, channels);
    }
    out
}

/// `im` resampled by the factor `s` (see the module's documentation).
pub fn rescale(im: &SegImage, channels: usize, s: f32) -> SegImage {
    let (h, w) = (im.height, im.width);
    let nh = ((h as f32 * s).round() as usize).max(1);
    let nw = ((w as f32 * s).round() as usize).max(1);
    // per output coordinate: the two source neighbours and the weight of the second
    let lin = |n: usize, src: usize, f: f32| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|o| {
                let x = ((o as f32 + 0.5) / f - 0.5).clamp(0.0, (src - 1) as f32);
                let x0 = x.floor() as usize;
                let x1 = (x0 + 1).min(src - 1);
                (x0, x1, x - x0 as f32)
            })
            .collect()
    };
    let near = |n: usize, src: usize, f: f32| -> Vec<usize> {
        (0..n)
            .map(|o| (((o as f32 + 0.5) / f).floor() as usize).min(src - 1))
            .collect()
    };
    let (fy, fx) = (nh as f32 / h as f32, nw as f32 / w as f32);
    let (ly, lx) = (lin(nh, h, fy), lin(nw, w, fx));
    let (ny, nx) = (near(nh, h, fy), near(nw, w, fx));
    let mut pixels = vec![0f32; channels * nh * nw];
    for c in 0..channels {
        let src = &im.pixels[c * h * w..(c + 1) * h * w];
        let dst = &mut pixels[c * nh * nw..(c + 1) * nh * nw];
        for (oy, &(y0, y1, wy)) in ly.iter().enumerate() {
            for (ox, &(x0, x1, wx)) in lx.iter().enumerate() {
                let top = src[y0 * w + x0] * (1.0 - wx) + src[y0 * w + x1] * wx;
                let bot = src[y1 * w + x0] * (1.0 - wx) + src[y1 * w + x1] * wx;
                dst[oy * nw + ox] = top * (1.0 - wy) + bot * wy;
            }
        }
    }
    let mut mask = vec![0u8; nh * nw];
    for (oy, &sy) in ny.iter().enumerate() {
        for (ox, &sx) in nx.iter().enumerate() {
            mask[oy * nw + ox] = im.mask[sy * w + sx];
        }
    }
    SegImage {
        pixels,
        mask,
        height: nh,
        width: nw,
    }
}

/// `im` padded at the bottom and right to at least `ch × cw` (image 0, mask [`IGNORE`]).
fn pad_to(im: &SegImage, channels: usize, ch: usize, cw: usize) -> SegImage {
    let (h, w) = (im.height, im.width);
    let (nh, nw) = (h.max(ch), w.max(cw));
    if (nh, nw) == (h, w) {
        return im.clone();
    }
    let mut pixels = vec![0f32; channels * nh * nw];
    let mut mask = vec![IGNORE; nh * nw];
    for c in 0..channels {
        for y in 0..h {
            pixels[(c * nh + y) * nw..][..w].copy_from_slice(&im.pixels[(c * h + y) * w..][..w]);
        }
    }
    for y in 0..h {
        mask[y * nw..][..w].copy_from_slice(&im.mask[y * w..][..w]);
    }
    SegImage {
        pixels,
        mask,
        height: nh,
        width: nw,
    }
}

/// The `ch × cw` window of `im` at `(top, left)`.
fn crop(im: &SegImage, channels: usize, top: usize, left: usize, ch: usize, cw: usize) -> SegImage {
    let (h, w) = (im.height, im.width);
    let mut pixels = Vec::with_capacity(channels * ch * cw);
    for c in 0..channels {
        for y in top..top + ch {
            pixels.extend_from_slice(&im.pixels[(c * h + y) * w + left..][..cw]);
        }
    }
    let mut mask = Vec::with_capacity(ch * cw);
    for y in top..top + ch {
        mask.extend_from_slice(&im.mask[y * w + left..][..cw]);
    }
    SegImage {
        pixels,
        mask,
        height: ch,
        width: cw,
    }
}

/// `im` mirrored left-right.
fn flip(im: &SegImage, channels: usize) -> SegImage {
    let w = im.width;
    let mut out = im.clone();
    for row in out.pixels.chunks_mut(w).take(channels * im.height) {
        row.reverse();
    }
    for row in out.mask.chunks_mut(w) {
        row.reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// An image of 8x8 blocks, each block one gray level `(k + 1) / 64` for a block index `k`
    /// unique in the image, with a second channel `1 − level`; its mask is the block index, so
    /// the mask can be read back from the image. A 3-channel case also covers the planes.
    fn blocks(bh: usize, bw: usize, channels: usize) -> SegImage {
        let (h, w) = (bh * 8, bw * 8);
        let mut pixels = vec![0f32; channels * h * w];
        let mut mask = vec![0u8; h * w];
        for y in 0..h {
            for x in 0..w {
                let k = (y / 8) * bw + x / 8;
                mask[y * w + x] = k as u8;
                for c in 0..channels {
                    let level = (k + 1) as f32 / 64.0;
                    pixels[(c * h + y) * w + x] = if c % 2 == 0 { level } else { 1.0 - level };
                }
            }
        }
        SegImage {
            pixels,
            mask,
            height: h,
            width: w,
        }
    }

    /// Under every augmentation the mask still labels the image: at each labelled pixel whose
    /// neighbourhood (wide enough for bilinear's reach at the largest scale) carries one label,
    /// every channel's value is the one that label's block had. A flip of only one of the two,
    /// a crop offset applied to one, or a scale mapping that differs would break it away from
    /// the block edges.
    #[test]
    fn image_and_mask_stay_aligned() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for channels in [1, 3] {
            let im = blocks(5, 6, channels);
            let a = SegAugment {
                scale: (0.5, 2.0),
                crop: Some((37, 29)),
                flip: true,
            };
            let (mut flipped, mut checked) = (0, 0);
            for trial in 0..60 {
                let out = augment(&im, channels, &a, &mut rng);
                assert_eq!((out.height, out.width), (37, 29), "trial {trial}");
                assert_eq!(out.mask.len(), 37 * 29);
                let (h, w) = (out.height, out.width);
                // ceil(2.0) + 2 output pixels: past bilinear's reach at scale 2; pixels nearer
                // the crop's edge have neighbours outside it and are not judged
                let r = 4;
                for y in r..h - r {
                    for x in r..w - r {
                        let m = out.mask[y * w + x];
                        if m == IGNORE {
                            continue;
                        }
                        let uniform = (y - r..=y + r)
                            .all(|yy| (x - r..=x + r).all(|xx| out.mask[yy * w + xx] == m));
                        if !uniform {
                            continue;
                        }
                        let level = (m as f32 + 1.0) / 64.0;
                        for c in 0..channels {
                            let want = if c % 2 == 0 { level } else { 1.0 - level };
                            let got = out.pixels[(c * h + y) * w + x];
                            assert!(
                                (got - want).abs() < 1e-5,
                                "trial {trial}, channel {c}, ({y}, {x}): image {got} but mask {m}"
                            );
                        }
                        checked += 1;
                    }
                }
                // a mirrored block order shows in the first labelled row
                let row: Vec<u8> = out.mask[..w]
                    .iter()
                    .copied()
                    .filter(|&v| v != IGNORE)
                    .collect();
                if row.windows(2).any(|p| p[0] > p[1]) {
                    flipped += 1;
                }
            }
            assert!(checked > 1_000, "only {checked} pixels checked");
            assert!(flipped > 5 && flipped < 55, "{flipped} of 60 flipped");
        }
    }

    /// Padding beyond the scaled image is ignored in the mask and zero in the image.
    #[test]
    fn padding_is_ignored() {
        let im = blocks(1, 1, 1);
        let a = SegAugment {
            scale: (1.0, 1.0),
            crop: Some((12, 12)),
            flip: false,
        };
        let out = augment(&im, 1, &a, &mut ChaCha8Rng::seed_from_u64(0));
        let ignored = out.mask.iter().filter(|&&v| v == IGNORE).count();
        assert_eq!(ignored, 12 * 12 - 8 * 8);
        for (v, m) in out.pixels.iter().zip(&out.mask) {
            if *m == IGNORE {
                assert_eq!(*v, 0.0);
            }
        }
    }

    /// Scale 2 by nearest neighbour doubles every mask pixel; scale 1 leaves the image as it
    /// was.
    #[test]
    fn rescale_maps_pixels_as_documented() {
        let im = blocks(2, 3, 1);
        let big = rescale(&im, 1, 2.0);
        assert_eq!((big.height, big.width), (32, 48));
        for y in 0..32 {
            for x in 0..48 {
                assert_eq!(big.mask[y * 48 + x], im.mask[(y / 2) * 24 + x / 2]);
            }
        }
        let a = SegAugment {
            scale: (1.0, 1.0),
            crop: None,
            flip: false,
        };
        assert_eq!(augment(&im, 1, &a, &mut ChaCha8Rng::seed_from_u64(0)), im);
    }
}
