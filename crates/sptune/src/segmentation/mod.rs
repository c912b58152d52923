//! Semantic segmentation, the seed's second application: a class per pixel.
//!
//! What is here so far, in the order the data flows:
//!
//! - [`data`]: [`SegDataset`] (images with their masks, [`IGNORE`] = 255 marks pixels that
//!   count nowhere) and its two on-disk layouts: a plain `images/` + `masks/` folder
//!   ([`load_mask_folder`]) and Pascal VOC ([`load_voc`]); masks are 8-bit grayscale or
//!   palette PNGs whose values are the class indices; [`write_mask_folder`] writes the first.
//! - [`scenes`]: the built-in offline benchmark: Fashion-MNIST items composed on a larger
//!   canvas with their pixel masks and a background class ([`compose_scenes`]), so the source
//!   task (classifying the items) and the target task (segmenting scenes of them) share the
//!   domain.
//! - [`augment`]: random scale, crop and horizontal flip applied to an image and its mask
//!   together (bilinear for the image, nearest for the mask, padding marked [`IGNORE`]).
//! - [`metrics`]: the confusion matrix over the labelled pixels, per-class IoU, mIoU and pixel
//!   accuracy.
//! - [`model`]: [`SegNet`], a [`Backbone`] (a ResNet or EfficientNet-Lite0, optionally
//!   dilated) with torchvision's FCN or DeepLab-v3 head under torchvision's names, logits
//!   upsampled to the input size.
//!
//! - [`train`]: fine-tuning with every scheme (the classification checkpoint's weights as the
//!   backbone's starting point, the head new), per-pixel cross-entropy over the labelled
//!   pixels; evaluation into a [`Confusion`].
//! - [`picture`]: masks in VOC's colours, and panels of an image beside its masks.
//! - [`saved`]: the fine-tuned network on disk (torchvision's names, sptune's metadata) and
//!   back ([`saved::load`]).
//! - [`run`]: one fine-tune end to end from a classification checkpoint ([`segment`], what
//!   `sptune segment` runs), with forgetting measured on the source task.

pub mod augment;
pub mod data;
pub mod metrics;
pub mod model;
pub mod picture;
pub mod run;
pub mod saved;
pub mod scenes;
pub mod train;

pub use augment::{SegAugment, augment};
pub use data::{IGNORE, SegDataset, SegImage, load_mask_folder, load_voc, write_mask_folder};
pub use metrics::Confusion;
pub use model::{Backbone, SegNet};
pub use run::{SegmentConfig, SegmentOutcome, segment};
pub use scenes::{SceneOptions, compose_scenes, scene_splits};
pub use train::{SegEpoch, SegTrainConfig, evaluate, finetune, predict, starting_point};
