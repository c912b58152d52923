//! `sptune auto`: pick the scheme, α, β and learning rate for a source model and a target task
//! within a budget, fine-tune with the winner, and show the validation table behind the choice.
//!
//! It is a study ([`super::run`]) with one final run, for the winning scheme only: the search
//! (random points per scheme, successive halving, a time budget) chooses each scheme's best
//! point on a validation split; the scheme whose point has the best validation accuracy wins
//! and is fine-tuned once on all target training images.
//!
//! Under a forgetting budget, the target-only choice interpolated toward the source
//! ([`crate::interpolate`], WiSE-FT) competes with the budget's own choice: the weight `a` is
//! chosen on the same validation images (target and source) as the search's points, and an
//! interpolated model that meets the budget is what [`auto`] returns ([`Interpolated`]) when
//! its target validation accuracy is higher, or when no search point met the budget (the
//! budget's own choice is then only the least-forgetting point, and the user asked for the
//! budget).

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::{RunOptions, StudyConfig, chosen, final_checkpoint, store::Store};
use crate::models::checkpoint::Checkpoint;
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
    /// The interpolation tried under a budget (None without one, or without source validation
    /// images); `returned` says whether `out` is it.
    pub interpolated: Option<Interpolated>,
}

/// A fine-tune interpolated toward the source, `θ(a) = (1 − a)·θ0 + a·θ`: the target-only
/// choice, or (when no search point met the budget and the target-only choice is the budget's
/// own) the budget's choice.
#[derive(Clone, Debug)]
pub struct Interpolated {
    /// The interpolated point's scheme (the target-only choice's, or the budget's own).
    pub scheme: Scheme,
    /// Its point.
    pub point: super::search::Point,
    /// The chosen weight (the largest target validation accuracy within the budget).
    pub a: f64,
    /// Target validation accuracy at `a` (0..1), the search's validation split.
    pub val_acc: f64,
    /// Source-validation forgetting at `a` (points).
    pub val_forgetting: f64,
    /// Per weight tried: `(a, target validation accuracy, source-validation forgetting)`.
    pub sweep: Vec<(f64, f64, f64)>,
    /// Whether it beat the budget's own choice and is the model returned.
    pub returned: bool,
    /// The fine-tune interpolated (the point's final on all target training images): the
    /// target-only choice's reference final, or the budget's own final when that is the point.
    pub tuned: PathBuf,
}

/// The weights [`auto`] tries when it interpolates.
pub const AUTO_SWEEP: [f64; 11] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The study that [`auto`] runs for `cfg`: one seed, no freeze sweep, a final run for the
/// winner only. Under an objective that weighs forgetting (`budget`, `tradeoff`), when
/// `[search] bn` is not given, the search also chooses the BatchNorm mode between `train` and
/// `frozen`: with batch statistics BatchNorm alone forgets, whatever the weights (measured on
/// Fashion-MNIST 0-4 -> 5-9, ResNet-18 width 16: the source's own weights with statistics
/// recalibrated on the target forget 11.1 points, and every point auto searched in `train`
/// mode forgot at least 11.4 against a budget of 3). Helper processes (`--jobs`) must be given
/// this config, not `cfg`.
pub fn study_config(cfg: &StudyConfig) -> StudyConfig {
    let mut cfg = cfg.clone();
    cfg.seeds = 1;
    cfg.freeze_sweep.clear();
    cfg.only_best = true;
    if cfg.search.objective != super::config::Objective::Target && cfg.search.bn.is_empty() {
        cfg.search.bn = vec![crate::train::BnMode::Train, crate::train::BnMode::Frozen];
    }
    cfg
}

