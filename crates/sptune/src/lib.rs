//! sptune: fine-tuning with parameter regularizers that pull toward the pretrained starting
//! point (L2-SP, L1-SP, GL-SP) instead of toward zero (L2 weight decay).
//!
//! Follow one run from [`run::finetune`]: [`task`] loads the target task ([`data`]),
//! [`models`] builds the network and loads the source checkpoint ([`params`] maps its tensors
//! to checkpoint names), [`regularizer::StartingPoint`] holds `w0`, [`train`] fine-tunes with
//! the [`regularizer`]'s penalty, [`eval`] measures target accuracy, source forgetting and the
//! distance travelled from the starting point.
//!
//! Fine-tuning a checkpoint with L2-SP takes a config and one call (here the source model is
//! pretrained first, a small MLP, so that the example runs on its own; it needs Fashion-MNIST:
//! `apt-get install dataset-fashion-mnist`):
//!
//! ```
//! # fn main() -> sptune::Result<()> {
//! # if !std::path::Path::new("/usr/share/datasets/fashion-mnist").exists() { return Ok(()); }
//! use sptune::regularizer::Scheme;
//! use sptune::run::{FinetuneConfig, PretrainConfig, finetune, pretrain};
//! let device = burn::tensor::Device::flex();
//! # let dir = tempfile::tempdir().unwrap();
//! # let source = dir.path().join("source.safetensors");
//! let mut pre = PretrainConfig::default();
//! (pre.data.classes, pre.data.per_class, pre.data.test_limit) = ("0-4".into(), Some(100), Some(500));
//! (pre.model.arch, pre.model.hidden, pre.train.epochs) = ("mlp".into(), vec![64], 2);
//! pretrain(&pre, &device, &mut |_| {})?.save(&source)?;
//!
//! let mut cfg = FinetuneConfig::new(&source, "5-9");
//! (cfg.data.per_class, cfg.data.test_limit) = (Some(20), Some(500));
//! (cfg.train.reg, cfg.train.alpha, cfg.train.epochs) = (Scheme::L2Sp, 0.1, 3);
//! let run = finetune(&cfg, &device, &mut |_| {})?;
//! assert_eq!(run.report.epochs.len(), 3);
//! assert!(run.report.test_acc > 0.4, "5 classes: chance is 0.2");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod data;
pub mod download;
pub mod error;
pub mod eval;
pub mod fisher;
pub mod interpolate;
pub mod kernels;
pub mod models;
pub mod params;
pub mod regularizer;
pub mod run;
pub mod runtime;
pub mod segmentation;
pub mod study;
pub mod task;
pub mod train;
pub mod util;
pub mod weights;

pub use error::{Error, Result};
pub use util::Choice;
