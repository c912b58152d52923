//! Studies: the seed's comparison as one run ("AutoDL": the hyperparameters are chosen by the
//! study, not by hand).
//!
//! [`run`] goes through four phases, each a list of trials planned up front in the study file
//! ([`store`], SQLite), so a killed study resumes where it stopped and redoes only unfinished
//! trials:
//!
//! 1. `source`: the source model (a given checkpoint, or pretrained once) and, for the Fisher
//!    schemes, its Fisher;
//! 2. `search`: per scheme, the points of [`search::points`], each a fine-tune on the target
//!    training images minus a validation split, stopped early by successive halving; the point
//!    of best validation accuracy is chosen;
//! 3. `final`: per scheme and seed, a fine-tune with the chosen point on all target training
//!    images, evaluated on target test accuracy, source forgetting and per-layer distance to
//!    `w0`;
//! 4. `freeze` (optional): the same with the first K stages frozen, K = 0 ..= stages.
//!
//! [`aggregate`] turns the stored trials into [`results::StudyResults`] (means with Student-t
//! intervals, the paired difference to L2 per seed), which [`report`] draws.

pub mod auto;
pub mod config;
pub mod report;
pub mod results;
pub mod search;
pub mod stats;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde_json::{Value, json};

pub use config::StudyConfig;
use results::{Curve, FreezePoint, LayerDistance, SchemeRow, SearchPoint, StudyResults};
use search::Point;
use store::{NewTrial, Status, Store, Trial};

use crate::models::checkpoint::Checkpoint;
use crate::regularizer::{Anchor, Scheme};
use crate::run::{self, FinetuneConfig, FisherConfig, StartConfig};
use crate::task::{self, DataConfig};
use crate::train::EpochLog;
use crate::util::Choice;
use crate::{Error, Result};

/// Whether a process leads a study or helps with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// Requeues interrupted trials, plans each phase when the previous one has finished, and
    /// writes the report.
    #[default]
    Leader,
    /// Runs whatever trials are pending (`--jobs`' worker processes) until the leader marks
    /// the study done.
    Helper,
}

/// How one process takes part in a study.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// This process's name in the study file.
    pub worker: String,
    /// Stop after this many trials (for tests of resuming, and for bounded sessions).
    pub max_trials: Option<usize>,
    /// Leader or helper.
    pub role: Role,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            worker: format!("pid{}", std::process::id()),
            max_trials: None,
            role: Role::Leader,
        }
    }
}

/// What [`run`] produced.
pub struct StudyOutcome {
    /// The aggregated findings.
    pub results: StudyResults,
    /// The main table as Markdown.
    pub markdown: String,
    /// Files written (the report and beside it).
    pub written: Vec<PathBuf>,
    /// Whether every planned trial is finished (false when `max_trials` cut the run short).
    pub complete: bool,
}

/// The study file of a study folder.
pub fn store_path(dir: &Path) -> PathBuf {
    dir.join("study.sqlite")
}

/// The report of a study folder.
pub fn report_path(dir: &Path) -> PathBuf {
    dir.join("report.html")
}

/// The resolved study config a study folder's helpers read (`--jobs`).
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("study.toml")
}

/// The resolved config as the study file stores it (and helpers read it back).
pub fn config_text(cfg: &StudyConfig) -> Result<String> {
    toml::to_string(cfg).map_err(|e| Error::Other(format!("study config: {e}")))
}

/// A trial's status, metrics and per-epoch figures.
type TrialOutcome = (Status, Value, Option<Value>);

/// What the final runs measure against: the source model, its task's test images and its
/// accuracy on them.
struct SourceCtx {
    source: Checkpoint,
    test: Option<crate::data::Dataset>,
    acc: Option<f64>,
}

struct Ctx<'a> {
    cfg: &'a StudyConfig,
    dir: &'a Path,
    device: &'a Device,
    store: Store,
    opts: RunOptions,
    done: usize,
    started: Instant,
    source: Option<SourceCtx>,
    log: &'a mut dyn FnMut(&str),
}