/// Checks `out` against the inputs and claims `dir` for [`auto`] ([`super::claim`]: the study
/// is checked, its folder created and locked). [`auto`] does this itself; call it first to
/// start helper processes before it.
pub fn prepare(cfg: &StudyConfig, dir: &Path, out: &Path) -> Result<super::LeaderLock> {
    let cfg = study_config(cfg);
    let inputs = super::study_inputs(&cfg);
    crate::util::check_output(
        out,
        &inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    )?;
    super::claim(&cfg, dir)
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
    let _lock = if super::LeaderLock::held_here(dir) {
        None // the caller prepared the folder
    } else {
        Some(prepare(cfg, dir, out)?)
    };
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
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let row = o.results.schemes.iter().find(|r| r.scheme == winner.name());
    let mut test_acc = row.map_or(f64::NAN, |r| r.acc_ci.mean / 100.0);
    let mut test_forgetting = row.and_then(|r| r.forgetting_ci).map(|f| f.mean);
    let mut recommendation = o.results.choice.recommendation.clone();
    // the budget's own choice may miss the budget (no search point met it): an interpolated
    // model that meets it is then returned whatever its accuracy
    let own_meets = match (budget_of(&cfg), val_forgetting) {
        (Some(b), Some(f)) => f <= b,
        _ => true,
    };
    let mut interpolated = None;
    if let Some(budget) = budget_of(&cfg) {
        // what to interpolate: the target-only choice, and when no point met the budget, the
        // budget's own choice too (a frozen-BatchNorm one keeps the source's statistics, so it
        // reaches the source itself at a = 0); the better within the budget is kept
        let mut targets = vec![];
        if let Some((scheme, p)) = super::reference_point(&cfg, &trials) {
            let tuned = dir
                .join("reference")
                .join(format!("reference_{}_seed1.safetensors", scheme.name()));
            targets.push((scheme, p, tuned, "search"));
        }
        if !own_meets {
            targets.push((winner, point, final_checkpoint(dir, winner, 1), "chosen"));
        }
        for (scheme, p, tuned, role) in targets {
            let ip =
                interpolate_toward_source(&cfg, dir, scheme, p, tuned, role, budget, device, log)?;
            if let Some(ip) = ip
                && interpolated
                    .as_ref()
                    .is_none_or(|best: &Interpolated| ip.val_acc > best.val_acc)
            {
                interpolated = Some(ip);
            }
        }
    }
    match interpolated.as_mut() {
        Some(ip) if ip.val_acc > val_acc || !own_meets => {
            ip.returned = true;
            let (acc, forgetting) = save_interpolated(&cfg, dir, ip, out, device)?;
            let versus = if own_meets {
                format!("above the budget's own choice ({:.1} %)", 100.0 * val_acc)
            } else {
                format!(
                    "where no search point met the budget (the least-forgetting one forgets \
                     {:.1} points)",
                    val_forgetting.unwrap_or(f64::NAN)
                )
            };
            recommendation.push(format!(
                "Returned instead: {} ({}) interpolated toward the source at a = {}: on the \
                 validation images it reaches {:.1} % target accuracy at {:.1} points of \
                 source-validation forgetting, within the budget of {}, {versus}; the model in \
                 {} reaches {:.1} % target test accuracy{}.",
                ip.scheme.name(),
                ip.point.describe(),
                ip.a,
                100.0 * ip.val_acc,
                ip.val_forgetting,
                cfg.search.max_forgetting,
                out.display(),
                100.0 * acc,
                forgetting.map_or(String::new(), |f| format!(
                    " and forgets {f:.1} points of source test accuracy"
                ))
            ));
            test_acc = acc;
            test_forgetting = forgetting;
        }
        other => {
            if let Some(ip) = other {
                recommendation.push(format!(
                    "Interpolating {} toward the source did not do better: its best weight \
                     within the budget, a = {}, reaches {:.1} % target validation accuracy \
                     ({:.1} points of forgetting), not above {:.1} %.",
                    ip.scheme.name(),
                    ip.a,
                    100.0 * ip.val_acc,
                    ip.val_forgetting,
                    100.0 * val_acc
                ));
            }
            let model = final_checkpoint(dir, winner, 1);
            let bytes = crate::util::read_input(&model, crate::util::MAX_CHECKPOINT_BYTES)?;
            crate::util::write_atomic(out, &bytes)?;
        }
    }
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
        recommendation,
        table,
        out: out.to_path_buf(),
        interpolated,
    })
}

/// The forgetting budget, when the objective is one and the search measured forgetting.
fn budget_of(cfg: &StudyConfig) -> Option<f64> {
    (cfg.search.objective == super::config::Objective::Budget).then_some(cfg.search.max_forgetting)
}

