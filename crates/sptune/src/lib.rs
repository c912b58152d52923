//! sptune: fine-tuning with parameter regularizers that pull toward the pretrained starting
//! point (L2-SP, L1-SP, GL-SP) instead of toward zero (L2 weight decay).
//!
//! Follow one run: [`data`] loads a task, [`models`] builds and loads a network
//! ([`params`] maps its tensors to checkpoint names), [`train`] fine-tunes it with a
//! [`regularizer`], [`eval`] measures target accuracy, source forgetting and the distance
//! travelled from the starting point.
#![warn(missing_docs)]

pub mod data;
pub mod download;
pub mod error;
pub mod eval;
pub mod fisher;
pub mod models;
pub mod params;
pub mod regularizer;
pub mod runtime;
pub mod task;
pub mod train;
pub mod util;
pub mod weights;

pub use error::{Error, Result};