/// How long helpers and the leader wait between looks at the study file.
const POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl Ctx<'_> {
    fn budget_left(&self) -> bool {
        self.opts.max_trials.is_none_or(|m| self.done < m)
    }

    /// Runs one claimed trial and records its outcome (a failure is recorded, not returned).
    fn run_claimed(&mut self, t: &Trial) -> Result<()> {
        (self.log)(&format!("[{}] {}", t.phase, t.key));
        let t0 = Instant::now();
        let outcome = self.run_trial(t);
        let secs = t0.elapsed().as_secs_f64();
        match outcome {
            Ok((status, metrics, epochs)) => {
                self.store
                    .finish(t.id, status, Some(&metrics), epochs.as_ref(), None, secs)?;
            }
            Err(e) => {
                let msg = e.to_string();
                self.store
                    .finish(t.id, Status::Failed, None, None, Some(&msg), secs)?;
                (self.log)(&format!("[{}] {} failed: {msg}", t.phase, t.key));
            }
        }
        self.done += 1;
        Ok(())
    }

    /// Runs pending trials of `phase` until none is left, then waits for the ones other
    /// workers run. Returns whether every trial of the phase is finished.
    fn complete_phase(&mut self, phase: &str) -> Result<bool> {
        loop {
            while self.budget_left() {
                match self.store.claim(&self.opts.worker, Some(phase))? {
                    Some(t) => self.run_claimed(&t)?,
                    None => break,
                }
            }
            let ts = self.store.trials_of(phase)?;
            let pending = ts.iter().any(|t| t.status == Status::Pending);
            let running = ts.iter().any(|t| t.status == Status::Running);
            if !running {
                return Ok(!pending);
            }
            if pending && !self.budget_left() {
                return Ok(false);
            }
            std::thread::sleep(POLL);
        }
    }

    fn source_ctx(&mut self) -> Result<&SourceCtx> {
        if self.source.is_none() {
            let cfg = self.cfg;
            let source = Checkpoint::read(&source_path(cfg, self.dir))?;
            let spec = source.spec_or_infer_as(
                cfg.source.init_arch.as_deref(),
                "--init-arch ([source] init_arch)",
            )?;
            // the source task's test images, where the target data has the source's classes
            let test = task::load(
                &DataConfig {
                    data: cfg.target.data.clone(),
                    classes: spec.classes.join(","),
                    test_limit: (cfg.source.test_limit > 0).then_some(cfg.source.test_limit),
                    resize: crate::data::stored_side(spec.input[1]),
                    ..DataConfig::default()
                },
                spec.input[0],
            )
            .ok()
            .map(|t| t.test);
            let acc = match (&test, source.metadata.contains_key("spec")) {
                (Some(st), true) => {
                    Some(crate::eval::forgetting(&source, &source, st, self.device)?.source_acc)
                }
                _ => None,
            };
            self.source = Some(SourceCtx { source, test, acc });
        }
        Ok(self.source.as_ref().expect("set above"))
    }

    fn run_trial(&mut self, t: &Trial) -> Result<TrialOutcome> {
        match t.phase.as_str() {
            "source" => self.run_source(t),
            "search" => self.run_search(t),
            "final" | "freeze" => self.run_final(t),
            other => Err(Error::Other(format!("unknown phase {other:?}"))),
        }
    }

    fn run_source(&mut self, t: &Trial) -> Result<TrialOutcome> {
        let (cfg, dir) = (self.cfg, self.dir);
        if t.key == "source/pretrain" {
            let mut pre = cfg.source.pretrain.clone().ok_or_else(|| {
                Error::Other("source/pretrain planned without [source.pretrain]".into())
            })?;
            pre.out = Some(source_path(cfg, dir));
            pre.run_dir = None;
            let o = run::pretrain(&pre, self.device, &mut |_| {})?;
            return Ok((Status::Done, json!({"test_acc": o.report.test_acc}), None));
        }
        let o = run::fisher(
            &FisherConfig {
                model: source_path(cfg, dir),
                arch: cfg.source.init_arch.clone(),
                data: DataConfig {
                    data: cfg.target.data.clone(),
                    ..FisherConfig::default().data
                },
                samples: cfg.source.fisher_samples,
                out: Some(fisher_path(dir)),
                ..FisherConfig::default()
            },
            self.device,
            &mut |_, _| {},
        )?;
        Ok((
            Status::Done,
            json!({"seconds": o.seconds, "engine": o.engine}),
            None,
        ))
    }

    fn run_search(&mut self, t: &Trial) -> Result<TrialOutcome> {
        let cfg = self.cfg;
        if let Some(b) = cfg.search.budget_minutes
            && self.started.elapsed().as_secs_f64() > 60.0 * b
        {
            return Ok((Status::Stopped, json!({"skipped": "budget"}), None));
        }
        let scheme = scheme_of(t)?;
        let p = point_of(t)?;
        let mut ft = finetune_config(cfg, self.dir, scheme, &p, 0);
        ft.data.val_fraction = cfg.search.val_fraction;
        let milestones = if cfg.search.halving {
            search::milestones(cfg.train.epochs, cfg.search.eta)
        } else {
            vec![]
        };
        let recorded = recorded_val(&self.store.trials()?, &t.scheme);
        let eta = cfg.search.eta;
        let mut stop = |l: &EpochLog| {
            let Some(acc) = l.val_acc else { return false };
            if !milestones.contains(&l.epoch) {
                return false;
            }
            let before: Vec<f64> = recorded
                .iter()
                .filter_map(|r| r.get(l.epoch - 1).copied())
                .collect();
            !search::continues(acc, &before, eta)
        };
        let out = trial_checkpoint(self.dir, &t.phase, &t.key);
        if cfg.search.keep_checkpoints {
            ft.out = Some(out.clone());
        }
        let o = run::finetune_until(&ft, self.device, &mut |_| {}, &mut stop)?;
        let r = &o.report;
        let vals: Vec<f64> = r.epochs.iter().filter_map(|e| e.val_acc).collect();
        let mut metrics = json!({
            "val_acc": vals.last().copied().unwrap_or(f64::NAN),
            "val_loss": r.epochs.last().and_then(|e| e.val_loss).unwrap_or(f64::NAN),
            "best_val_acc": vals.iter().copied().fold(f64::NAN, f64::max),
            "epochs": r.epochs.len(),
            "stopped": r.stopped,
        });
        if cfg.search.keep_checkpoints {
            metrics["checkpoint"] = json!(out);
            if r.best_epoch.is_some() {
                metrics["best_checkpoint"] = json!(run::best_path(&out));
                metrics["best_epoch"] = json!(r.best_epoch);
            }
        }
        let status = if r.stopped {
            Status::Stopped
        } else {
            Status::Done
        };
        Ok((
            status,
            metrics,
            Some(serde_json::to_value(&r.epochs).unwrap_or(Value::Null)),
        ))
    }

    fn run_final(&mut self, t: &Trial) -> Result<TrialOutcome> {
        let (cfg, dir, device) = (self.cfg, self.dir, self.device);
        let scheme = scheme_of(t)?;
        let p = point_of(t)?;
        let mut ft = finetune_config(cfg, dir, scheme, &p, t.seed);
        ft.data.val_fraction = 0.0;
        if let Some(k) = t.params["freeze"].as_u64() {
            ft.train.freeze = (k > 0).then_some(k as usize);
        }
        let out = if t.phase == "final" {
            final_checkpoint(dir, scheme, t.seed)
        } else {
            trial_checkpoint(dir, &t.phase, &t.key)
        };
        ft.out = Some(out.clone());
        let o = run::finetune(&ft, device, &mut |_| {})?;
        let mut metrics = json!({"test_acc": o.report.test_acc, "checkpoint": out});
        if t.phase == "final" {
            let tuned = Checkpoint::read(&out)?;
            let src = self.source_ctx()?;
            if let (Some(st), Some(before)) = (&src.test, src.acc) {
                let after = crate::eval::source_head_accuracy(&src.source, &tuned, st, device)?;
                metrics["source_acc_after"] = json!(after);
                metrics["forgetting"] = json!(100.0 * (before - after));
            }
            let start = run::starting_point_of(src.source.clone(), &tuned)?;
            let d = crate::eval::distance(&start, &tuned, Anchor::All);
            let rel: Vec<Value> = d.tensors.iter().map(|t| json!([t.name, t.rel])).collect();
            metrics["distances"] = Value::Array(rel);
        }
        Ok((
            Status::Done,
            metrics,
            Some(serde_json::to_value(&o.report.epochs).unwrap_or(Value::Null)),
        ))
    }
}

