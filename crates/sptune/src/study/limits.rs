//! The most a study file (or a `study` flag) may ask for, checked by
//! [`StudyConfig::validate`](super::StudyConfig::validate) before anything is planned or
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

use super::StudyConfig;
use super::config::Method;
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
const SWEEP_DEPTHS: u64 = 8;

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

/// Checks every count of `cfg` against its limit (see the table above).
pub fn check(cfg: &StudyConfig) -> Result<()> {
    let s = &cfg.search;
    at_most("seeds", cfg.seeds, SEEDS)?;
    at_most("search.trials", s.trials, TRIALS)?;
    at_most("search.grid_points", s.grid_points, GRID_POINTS)?;
    at_most("search.eta", s.eta, ETA)?;
    for (key, n) in [
        ("schemes", cfg.schemes.len()),
        ("freeze_sweep", cfg.freeze_sweep.len()),
        ("search.lr", s.lr.len()),
        ("search.backbone_lr_mult", s.backbone_lr_mult.len()),
        ("search.bn", s.bn.len()),
        ("search.freeze", s.freeze.len()),
    ] {
        if n > LIST {
            return Err(Error::invalid(
                key,
                format!("{n} values, above the limit of {LIST}"),
            ));
        }
    }
    if let Some(b) = s.budget_minutes
        && !(b.is_finite() && b > 0.0)
    {
        return Err(Error::invalid(
            "search.budget_minutes",
            format!("{b} is not a positive number of minutes"),
        ));
    }
    let n = planned_runs(cfg);
    if n > PLANNED_RUNS {
        return Err(Error::invalid(
            "study",
            format!(
                "it would plan {n} runs, above the limit of {PLANNED_RUNS} (search points x \
                 schemes, plus seeds x sources per final)"
            ),
        ));
    }
    Ok(())
}

/// The most runs `cfg` plans, counted without building the plan (saturating): per scheme its
/// search points, its finals (sources x seeds), its freeze sweep, and the reference finals.
pub fn planned_runs(cfg: &StudyConfig) -> u64 {
    let s = &cfg.search;
    let len = |n: usize| (n.max(1)) as u64;
    let lrs = len(cfg.lrs().len());
    let finals = (cfg.source.seeds as u64).saturating_mul(cfg.seeds as u64);
    let mut total = finals; // the reference finals
    for &scheme in &cfg.schemes {
        let search = match s.method {
            Method::Random => s.trials as u64,
            Method::Grid => {
                let alphas = if s.alpha_range(scheme) == [0.0, 0.0] {
                    1
                } else {
                    s.grid_points as u64
                };
                [
                    lrs,
                    len(s.backbone_lr_mult.len()),
                    len(s.bn.len()),
                    len(s.freeze.len()),
                ]
                .into_iter()
                .fold(alphas, u64::saturating_mul)
            }
        };
        let sweep = if cfg.freeze_sweep.contains(&scheme) {
            SWEEP_DEPTHS.saturating_mul(cfg.seeds as u64)
        } else {
            0
        };
        total = total
            .saturating_add(search)
            .saturating_add(finals)
            .saturating_add(sweep);
    }
    total
}
