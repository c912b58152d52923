//! Data sets: loading (IDX files, image folders), class subsets and few-shot subsets,
//! and turning images into normalized, augmented batches.
//!
//! Everything is held in memory as [`Dataset`]: pixels in `[0, 1]`, NCHW, not normalized.
//! Normalization and augmentation happen per batch in [`make_batch`].

mod batcher;
mod idx;
pub(crate) mod image_folder;
pub(crate) mod locate;
mod subsets;
mod transforms;

pub use batcher::{BatchOptions, epoch_order, make_batch};
pub use idx::{load_idx_dir, write_idx};
pub use image_folder::{load_image_folder, load_images, stored_side};
pub use locate::{DataSource, data_folder, peek_classes, resolve_data, would_read};
pub use subsets::{
    channel_stats, held_out, parse_classes, per_class, per_class_indices, select_classes,
    split_val, take_first,
};
pub use transforms::Normalize;

use crate::{Error, Result};

/// An in-memory image classification set; pixels scaled to `[0, 1]`, NOT normalized.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Pixels of all images, `len * channels * height * width` values in NCHW order.
    pub images: Vec<f32>,
    /// Per image: its class, an index into `classes`.
    pub labels: Vec<usize>,
    /// Class names; for IDX sets `"0"`, `"1"`, ... (the numeric label as a string).
    pub classes: Vec<String>,
    /// Channels per image (1: gray, 3: RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

/// A train split and a test split of one task (the test split may be empty).
#[derive(Clone, Debug)]
pub struct Splits {
    /// Images to train (and, after [`split_val`], validate) on.
    pub train: Dataset,
    /// Held-out images to report accuracy on; empty when the source had no test split.
    pub test: Dataset,
}

impl Dataset {
    /// Builds a data set after checking that the pieces agree: `images` holds exactly
    /// `labels.len()` images of `channels x height x width`, every label indexes `classes`.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<usize>,
        classes: Vec<String>,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Self> {
        let ds = Dataset {
            images,
            labels,
            classes,
            channels,
            height,
            width,
        };
        ds.validate()?;
        Ok(ds)
    }

    /// Checks that the public fields agree: `images` holds exactly `len()` images of
    /// `channels x height x width` (a non-empty shape) and every label indexes `classes`.
    pub fn validate(&self) -> Result<()> {
        let (c, h, w) = (self.channels, self.height, self.width);
        let per = c
            .checked_mul(h)
            .and_then(|v| v.checked_mul(w))
            .ok_or_else(|| {
                Error::invalid("dataset", format!("image shape {c}x{h}x{w} overflows"))
            })?;
        if per == 0 {
            return Err(Error::invalid(
                "dataset",
                format!("image shape {c}x{h}x{w} has no pixels"),
            ));
        }
        if Some(self.images.len()) != self.labels.len().checked_mul(per) {
            return Err(Error::invalid(
                "dataset",
                format!(
                    "{} pixel values do not make {} images of {c}x{h}x{w}",
                    self.images.len(),
                    self.labels.len()
                ),
            ));
        }
        if let Some(&bad) = self.labels.iter().find(|&&l| l >= self.classes.len()) {
            return Err(Error::invalid(
                "dataset",
                format!("label {bad} but only {} classes", self.classes.len()),
            ));
        }
        Ok(())
    }

    /// An empty set with the same classes and image shape as `self`.
    pub fn empty_like(&self) -> Dataset {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            classes: self.classes.clone(),
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i` (`channels * height * width` values, CHW).
    ///
    /// Panics when `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Number of images of each class, indexed like `classes`.
    pub fn per_class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.classes.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }

    /// The images at `indices`, in that order (indices must be `< len`).
    pub(crate) fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            images,
            labels,
            ..self.empty_like()
        }
    }
}

/// Replaces line breaks so that a message from another crate stays on one line.
pub(crate) fn one_line(msg: impl std::fmt::Display) -> String {
    msg.to_string()
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