fn source_path(cfg: &StudyConfig, dir: &Path) -> PathBuf {
    match &cfg.source.init {
        Some(p) => p.clone(),
        None => dir.join("source.safetensors"),
    }
}

fn fisher_path(dir: &Path) -> PathBuf {
    dir.join("source.fisher.safetensors")
}

fn point_of(t: &Trial) -> Result<Point> {
    serde_json::from_value(t.params.clone())
        .map_err(|e| Error::Other(format!("trial {}: bad parameters: {e}", t.key)))
}

fn scheme_of(t: &Trial) -> Result<Scheme> {
    Scheme::parse_for("scheme", &t.scheme)
}

/// The fine-tune of one trial.
fn finetune_config(
    cfg: &StudyConfig,
    dir: &Path,
    scheme: Scheme,
    p: &Point,
    seed: u64,
) -> FinetuneConfig {
    let mut ft = FinetuneConfig {
        start: StartConfig {
            init: source_path(cfg, dir),
            init_arch: cfg.source.init_arch.clone(),
            fisher: scheme.needs_fisher().then(|| fisher_path(dir)),
            fisher_max: scheme
                .needs_fisher()
                .then_some(cfg.source.fisher_max)
                .flatten(),
            ..StartConfig::default()
        },
        data: cfg.target.clone(),
        train: cfg.train.clone(),
        ..FinetuneConfig::default()
    };
    ft.data.seed = seed;
    ft.train.seed = seed;
    ft.train.reg = scheme;
    ft.train.alpha = p.alpha;
    ft.train.beta = p.beta;
    ft.train.lr = p.lr;
    ft.train.backbone_lr_mult = p.backbone_lr_mult;
    ft
}

