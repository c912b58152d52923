//! sptune: fine-tuning with parameter regularizers that pull toward the pretrained starting
//! point (L2-SP, L1-SP, GL-SP) instead of toward zero (L2 weight decay).
//!
//! Follow one run from [`run::finetune`]: [`task`] loads the target task ([`data`]),
//! [`models`] builds the network and loads the source checkpoint ([`params`] maps its tensors
//! to checkpoint names), [`regularizer::StartingPoint`] holds `w0`, [`train`] fine-tunes with
//! the [`regularizer`]'s penalty, [`eval`] measures target accuracy, source forgetting and the
//! distance travelled from the starting point.
#![warn(missing_docs)]

pub mod data;
pub mod download;
pub mod error;
pub mod eval;
pub mod fisher;
pub mod models;
pub mod params;
pub mod regularizer;
pub mod run;
pub mod runtime;
pub mod task;
pub mod train;
pub mod util;
pub mod weights;

pub use error::{Error, Result};
pub use util::Choice;
