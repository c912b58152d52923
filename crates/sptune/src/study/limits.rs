//! The most a study file (or a `study` flag) may ask for, checked by
//! [`StudyConfig::validate`](super::StudyConfig::validate) (with
//! [`StudyConfig::planned_runs`](super::StudyConfig::planned_runs)) before anything is planned or
//! allocated: a count above its limit is refused with a one-line error naming the key and the
//! limit, so a typo such as `seeds = 1000000000` fails in milliseconds instead of filling the
//! memory while the plan is built.
//!
//! | key | limit |
//! |---|---|
//! | `seeds` | [`SEEDS`] |
//! | `source.seeds` | [`super::config::MAX_SOURCE_SEEDS`] |
//! | `search.trials` | [`TRIALS`] per scheme |
//! | `search.grid_points` | [`GRID_POINTS`] |
//! | `search.eta` | [`ETA`] |
//! | `schemes`, `freeze_sweep`, `search.lr`, `search.backbone_lr_mult`, `search.bn`, `search.freeze` | [`LIST`] values each |
//! | `train.epochs` | [`crate::train::MAX_EPOCHS`] |
//! | `train.batch_size` | [`crate::train::MAX_BATCH_SIZE`] |
//! | every run the study would plan (search points, finals, freeze sweep, reference runs) | [`PLANNED_RUNS`] |
//! | `search.budget_minutes` | finite and above 0 |

use crate::{Error, Result};

/// Final seeds per scheme.
pub const SEEDS: usize = 100;
/// Random-search trials per scheme.
pub const TRIALS: usize = 10_000;
/// Grid values of α.
pub const GRID_POINTS: usize = 1_000;
/// Successive halving's η.
pub const ETA: usize = 100;
/// Values in one list of the study file.
pub const LIST: usize = 100;
/// Runs a study may plan in all.
pub const PLANNED_RUNS: u64 = 100_000;
/// Freeze depths a freeze sweep is counted with, before the source's stages are known.
pub const SWEEP_DEPTHS: u64 = 8;

/// `n` is at most `limit`, or an error naming `key` and the limit.
pub fn at_most(key: &str, n: usize, limit: usize) -> Result<()> {
    if n > limit {
        return Err(Error::invalid(
            key,
            format!("{n} is above the limit of {limit}"),
        ));
    }
    Ok(())
}