/// The point `(scheme, point)` fine-tuned as in the search (seed 0, the validation split held
/// out), interpolated toward the source at [`AUTO_SWEEP`] and measured on the target
/// validation split and the source validation images; the weight of best target validation
/// accuracy within `budget` (ties: the lower forgetting). `tuned` is the point's final, what
/// [`save_interpolated`] interpolates; `role` names the search fine-tune's file
/// (`DIR/interpolate/ROLE_SCHEME.safetensors`). None when no source validation images exist,
/// or no weight meets the budget.
#[allow(clippy::too_many_arguments)]
fn interpolate_toward_source(
    cfg: &StudyConfig,
    dir: &Path,
    scheme: Scheme,
    point: super::search::Point,
    tuned: PathBuf,
    role: &str,
    budget: f64,
    device: &Device,
    log: &mut dyn FnMut(&str),
) -> Result<Option<Interpolated>> {
    let source = Checkpoint::read(&super::source_path(cfg, dir, 0))?;
    let spec = source.spec_or_infer_as(cfg.source.init_arch.as_deref(), "--init-arch")?;
    let Some(images) = super::source_val::load(cfg, &spec)? else {
        return Ok(None);
    };
    let Some(source_val) = images.val else {
        return Ok(None);
    };
    let before = crate::eval::forgetting(&source, &source, &source_val, device)?.source_acc;
    // the search's fine-tune of the target-only point, kept under interpolate/ (reused when
    // auto is run again on the same folder)
    let mut ft = super::finetune_config(cfg, dir, scheme, &point, 0, 0);
    ft.data.val_fraction = cfg.search.val_fraction;
    let path = dir
        .join("interpolate")
        .join(format!("{role}_{}.safetensors", scheme.name()));
    if !path.exists() {
        log(&format!(
            "[interpolate] {} as in the search, to interpolate toward the source",
            scheme.name()
        ));
        ft.out = Some(path.clone());
        crate::run::finetune(&ft, device, &mut |_| {})?;
    }
    let searched = Checkpoint::read(&path)?;
    let mut data = ft.data.clone();
    if data.resize == 0 {
        data.resize = crate::data::stored_side(spec.input[1]);
    }
    let task = crate::task::load(&data, spec.input[0])?;
    if task.val.is_empty() {
        return Ok(None);
    }
    let pts = crate::interpolate::sweep(
        &source,
        &searched,
        &AUTO_SWEEP,
        &task.train,
        &task.val,
        Some(&source_val),
        device,
    )?;
    let sweep: Vec<(f64, f64, f64)> = pts
        .iter()
        .map(|p| {
            let f = 100.0 * (before - p.source_acc.unwrap_or(f64::NAN));
            (p.a, p.target_acc, f)
        })
        .collect();
    let best = sweep
        .iter()
        .filter(|(_, _, f)| *f <= budget)
        .copied()
        .reduce(|b, x| {
            if x.1 > b.1 || (x.1 == b.1 && x.2 < b.2) {
                x
            } else {
                b
            }
        });
    Ok(best.map(|(a, val_acc, val_forgetting)| Interpolated {
        scheme,
        point,
        a,
        val_acc,
        val_forgetting,
        sweep,
        returned: false,
        tuned,
    }))
}

/// Writes the final run `ip.tuned` interpolated at `ip.a` to `out` (BatchNorm
/// recalibrated on all target training images); returns its target test accuracy and its
/// forgetting on the source test images.
fn save_interpolated(
    cfg: &StudyConfig,
    dir: &Path,
    ip: &Interpolated,
    out: &Path,
    device: &Device,
) -> Result<(f64, Option<f64>)> {
    let source = Checkpoint::read(&super::source_path(cfg, dir, 0))?;
    let reference = &ip.tuned;
    let tuned = Checkpoint::read(reference)?;
    let spec = tuned.spec()?;
    let mut data = super::finetune_config(cfg, dir, ip.scheme, &ip.point, 0, 1).data;
    data.val_fraction = 0.0;
    if data.resize == 0 {
        data.resize = crate::data::stored_side(spec.input[1]);
    }
    let task = crate::task::load(&data, spec.input[0])?;
    let (net, spec) = crate::interpolate::interpolate(&source, &tuned, ip.a, &task.train, device)?;
    let net = burn::module::Module::valid(&net);
    crate::models::checkpoint::save_model(
        &net,
        &spec,
        out,
        &[
            ("sptune_command", "auto".into()),
            ("interpolated_at", ip.a.to_string()),
            (
                "from",
                super::source_path(cfg, dir, 0).display().to_string(),
            ),
            ("to", reference.display().to_string()),
        ],
    )?;
    let plain = device.clone().without_autodiff();
    let acc = crate::eval::accuracy(&net, &spec, &task.test, spec.eval_batch(), &plain)?;
    let src_spec = source.spec()?;
    let forgetting = match super::source_val::load(cfg, &src_spec)? {
        Some(im) => {
            let saved = Checkpoint::read(out)?;
            let f = crate::eval::forgetting(&source, &saved, &im.test, device)?;
            Some(f.drop_points)
        }
        None => None,
    };
    Ok((acc, forgetting))
}
