//! Turning images of a [`Dataset`] into normalized, optionally augmented batch tensors.

use super::Dataset;
use super::transforms::{Normalize, convert_channels, resize_bilinear, shorter_side_to};
use crate::{Error, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use rand::seq::SliceRandom;
use std::borrow::Cow;

/// How [`make_batch`] turns stored images into model inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOptions {
    /// Model input channels (1 or 3). When the data set differs, gray is replicated to RGB
    /// or RGB is reduced to gray with luma weights 0.299/0.587/0.114.
    pub channels: usize,
    /// Output height and width (the crop size).
    pub size: usize,
    /// Per-channel normalization, with `channels` entries.
    pub normalize: Normalize,
    /// Training augmentation: a crop of `size x size` at a uniformly random position of the
    /// stored image padded by `pad` pixels on every side. Padding is zero in normalized
    /// space, i.e. the padded pixels equal the channel mean (as if padded with the mean
    /// color before normalization). When false: a center crop (identity when sizes match),
    /// and `pad` is ignored.
    pub random_crop: bool,
    /// Padding in pixels for `random_crop`.
    pub pad: usize,
    /// Random horizontal flip with probability 0.5 (applied after cropping).
    pub hflip: bool,
}

impl BatchOptions {
    /// Evaluation options: center crop, no padding, no flip.
    pub fn eval(channels: usize, size: usize, normalize: Normalize) -> Self {
        BatchOptions {
            channels,
            size,
            normalize,
            random_crop: false,
            pad: 0,
            hflip: false,
        }
    }

    /// Checks the options against a data set with `ds_channels` channels.
    pub fn validate(&self, ds_channels: usize) -> Result<()> {
        let convertible = |c: usize| c == 1 || c == 3;
        if self.channels == 0
            || (ds_channels != self.channels
                && !(convertible(ds_channels) && convertible(self.channels)))
        {
            return Err(Error::invalid(
                "channels",
                format!(
                    "cannot feed {ds_channels}-channel images to a {}-channel input (1 and 3 convert)",
                    self.channels
                ),
            ));
        }
        if self.size == 0 || self.size > 1 << 15 {
            return Err(Error::invalid(
                "size",
                format!("{} (must be between 1 and 32768)", self.size),
            ));
        }
        if self.pad > 1 << 15 {
            return Err(Error::invalid("pad", format!("{} is too large", self.pad)));
        }
        self.normalize.validate(self.channels)
    }
}

/// Builds one batch from the images at `indices`: a `[b, channels, size, size]` float tensor
/// normalized per channel as `(x - mean) / std`, and a `[b]` int tensor of labels, both on
/// `device`.
///
/// Per image, in order: channel conversion (see [`BatchOptions::channels`]); when the stored
/// image is smaller than `size` in either side, a bilinear resize so the shorter side is
/// `size`; normalization; then a random crop with padding (`random_crop`) or a center crop
/// (offset `(side - size) / 2`, rounded down); then a random horizontal flip (`hflip`).
/// Random draws per image, in order: crop row and column offsets (when `random_crop`), then
/// the flip (when `hflip`), so the result is deterministic given `rng`.
///
/// Errors on invalid options (see [`BatchOptions::validate`]), an inconsistent data set
/// (see [`Dataset::validate`]), an empty `indices`, or an index out of range.
pub fn make_batch(
    ds: &Dataset,
    indices: &[usize],
    opts: &BatchOptions,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<(Tensor<4>, Tensor<1, Int>)> {
    let (pixels, labels) = batch_values(ds, indices, opts, rng)?;
    let (b, c, s) = (indices.len(), opts.channels, opts.size);
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [b, c, s, s]), device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device);
    Ok((images, labels))
}

/// The values behind [`make_batch`]: NCHW pixels and labels.
fn batch_values(
    ds: &Dataset,
    indices: &[usize],
    opts: &BatchOptions,
    rng: &mut impl Rng,
) -> Result<(Vec<f32>, Vec<i64>)> {
    opts.validate(ds.channels)?;
    let per_image = ds.image_len();
    if per_image == 0 || Some(ds.images.len()) != ds.len().checked_mul(per_image) {
        ds.validate()?;
    }
    if indices.is_empty() {
        return Err(Error::invalid("batch", "no images selected"));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= ds.len()) {
        return Err(Error::invalid(
            "batch",
            format!("image index {bad} out of range for {} images", ds.len()),
        ));
    }
    let (c, size) = (opts.channels, opts.size);
    let per = c * size * size;
    let mut out = vec![0f32; indices.len() * per];
    let mut labels = Vec::with_capacity(indices.len());
    for (&i, dst) in indices.iter().zip(out.chunks_exact_mut(per)) {
        render(ds, i, opts, rng, dst);
        labels.push(ds.labels[i] as i64);
    }
    Ok((out, labels))
}