/// Validation accuracies of the finished search trials of `scheme`, by epoch (1-based).
fn recorded_val(trials: &[Trial], scheme: &str) -> Vec<Vec<f64>> {
    trials
        .iter()
        .filter(|t| t.phase == "search" && t.scheme == scheme)
        .filter(|t| matches!(t.status, Status::Done | Status::Stopped))
        .filter_map(|t| t.epochs.as_ref())
        .map(val_series)
        .collect()
}

fn val_series(epochs: &Value) -> Vec<f64> {
    epochs
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["val_acc"].as_f64()).collect())
        .unwrap_or_default()
}

fn f64_series(epochs: &Value, key: &str) -> Vec<f64> {
    epochs
        .as_array()
        .map(|a| a.iter().filter_map(|e| e[key].as_f64()).collect())
        .unwrap_or_default()
}

/// The chosen point of each scheme: the finished (not stopped) search trial of best final
/// validation accuracy; between equal accuracies (a validation split of a few images makes
/// them common) the lower final validation loss wins, then the earlier trial.
pub fn chosen(trials: &[Trial]) -> BTreeMap<String, (Point, f64)> {
    let mut best: BTreeMap<String, (Point, f64, f64)> = BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| t.phase == "search" && t.status == Status::Done)
    {
        let m = t.metrics.as_ref();
        let (Ok(p), Some(v)) = (point_of(t), m.and_then(|m| m["val_acc"].as_f64())) else {
            continue;
        };
        let loss = m
            .and_then(|m| m["val_loss"].as_f64())
            .filter(|l| l.is_finite())
            .unwrap_or(f64::INFINITY);
        let better = match best.get(&t.scheme) {
            None => true,
            Some((_, bv, bl)) => v > *bv || (v == *bv && loss < *bl),
        };
        if better {
            best.insert(t.scheme.clone(), (p, v, loss));
        }
    }
    best.into_iter().map(|(k, (p, v, _))| (k, (p, v))).collect()
}

