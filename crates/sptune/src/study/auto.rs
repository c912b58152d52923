//! `sptune auto`: pick the scheme, α, β and learning rate for a source model and a target task
//! within a budget, fine-tune with the winner, and show the validation table behind the choice.
//!
//! It is a study ([`super::run`]) with one final run, for the winning scheme only: the search
//! (random points per scheme, successive halving, a time budget) chooses each scheme's best
//! point on a validation split; the scheme whose point has the best validation accuracy wins
//! and is fine-tuned once on all target training images.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::{RunOptions, StudyConfig, chosen, final_checkpoint, store::Store};
use crate::regularizer::Scheme;
use crate::util::Choice;
use crate::{Error, Result};

/// What [`auto`] chose and produced.
#[derive(Clone, Debug)]
pub struct AutoOutcome {
    /// The winning scheme.
    pub winner: Scheme,
    /// Its chosen α, β, lr and backbone multiplier.
    pub point: super::search::Point,
    /// Validation accuracy of the winner's point (0..1).
    pub val_acc: f64,
    /// Source-validation forgetting of the winner's point in the search (points), when
    /// measured.
    pub val_forgetting: Option<f64>,
    /// Test accuracy of the final model (0..1).
    pub test_acc: f64,
    /// Forgetting of the final model on the source test images (points), when measured.
    pub test_forgetting: Option<f64>,
    /// The study's recommendation in plain words (how validation forgetting predicted the
    /// final's, what keeping the source cost, warnings).
    pub recommendation: Vec<String>,
    /// The validation table, Markdown: one row per scheme.
    pub table: String,
    /// Where the model was saved.
    pub out: PathBuf,
}

/// The study that [`auto`] runs for `cfg`: one seed, no freeze sweep, a final run for the
/// winner only. Helper processes (`--jobs`) must be given this config, not `cfg`.
pub fn study_config(cfg: &StudyConfig) -> StudyConfig {
    let mut cfg = cfg.clone();
    cfg.seeds = 1;
    cfg.freeze_sweep.clear();
    cfg.only_best = true;
    cfg
}

/// Runs the search of `cfg` (its seeds and freeze sweep are ignored: one final run of the
/// winner) in `dir`, then copies the winner's model to `out`. Helper processes started on
/// [`study_config`]`(cfg)` in `dir` share the trials.
pub fn auto(
    cfg: &StudyConfig,
    dir: &Path,
    out: &Path,
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<AutoOutcome> {
    let cfg = study_config(cfg);
    let o = super::run(&cfg, dir, device, RunOptions::default(), log)?;
    if !o.complete {
        return Err(Error::Other(format!(
            "{}: the study did not finish",
            dir.display()
        )));
    }
    let store = Store::open_existing(&super::store_path(dir))?;
    let trials = store.trials()?;
    let choice = chosen(&trials, &super::objective::Goal::of(&cfg.search));
    let winner = super::best_scheme(&cfg, &choice)
        .ok_or_else(|| Error::Other("no search trial finished; raise the budget".into()))?;
    let super::Chosen {
        point,
        val_acc,
        forgetting: val_forgetting,
        ..
    } = choice[winner.name()];
    let model = final_checkpoint(dir, winner, 1);
    let bytes = crate::util::read_input(&model, crate::util::MAX_CHECKPOINT_BYTES)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    crate::util::write_atomic(out, &bytes)?;
    let row = o.results.schemes.iter().find(|r| r.scheme == winner.name());
    let test_acc = row.map_or(f64::NAN, |r| r.acc_ci.mean / 100.0);
    let test_forgetting = row.and_then(|r| r.forgetting_ci).map(|f| f.mean);
    let mut table = String::from(
        "| scheme | alpha | beta | lr | backbone lr x | bn | freeze | val acc (%) | val forgetting \
         | trials (stopped early) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for &s in &cfg.schemes {
        let ts: Vec<_> = trials
            .iter()
            .filter(|t| t.phase == "search" && t.scheme == s.name())
            .collect();
        let stopped = ts
            .iter()
            .filter(|t| t.status == super::store::Status::Stopped)
            .count();
        let mark = if s == winner { " **(chosen)**" } else { "" };
        match choice.get(s.name()) {
            Some(super::Chosen {
                point: p,
                val_acc: v,
                forgetting,
                ..
            }) => table.push_str(&format!(
                "| {}{mark} | {:.3e} | {:.3e} | {} | {} | {} | {} | {:.2} | {} | {} ({stopped}) |\n",
                s.name(),
                p.alpha,
                p.beta,
                p.lr,
                p.backbone_lr_mult,
                p.bn.map_or("-", |b| b.name()),
                p.freeze.map_or("-".to_string(), |k| k.to_string()),
                100.0 * v,
                forgetting.map_or("-".to_string(), |f| format!("{f:.2}")),
                ts.len()
            )),
            None => table.push_str(&format!(
                "| {} | - | - | - | - | - | - | - | - | - | {} ({stopped}) |\n",
                s.name(),
                ts.len()
            )),
        }
    }
    Ok(AutoOutcome {
        winner,
        point,
        val_acc,
        val_forgetting,
        test_acc,
        test_forgetting,
        recommendation: o.results.choice.recommendation.clone(),
        table,
        out: out.to_path_buf(),
    })
}