/// Writes image `i` of `ds` into `dst` (`channels * size * size` values).
fn render(ds: &Dataset, i: usize, opts: &BatchOptions, rng: &mut impl Rng, dst: &mut [f32]) {
    let (c, size) = (opts.channels, opts.size);
    let (mut h, mut w) = (ds.height, ds.width);
    let mut img = Cow::Borrowed(ds.image(i));
    if ds.channels != c {
        img = Cow::Owned(convert_channels(&img, ds.channels, c, h * w));
    }
    if h < size || w < size {
        let (nh, nw) = shorter_side_to(h, w, size);
        img = Cow::Owned(resize_bilinear(&img, c, h, w, nh, nw));
        (h, w) = (nh, nw);
    }
    // Top-left corner of the crop in stored-image coordinates (may be negative: padding).
    let (top, left) = if opts.random_crop {
        let p = opts.pad as isize;
        let max_y = (h + 2 * opts.pad - size) as u64;
        let max_x = (w + 2 * opts.pad - size) as u64;
        let oy = rng.random_range(0..=max_y) as isize;
        let ox = rng.random_range(0..=max_x) as isize;
        (oy - p, ox - p)
    } else {
        (((h - size) / 2) as isize, ((w - size) / 2) as isize)
    };
    let flip = opts.hflip && rng.random_bool(0.5);
    let (hi, wi) = (h as isize, w as isize);
    for ch in 0..c {
        let (mean, std) = (opts.normalize.mean[ch], opts.normalize.std[ch]);
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        let out_plane = &mut dst[ch * size * size..(ch + 1) * size * size];
        for (y, out_row) in out_plane.chunks_exact_mut(size).enumerate() {
            let sy = top + y as isize;
            if sy < 0 || sy >= hi {
                out_row.fill(0.0);
                continue;
            }
            let row = &plane[sy as usize * w..(sy as usize + 1) * w];
            for (x, o) in out_row.iter_mut().enumerate() {
                let xc = if flip { size - 1 - x } else { x };
                let sx = left + xc as isize;
                *o = if sx < 0 || sx >= wi {
                    0.0
                } else {
                    (row[sx as usize] - mean) / std
                };
            }
        }
    }
}

/// A seeded epoch order: the indices `0..n` shuffled with `rng`.
pub fn epoch_order(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(h: usize, w: usize) -> Dataset {
        let images = (0..h * w).map(|v| v as f32).collect();
        Dataset::new(images, vec![0], vec!["a".into()], 1, h, w).unwrap()
    }

    #[test]
    fn padded_random_crop_stays_within_padding() {
        // 2x2 image, pad 1, crop 2: offsets range over 0..=2 in both axes; every output must
        // be a stored pixel or the (normalized) zero pad, and over many draws all 9 corners
        // must occur.
        let ds = ramp(2, 2);
        let mut opts = BatchOptions::eval(1, 2, Normalize::new(vec![-1.0], vec![1.0]));
        opts.random_crop = true;
        opts.pad = 1;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let (v, _) = batch_values(&ds, &[0], &opts, &mut rng).unwrap();
            // stored pixels 0..3 become 1..4 after (x - (-1)) / 1; pad is 0.
            assert!(v.iter().all(|&x| x == 0.0 || (1.0..=4.0).contains(&x)));
            seen.insert(v.iter().map(|&x| x as i32).collect::<Vec<_>>());
        }
        assert_eq!(seen.len(), 9, "{seen:?}");
        assert!(seen.contains(&vec![0, 0, 0, 1])); // top-left corner: only pixel (0,0) shows
        assert!(seen.contains(&vec![4, 0, 0, 0])); // bottom-right corner: only pixel (1,1)
    }

    #[test]
    fn smaller_image_is_upsampled() {
        let ds = Dataset::new(vec![0.5; 4], vec![0], vec!["a".into()], 1, 2, 2).unwrap();
        let opts = BatchOptions::eval(1, 5, Normalize::identity(1));
        let (v, _) = batch_values(&ds, &[0], &opts, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert_eq!(v, vec![0.5; 25]);
    }
}