/// The scheme whose chosen point has the best validation accuracy (the first in the study's
/// order on a tie).
pub fn best_scheme(cfg: &StudyConfig, choice: &BTreeMap<String, (Point, f64)>) -> Option<Scheme> {
    let mut best: Option<(Scheme, f64)> = None;
    for &s in &cfg.schemes {
        if let Some((_, v)) = choice.get(s.name())
            && best.is_none_or(|(_, b)| *v > b)
        {
            best = Some((s, *v));
        }
    }
    best.map(|(s, _)| s)
}

/// The final checkpoint of `scheme`'s run with `seed` in a study folder.
pub fn final_checkpoint(dir: &Path, scheme: Scheme, seed: u64) -> PathBuf {
    dir.join("final")
        .join(format!("final_{}_seed{seed}.safetensors", scheme.name()))
}

/// Where the last model of the trial `key` goes (`PHASE/KEY_WITH_UNDERSCORES.safetensors`);
/// a search trial's best-validation model goes beside it ([`run::best_path`]).
pub fn trial_checkpoint(dir: &Path, phase: &str, key: &str) -> PathBuf {
    dir.join(phase)
        .join(format!("{}.safetensors", key.replace('/', "_")))
}

/// Runs (or resumes) the study `cfg` in the folder `dir`; `log` gets one line per trial. A
/// [`Role::Helper`] runs pending trials of a study its leader runs in the same folder.
pub fn run(
    cfg: &StudyConfig,
    dir: &Path,
    device: &Device,
    opts: RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<StudyOutcome> {
    cfg.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config_text = config_text(cfg)?;
    let store = Store::open(&store_path(dir), &config_text)?;
    let role = opts.role;
    if role == Role::Leader {
        let requeued = store.requeue_running()?;
        if requeued > 0 {
            log(&format!(
                "resuming: {requeued} interrupted trial(s) requeued"
            ));
        }
        store.set_note("state", "running")?;
        crate::util::write_atomic(&config_path(dir), config_text.as_bytes())?;
    }
    let mut ctx = Ctx {
        cfg,
        dir,
        device,
        store,
        opts,
        done: 0,
        started: Instant::now(),
        source: None,
        log,
    };
    match role {
        Role::Leader => lead(ctx),
        Role::Helper => {
            help(&mut ctx)?;
            finish(ctx, false)
        }
    }
}

/// A helper's loop: run pending trials of any phase until the leader says the study is done
/// (or nothing has been pending or running for a minute: a leader that died).
fn help(ctx: &mut Ctx<'_>) -> Result<()> {
    let mut idle = Instant::now();
    while ctx.budget_left() {
        if let Some(t) = ctx.store.claim(&ctx.opts.worker, None)? {
            ctx.run_claimed(&t)?;
            idle = Instant::now();
            continue;
        }
        if ctx.store.note("state")?.as_deref() == Some("done") {
            break;
        }
        let counts = ctx.store.counts()?;
        let busy = counts.get("running").copied().unwrap_or(0) > 0;
        if busy {
            idle = Instant::now();
        } else if idle.elapsed().as_secs() > 60 {
            break;
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

fn lead(mut ctx: Ctx<'_>) -> Result<StudyOutcome> {
    let cfg = ctx.cfg;
    // 1. the source model, then its Fisher (computed from the pretrained source)
    let mut steps = vec![];
    if cfg.source.pretrain.is_some() {
        steps.push(NewTrial {
            key: "source/pretrain".into(),
            phase: "source".into(),
            scheme: "none".into(),
            params: json!({}),
            seed: 0,
        });
    }
    if cfg.schemes.iter().any(|s| s.needs_fisher()) {
        steps.push(NewTrial {
            key: "source/fisher".into(),
            phase: "source".into(),
            scheme: "none".into(),
            params: json!({"samples": cfg.source.fisher_samples}),
            seed: 0,
        });
    }
    for step in steps {
        ctx.store.plan(&[step])?;
        if !ctx.complete_phase("source")? {
            return finish(ctx, false);
        }
    }
    if ctx
        .store
        .trials_of("source")?
        .iter()
        .any(|t| t.status != Status::Done)
    {
        let failed: Vec<String> = ctx
            .store
            .trials_of("source")?
            .into_iter()
            .filter_map(|t| t.error.map(|e| format!("{}: {e}", t.key)))
            .collect();
        return Err(Error::Other(format!(
            "the source phase failed: {}",
            failed.join("; ")
        )));
    }

    // 2. the search
    let mut plan = vec![];
    for &scheme in &cfg.schemes {
        for (i, p) in search::points(cfg, scheme).iter().enumerate() {
            plan.push(NewTrial {
                key: format!("search/{}/{i:03}", scheme.name()),
                phase: "search".into(),
                scheme: scheme.name().into(),
                params: serde_json::to_value(p).expect("a point serializes"),
                seed: 0,
            });
        }
    }
    ctx.store.plan(&plan)?;
    if !ctx.complete_phase("search")? {
        return finish(ctx, false);
    }

    // 3. the final runs, and 4. the freeze sweep
    let choice = chosen(&ctx.store.trials()?);
    let winner = best_scheme(cfg, &choice);
    let stages = ctx
        .source_ctx()?
        .source
        .spec_or_infer(cfg.source.init_arch.as_deref())?
        .stages();
    let mut plan = vec![];
    for &scheme in &cfg.schemes {
        let Some((p, _)) = choice.get(scheme.name()) else {
            continue;
        };
        if cfg.only_best && winner != Some(scheme) {
            continue;
        }
        for seed in 1..=cfg.seeds as u64 {
            plan.push(NewTrial {
                key: format!("final/{}/seed{seed}", scheme.name()),
                phase: "final".into(),
                scheme: scheme.name().into(),
                params: serde_json::to_value(p).expect("a point serializes"),
                seed,
            });
        }
        if cfg.freeze_sweep.contains(&scheme) {
            for k in 0..=stages {
                for seed in 1..=cfg.seeds as u64 {
                    let mut params = serde_json::to_value(p).expect("a point serializes");
                    params["freeze"] = json!(k);
                    plan.push(NewTrial {
                        key: format!("freeze/{}/k{k}/seed{seed}", scheme.name()),
                        phase: "freeze".into(),
                        scheme: scheme.name().into(),
                        params,
                        seed,
                    });
                }
            }
        }
    }
    ctx.store.plan(&plan)?;
    let finals = ctx.complete_phase("final")?;
    let freeze = ctx.complete_phase("freeze")?;
    let complete = finals && freeze;
    if complete {
        ctx.store.set_note("state", "done")?;
    }
    finish(ctx, complete)
}

fn finish(ctx: Ctx<'_>, complete: bool) -> Result<StudyOutcome> {
    let results = aggregate(ctx.cfg, &ctx.store.trials()?);
    let markdown = report::markdown(&results);
    let written = if complete && ctx.opts.role == Role::Leader {
        report::write(&results, &report_path(ctx.dir))?
    } else {
        vec![]
    };
    Ok(StudyOutcome {
        results,
        markdown,
        written,
        complete,
    })
}

/// The findings of a study's stored trials.
pub fn aggregate(cfg: &StudyConfig, trials: &[Trial]) -> StudyResults {
    let choice = chosen(trials);
    let finals = |scheme: &str| -> Vec<&Trial> {
        let mut v: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.phase == "final" && t.scheme == scheme && t.status == Status::Done)
            .collect();
        v.sort_by_key(|t| t.seed);
        v
    };
    let metric = |t: &Trial, k: &str| t.metrics.as_ref().and_then(|m| m[k].as_f64());
    let l2 = finals("l2");
    let per_seed = |ts: &[&Trial], k: &str, scale: f64| -> BTreeMap<u64, f64> {
        ts.iter()
            .filter_map(|t| metric(t, k).map(|v| (t.seed, scale * v)))
            .collect()
    };
    let l2_acc = per_seed(&l2, "test_acc", 100.0);
    let l2_forget = per_seed(&l2, "forgetting", 1.0);
    let paired = |mine: &BTreeMap<u64, f64>, base: &BTreeMap<u64, f64>| {
        let seeds: Vec<u64> = mine
            .keys()
            .filter(|s| base.contains_key(s))
            .copied()
            .collect();
        let a: Vec<f64> = seeds.iter().map(|s| mine[s]).collect();
        let b: Vec<f64> = seeds.iter().map(|s| base[s]).collect();
        stats::paired_diff(&a, &b)
    };
    let mut schemes = vec![];
    let mut distances = vec![];
    let mut curves = vec![];
    for scheme in cfg.schemes.iter().map(|s| s.name()) {
        let Some((p, val)) = choice.get(scheme) else {
            continue;
        };
        let ts = finals(scheme);
        let acc = per_seed(&ts, "test_acc", 100.0);
        let forget = per_seed(&ts, "forgetting", 1.0);
        let is_l2 = scheme == "l2";
        schemes.push(SchemeRow {
            scheme: scheme.into(),
            alpha: p.alpha,
            beta: p.beta,
            lr: p.lr,
            backbone_lr_mult: p.backbone_lr_mult,
            val_acc: *val,
            acc: acc.values().copied().collect(),
            forgetting: forget.values().copied().collect(),
            acc_ci: stats::mean_ci95(&acc.values().copied().collect::<Vec<_>>()),
            forgetting_ci: (!forget.is_empty())
                .then(|| stats::mean_ci95(&forget.values().copied().collect::<Vec<_>>())),
            acc_minus_l2: (!is_l2).then(|| paired(&acc, &l2_acc)).flatten(),
            forgetting_minus_l2: (!is_l2 && !forget.is_empty())
                .then(|| paired(&forget, &l2_forget))
                .flatten(),
        });
        // per-layer distances, mean over seeds, in network order
        let mut order: Vec<String> = vec![];
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for t in &ts {
            if let Some(d) = t.metrics.as_ref().and_then(|m| m["distances"].as_array()) {
                for e in d {
                    let (Some(name), Some(rel)) = (e[0].as_str(), e[1].as_f64()) else {
                        continue;
                    };
                    if !sums.contains_key(name) {
                        order.push(name.to_string());
                    }
                    let s = sums.entry(name.to_string()).or_insert((0.0, 0));
                    s.0 += rel;
                    s.1 += 1;
                }
            }
        }
        for name in order {
            let (s, n) = sums[&name];
            distances.push(LayerDistance {
                scheme: scheme.into(),
                layer: name,
                rel: s / n as f64,
            });
        }
        for t in &ts {
            if let Some(e) = &t.epochs {
                curves.push(Curve {
                    scheme: scheme.into(),
                    seed: t.seed,
                    train_acc: f64_series(e, "train_acc"),
                    val_acc: val_series(e),
                    task_loss: f64_series(e, "task_loss"),
                });
            }
        }
    }
    let search = trials
        .iter()
        .filter(|t| t.phase == "search" && matches!(t.status, Status::Done | Status::Stopped))
        .filter_map(|t| {
            let p = point_of(t).ok()?;
            let m = t.metrics.as_ref()?;
            Some(SearchPoint {
                scheme: t.scheme.clone(),
                alpha: p.alpha,
                beta: p.beta,
                lr: p.lr,
                backbone_lr_mult: p.backbone_lr_mult,
                val_acc: m["val_acc"].as_f64()?,
                epochs: m["epochs"].as_u64()? as usize,
                stopped: m["stopped"].as_bool()?,
            })
        })
        .collect();
    let mut freeze_acc: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| t.phase == "freeze" && t.status == Status::Done)
    {
        if let (Some(k), Some(a)) = (t.params["freeze"].as_u64(), metric(t, "test_acc")) {
            freeze_acc
                .entry((t.scheme.clone(), k as usize))
                .or_default()
                .push(100.0 * a);
        }
    }
    let freeze = freeze_acc
        .into_iter()
        .map(|((scheme, k), v)| FreezePoint {
            scheme,
            k,
            acc: stats::mean_ci95(&v),
        })
        .collect();
    let source = match (&cfg.source.init, &cfg.source.pretrain) {
        (Some(p), _) => format!("source checkpoint {}", p.display()),
        (None, Some(pre)) => format!(
            "source {} (width {}) pretrained on {} classes {} ({} epochs)",
            pre.model.arch, pre.model.width, pre.data.data, pre.data.classes, pre.train.epochs
        ),
        _ => "no source".into(),
    };
    let setup = format!(
        "{source}; target {} classes {}, {} training images per class, {} epochs, batch {}; \
         hyperparameters chosen per scheme by {} search ({} points, successive halving {}) on a \
         {:.0} % validation split (seed 0), then {} final runs per scheme (seeds 1..={}) on all \
         training images; intervals are two-sided 95 % Student-t over seeds, differences to L2 \
         paired by seed.",
        cfg.target.data,
        cfg.target.classes,
        cfg.target
            .per_class
            .map(|n| n.to_string())
            .unwrap_or_else(|| "all".into()),
        cfg.train.epochs,
        cfg.train.batch_size,
        match cfg.search.method {
            config::Method::Random => "random",
            config::Method::Grid => "grid",
        },
        match cfg.search.method {
            config::Method::Random => cfg.search.trials,
            config::Method::Grid => cfg.search.grid_points,
        },
        if cfg.search.halving {
            format!("η = {}", cfg.search.eta)
        } else {
            "off".into()
        },
        100.0 * cfg.search.val_fraction,
        cfg.seeds,
        cfg.seeds
    );
    StudyResults {
        title: cfg.name.clone(),
        setup,
        schemes,
        search,
        distances,
        freeze,
        curves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(scheme: &str, alpha: f64, status: Status, acc: f64, loss: f64) -> Trial {
        Trial {
            id: 0,
            key: format!("search/{scheme}/{alpha}"),
            phase: "search".into(),
            scheme: scheme.into(),
            params: json!({"alpha": alpha, "beta": 0.01, "lr": 0.02, "backbone_lr_mult": 1.0}),
            seed: 0,
            status,
            metrics: Some(json!({"val_acc": acc, "val_loss": loss})),
            epochs: None,
            error: None,
            seconds: None,
            worker: None,
            host: None,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn the_best_accuracy_wins_then_the_lower_loss_then_the_earlier_trial() {
        let ts = [
            trial("l2-sp", 0.1, Status::Done, 0.90, 0.50),
            trial("l2-sp", 1.0, Status::Done, 0.92, 0.40),
            trial("l2-sp", 3.0, Status::Done, 0.92, 0.30), // same accuracy, lower loss
            trial("l2-sp", 9.0, Status::Stopped, 0.99, 0.10), // stopped early: not a candidate
            trial("l2", 0.01, Status::Done, 0.80, 0.70),
            trial("l2", 0.02, Status::Done, 0.80, 0.70), // a full tie: the earlier stays
        ];
        let c = chosen(&ts);
        assert_eq!(c["l2-sp"].0.alpha, 3.0);
        assert_eq!(c["l2-sp"].1, 0.92);
        assert_eq!(c["l2"].0.alpha, 0.01);
        let cfg = StudyConfig {
            schemes: vec![Scheme::L2, Scheme::L2Sp],
            ..StudyConfig::default()
        };
        assert_eq!(best_scheme(&cfg, &c), Some(Scheme::L2Sp));
    }
}
