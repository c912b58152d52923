//! Studies: the seed's comparison as one run ("AutoDL": the hyperparameters are chosen by the
//! study, not by hand).
//!
//! [`run`] goes through these phases, each a list of trials planned up front in the study file
//! ([`store`], SQLite), so a killed study resumes where it stopped and redoes only unfinished
//! trials:
//!
//! 1. `source`: the source model (a given checkpoint, or pretrained: `[source] seeds` sources,
//!    each with its own training seed) and, for the Fisher schemes, each one's Fisher;
//! 2. `search`: per scheme, the points of [`search::points`], each a fine-tune of the first
//!    source on the target training images minus a validation split, measured on source
//!    validation images too ([`source_val`]), stopped early by successive halving; each
//!    scheme's point is chosen under the objective ([`objective`], [`choose`]);
//! 3. `final`: per scheme, source and seed, a fine-tune with the chosen point on all target
//!    training images, evaluated on target test accuracy, source forgetting (decomposed) and
//!    per-layer distance to `w0`;
//! 4. `freeze` (optional): the same with the first K stages frozen, K = 0 ..= stages;
//! 5. `reference` (under a budget or a trade-off): the finals of the point a target-only
//!    search would have chosen, for what keeping the source costs ([`recommend`]).
//!
//! [`aggregate`] turns the stored trials into [`results::StudyResults`] (means with Student-t
//! intervals over (source, seed) runs, differences paired by run), which [`report`] draws.

pub mod aggregate;
pub mod auto;
pub mod choose;
pub mod config;
pub mod inputs;
pub mod limits;
pub mod lock;
pub mod objective;
pub mod recommend;
pub mod report;
pub mod results;
pub mod search;
pub mod source_val;
pub mod sources;
pub mod stats;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde_json::{Value, json};

pub use aggregate::aggregate;
use choose::measure;
pub use choose::{
    Chosen, best_scheme, chosen, halving_continues, recorded_measures, reference_point,
};
pub use config::StudyConfig;
use objective::Goal;
use results::StudyResults;
use search::Point;
use sources::{fisher_path, source_infix, source_key};
pub use sources::{source_of, source_path, unit_of};
use store::{NewTrial, Status, Store, Trial};

use crate::models::checkpoint::Checkpoint;
use crate::regularizer::{Anchor, Scheme};
use crate::run::{self, FinetuneConfig, FisherConfig, StartConfig};
use crate::task::DataConfig;
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
    /// When the study's inputs changed since it began ([`inputs::fingerprint`]): start over
    /// on the new ones (every trial and the source phase's files are dropped) instead of
    /// refusing.
    pub restart_from_source: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            worker: format!("pid{}", std::process::id()),
            max_trials: None,
            role: Role::Leader,
            restart_from_source: false,
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

pub use inputs::{preflight, study_inputs};
pub use lock::LeaderLock;

/// `sptune report`: the report of the study file `store_file` in the study folder `dir` (its
/// [`store_path`], unless the user named another file) from its stored trials, written to
/// `out` (default [`report_path`]) with its `.md` and `_csv/` siblings. No file it writes may
/// be one the study keeps: its study file (and SQLite's `-wal`/`-shm`), its `study.toml`, or
/// any other file under `dir` that is not a report's `.html`, `.md` or `.csv` (checkpoints,
/// Fisher files, logs); such an output is refused before anything is written.
pub fn write_report(
    store_file: &Path,
    dir: &Path,
    out: Option<&Path>,
) -> Result<(StudyResults, Vec<PathBuf>)> {
    let out = out.map_or_else(|| report_path(dir), Path::to_path_buf);
    let store_file = store_file.to_path_buf();
    let kept = [
        store_file.clone(),
        store_path(dir),
        store_file.with_extension("sqlite-wal"),
        store_file.with_extension("sqlite-shm"),
        config_path(dir),
    ];
    let kept: Vec<&Path> = kept.iter().map(PathBuf::as_path).collect();
    for o in report::outputs(&out)? {
        crate::util::refuse_input(&o, &kept)?;
        let report_file = o
            .extension()
            .is_some_and(|e| e == "html" || e == "md" || e == "csv");
        if o.is_file() && !report_file && crate::util::inside(&o, dir) {
            return Err(Error::invalid(
                "--out",
                format!(
                    "{} is a file of the study {}; the report writes .html, .md and .csv \
                     files and never replaces one the study keeps",
                    o.display(),
                    dir.display()
                ),
            ));
        }
    }
    let store = store::Store::open_existing(&store_file)?;
    let cfg = StudyConfig::from_toml_text(&store.config()?, &store_file)?;
    let results = aggregate(&cfg, &store.trials()?);
    let written = report::write(&results, &out)?;
    Ok((results, written))
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
    /// Source validation images for the search, and the source model's accuracy on them.
    val: Option<(crate::data::Dataset, f64)>,
    /// Where the validation images come from, or why there are none.
    note: String,
}

struct Ctx<'a> {
    cfg: &'a StudyConfig,
    dir: &'a Path,
    device: &'a Device,
    store: Store,
    opts: RunOptions,
    done: usize,
    started: Instant,
    /// Per source (`[source] seeds`), loaded when first needed.
    sources: std::collections::BTreeMap<u64, SourceCtx>,
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

    fn source_ctx(&mut self, k: u64) -> Result<&SourceCtx> {
        if !self.sources.contains_key(&k) {
            let cfg = self.cfg;
            let source = Checkpoint::read(&source_path(cfg, self.dir, k))?;
            let spec = source.spec_or_infer_as(
                cfg.source.init_arch.as_deref(),
                "--init-arch ([source] init_arch)",
            )?;
            // the source task's test and validation images, where the data has the source's
            // classes
            let images = source_val::load(cfg, &spec)?;
            let known = source.metadata.contains_key("spec");
            let device = self.device;
            let acc_on = |ds: &crate::data::Dataset| -> Result<f64> {
                Ok(crate::eval::forgetting(&source, &source, ds, device)?.source_acc)
            };
            let (test, acc, val, note) = match images {
                Some(im) if known => {
                    let acc = Some(acc_on(&im.test)?);
                    let val = match im.val {
                        Some(v) => {
                            let a = acc_on(&v)?;
                            Some((v, a))
                        }
                        None => None,
                    };
                    (Some(im.test), acc, val, im.note)
                }
                Some(im) => (
                    Some(im.test),
                    None,
                    None,
                    "the source checkpoint carries no sptune model description".into(),
                ),
                None => (
                    None,
                    None,
                    None,
                    "the source task's data is not at hand (name it with [source] data and \
                     classes, or --source-data and --source-classes)"
                        .into(),
                ),
            };
            self.sources.insert(
                k,
                SourceCtx {
                    source,
                    test,
                    acc,
                    val,
                    note,
                },
            );
        }
        Ok(&self.sources[&k])
    }

    fn run_trial(&mut self, t: &Trial) -> Result<TrialOutcome> {
        match t.phase.as_str() {
            "source" => self.run_source(t),
            "search" => self.run_search(t),
            "final" | "freeze" | "reference" => self.run_final(t),
            other => Err(Error::Other(format!("unknown phase {other:?}"))),
        }
    }

    fn run_source(&mut self, t: &Trial) -> Result<TrialOutcome> {
        let (cfg, dir) = (self.cfg, self.dir);
        let k = source_of(t);
        if t.key.starts_with("source/pretrain") {
            let mut pre = cfg.source.pretrain.clone().ok_or_else(|| {
                Error::Other("source/pretrain planned without [source.pretrain]".into())
            })?;
            // source k: the same images and network, another training seed
            pre.train.seed += k;
            pre.out = Some(source_path(cfg, dir, k));
            pre.run_dir = None;
            let o = run::pretrain(&pre, self.device, &mut |_| {})?;
            return Ok((Status::Done, json!({"test_acc": o.report.test_acc}), None));
        }
        let o = run::fisher(
            &FisherConfig {
                model: source_path(cfg, dir, k),
                arch: cfg.source.init_arch.clone(),
                data: DataConfig {
                    data: cfg.target.data.clone(),
                    ..FisherConfig::default().data
                },
                samples: cfg.source.fisher_samples,
                out: Some(fisher_path(dir, k)),
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
        let mut ft = finetune_config(cfg, self.dir, scheme, &p, 0, 0);
        ft.data.val_fraction = cfg.search.val_fraction;
        let milestones = if cfg.search.halving {
            search::milestones(cfg.train.epochs, cfg.search.eta)
        } else {
            vec![]
        };
        let trials = self.store.trials()?;
        let (device, dir) = (self.device, self.dir);
        let src = self.source_ctx(0)?;
        let (source, val) = (&src.source, src.val.as_ref());
        let src_note = src.note.clone();
        let before = val.map(|(_, a)| *a);
        let goal = Goal::of(&cfg.search);
        // only trials of the same scheme and learning rate are compared at a milestone: a
        // lower learning rate starts slower without being worse
        let recorded = recorded_measures(&trials, &t.scheme, p.lr, before);
        let eta = cfg.search.eta;
        let last = cfg.train.epochs;
        let probe_secs = std::cell::Cell::new(0.0);
        let mut probe = |net: &crate::models::Net, epoch: usize| -> Result<Option<f64>> {
            let Some((ds, _)) = val else { return Ok(None) };
            if !(milestones.contains(&epoch) || epoch == last) {
                return Ok(None);
            }
            let t0 = Instant::now();
            let tuned = in_memory_checkpoint(net, source, epoch)?;
            let acc = crate::eval::source_head_accuracy(source, &tuned, ds, device)?;
            probe_secs.set(probe_secs.get() + t0.elapsed().as_secs_f64());
            Ok(Some(acc))
        };
        let mut stop = |l: &EpochLog| {
            let Some(acc) = l.val_acc else { return false };
            if !milestones.contains(&l.epoch) {
                return false;
            }
            let here = measure(acc, l.source_val_acc, before);
            !halving_continues(&goal, &recorded, l.epoch, here, eta)
        };
        let out = trial_checkpoint(dir, &t.phase, &t.key);
        if cfg.search.keep_checkpoints {
            ft.out = Some(out.clone());
        }
        let o = run::finetune_probed(&ft, device, &mut |_| {}, &mut stop, &mut probe)?;
        let r = &o.report;
        let vals: Vec<f64> = r.epochs.iter().filter_map(|e| e.val_acc).collect();
        let mut metrics = json!({
            "val_acc": vals.last().copied().unwrap_or(f64::NAN),
            "val_loss": r.epochs.last().and_then(|e| e.val_loss).unwrap_or(f64::NAN),
            "best_val_acc": vals.iter().copied().fold(f64::NAN, f64::max),
            "epochs": r.epochs.len(),
            "stopped": r.stopped,
        });
        let after = r.epochs.iter().rev().find_map(|e| e.source_val_acc);
        if let (Some(b), Some(a)) = (before, after) {
            metrics["source_val_acc"] = json!(a);
            metrics["source_val_before"] = json!(b);
            metrics["val_forgetting"] = json!(100.0 * (b - a));
            // the time the source validation took, for the study's overhead figure
            metrics["source_val_seconds"] = json!(probe_secs.get());
        }
        metrics["source_val"] = json!(src_note);
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
        let k = source_of(t);
        let mut ft = finetune_config(cfg, dir, scheme, &p, k, t.seed);
        ft.data.val_fraction = 0.0;
        if let Some(k) = t.params["freeze"].as_u64() {
            ft.train.freeze = (k > 0).then_some(k as usize);
        }
        let out = if t.phase == "final" {
            final_checkpoint_of(dir, scheme, k, t.seed)
        } else if t.phase == "reference" {
            dir.join("reference").join(format!(
                "reference_{}{}_seed{}.safetensors",
                scheme.name(),
                source_infix(k),
                t.seed
            ))
        } else {
            trial_checkpoint(dir, &t.phase, &t.key)
        };
        ft.out = Some(out.clone());
        let o = run::finetune(&ft, device, &mut |_| {})?;
        let mut metrics = json!({"test_acc": o.report.test_acc, "checkpoint": out});
        let flags = health(&o.report, o.spec.classes.len());
        if !flags.is_empty() {
            metrics["flags"] = json!(flags);
        }
        if t.phase == "final" || t.phase == "reference" {
            let tuned = Checkpoint::read(&out)?;
            let src = self.source_ctx(k)?;
            if let (Some(st), Some(before)) = (&src.test, src.acc) {
                let d = crate::eval::decompose(&src.source, &tuned, st, Some(before), device)?;
                metrics["source_acc_after"] = json!(d.after_acc);
                metrics["forgetting"] = json!(100.0 * (before - d.after_acc));
                metrics["source_acc_source_stats"] = json!(d.after_acc_source_stats);
                metrics["forgetting_statistics"] = json!(d.statistics_points);
                metrics["forgetting_weights"] = json!(d.weights_points);
            }
            if t.phase == "final" && !cfg.finals.interpolate.is_empty() {
                // the final's own training images recalibrate each interpolated network
                let mut data = ft.data.clone();
                if data.resize == 0 {
                    data.resize = crate::data::stored_side(o.spec.input[1]);
                }
                let task = crate::task::load(&data, o.spec.input[0])?;
                let pts = crate::interpolate::sweep(
                    &src.source,
                    &tuned,
                    &cfg.finals.interpolate,
                    &task.train,
                    &task.test,
                    src.test.as_ref(),
                    device,
                )?;
                metrics["interpolation"] = json!(
                    pts.iter()
                        .map(|p| json!([p.a, p.target_acc, p.source_acc]))
                        .collect::<Vec<_>>()
                );
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

/// A final run's warnings: test accuracy near chance (below 1.5 / classes: the network
/// predicts about one class), or a training loss that ended above where it started.
pub fn health(r: &run::RunReport, classes: usize) -> Vec<String> {
    let mut v = vec![];
    let chance = 1.0 / classes.max(1) as f64;
    if classes > 1 && r.test_acc < 1.5 * chance {
        v.push(format!(
            "test accuracy {:.1} % is near chance ({:.1} %)",
            100.0 * r.test_acc,
            100.0 * chance
        ));
    }
    if let (Some(first), Some(last)) = (r.epochs.first(), r.epochs.last())
        && r.epochs.len() > 1
        && (last.task_loss > first.task_loss || last.task_loss.is_nan())
    {
        v.push(format!(
            "training loss rose from {:.3} (epoch 1) to {:.3} (epoch {})",
            first.task_loss, last.task_loss, last.epoch
        ));
    }
    v
}

fn point_of(t: &Trial) -> Result<Point> {
    serde_json::from_value(t.params.clone())
        .map_err(|e| Error::Other(format!("trial {}: bad parameters: {e}", t.key)))
}

fn scheme_of(t: &Trial) -> Result<Scheme> {
    Scheme::parse_for("scheme", &t.scheme)
}

/// The fine-tune of one trial: `scheme` at `p` from source `source` with `seed`.
fn finetune_config(
    cfg: &StudyConfig,
    dir: &Path,
    scheme: Scheme,
    p: &Point,
    source: u64,
    seed: u64,
) -> FinetuneConfig {
    let mut ft = FinetuneConfig {
        start: StartConfig {
            init: source_path(cfg, dir, source),
            init_arch: cfg.source.init_arch.clone(),
            fisher: scheme.needs_fisher().then(|| fisher_path(dir, source)),
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
    if let Some(bn) = p.bn {
        ft.train.bn = bn;
    }
    if let Some(k) = p.freeze {
        ft.train.freeze = (k > 0).then_some(k);
    }
    ft
}

/// The network of an epoch as a checkpoint carrying the source's description (for
/// [`crate::eval::source_head_accuracy`], which reads the body's tensors and puts the source's
/// head back).
fn in_memory_checkpoint(
    net: &crate::models::Net,
    source: &Checkpoint,
    epoch: usize,
) -> Result<Checkpoint> {
    let path = PathBuf::from(format!("(the network at epoch {epoch})"));
    crate::models::checkpoint::checkpoint_of(
        &burn::module::Module::valid(net),
        &source.spec()?,
        &path,
    )
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

/// The final checkpoint of `scheme`'s run with `seed` (from the first source) in a study
/// folder.
pub fn final_checkpoint(dir: &Path, scheme: Scheme, seed: u64) -> PathBuf {
    final_checkpoint_of(dir, scheme, 0, seed)
}

/// The final checkpoint of `scheme`'s run from source `k` with `seed`.
pub fn final_checkpoint_of(dir: &Path, scheme: Scheme, k: u64, seed: u64) -> PathBuf {
    dir.join("final").join(format!(
        "final_{}{}_seed{seed}.safetensors",
        scheme.name(),
        source_infix(k)
    ))
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
    let _lock = match opts.role {
        Role::Leader if !LeaderLock::held_here(dir) => Some(claim(cfg, dir)?),
        Role::Leader => None,
        Role::Helper => {
            cfg.validate()?;
            if !dir.is_dir() {
                return Err(Error::invalid(
                    "--dir",
                    format!("{}: no study folder for a helper to help", dir.display()),
                ));
            }
            None
        }
    };
    let config_text = config_text(cfg)?;
    let store = Store::open(&store_path(dir), &config_text)?;
    let role = opts.role;
    if role == Role::Leader {
        check_inputs(cfg, dir, &store, opts.restart_from_source, log)?;
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
        sources: Default::default(),
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

/// Makes `dir` the study folder of `cfg` led by this process: checks that the study can
/// start ([`preflight`]) and that `dir` is no input, and only then creates `dir` and takes
/// its [`LeaderLock`] (a second leader is refused here). [`run`] claims the folder itself;
/// call this first to start helper processes before it.
pub fn claim(cfg: &StudyConfig, dir: &Path) -> Result<LeaderLock> {
    preflight(cfg)?;
    crate::util::refuse_input_dir(
        dir,
        &study_inputs(cfg)
            .iter()
            .map(PathBuf::as_path)
            .collect::<Vec<_>>(),
    )
    .map_err(|e| match e {
        Error::Invalid { msg, .. } => Error::invalid("--dir", msg),
        e => e,
    })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    LeaderLock::take(dir)
}

/// The leader's check of what the study reads against what it recorded when it began (and
/// of the source phase's files against what that phase made): unchanged, or refused with what
/// changed, or with `restart` every trial and the source phase's files dropped.
fn check_inputs(
    cfg: &StudyConfig,
    dir: &Path,
    store: &Store,
    restart: bool,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let recorded = |key: &str| -> Result<Option<inputs::Fingerprint>> {
        store
            .note(key)?
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| Error::format(store_path(dir), format!("{key} note: {e}")))
            })
            .transpose()
    };
    let now = inputs::fingerprint(cfg)?;
    let mut what = match recorded("inputs")? {
        Some(was) => inputs::changed(&was, &now),
        None => vec![],
    };
    if what.is_empty()
        && let Some(was) = recorded("products")?
    {
        what = inputs::changed(&was, &inputs::products(cfg, dir)?);
    }
    if !what.is_empty() {
        if !restart {
            return Err(Error::Other(format!(
                "{}: the study's inputs changed since it began ({}); run it in a new --dir, \
                 put the old files back, or add --restart-from source to start over on the new \
                 ones",
                dir.display(),
                what.join("; ")
            )));
        }
        log(&format!("restarting from the source: {}", what.join("; ")));
        store.clear_trials()?;
        store.clear_note("products")?;
        for k in 0..cfg.source.seeds as u64 {
            let _ = std::fs::remove_file(fisher_path(dir, k));
            if cfg.source.pretrain.is_some() {
                let _ = std::fs::remove_file(source_path(cfg, dir, k));
            }
        }
    }
    let json = serde_json::to_string(&now).expect("a fingerprint serializes");
    store.set_note("inputs", &json)
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
        if !lock::leader_running(ctx.dir) {
            (ctx.log)("the study's leader is gone: stopping");
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
    // (each step's trials, one per source, run in parallel with --jobs)
    let sources = cfg.source.seeds as u64;
    let mut steps: Vec<Vec<NewTrial>> = vec![];
    if cfg.source.pretrain.is_some() {
        steps.push(
            (0..sources)
                .map(|k| NewTrial {
                    key: format!("source/pretrain{}", source_key(k)),
                    phase: "source".into(),
                    scheme: "none".into(),
                    params: with_source(json!({}), k),
                    seed: 0,
                })
                .collect(),
        );
    }
    if cfg.schemes.iter().any(|s| s.needs_fisher()) {
        steps.push(
            (0..sources)
                .map(|k| NewTrial {
                    key: format!("source/fisher{}", source_key(k)),
                    phase: "source".into(),
                    scheme: "none".into(),
                    params: with_source(json!({"samples": cfg.source.fisher_samples}), k),
                    seed: 0,
                })
                .collect(),
        );
    }
    // a step that failed stops the study there: the Fisher of a source that failed to
    // pretrain is not attempted
    for step in steps {
        ctx.store.plan(&step)?;
        if !ctx.complete_phase("source")? {
            return finish(ctx, false);
        }
        let failed: Vec<String> = ctx
            .store
            .trials_of("source")?
            .into_iter()
            .filter(|t| t.status != Status::Done)
            .map(|t| format!("{}: {}", t.key, t.error.as_deref().unwrap_or("not done")))
            .collect();
        if !failed.is_empty() {
            return Err(Error::Other(format!(
                "the source phase failed: {}",
                failed.join("; ")
            )));
        }
    }
    if ctx.store.note("products")?.is_none() {
        let made = inputs::products(cfg, ctx.dir)?;
        let json = serde_json::to_string(&made).expect("a fingerprint serializes");
        ctx.store.set_note("products", &json)?;
    }

    // which images the search and the finals use, said once
    {
        let spec = ctx
            .source_ctx(0)?
            .source
            .spec_or_infer(cfg.source.init_arch.as_deref())?;
        let mut data = cfg.target.clone();
        if data.resize == 0 {
            data.resize = crate::data::stored_side(spec.input[1]);
        }
        let splits = crate::task::load_splits(&data, spec.input[0])?;
        for (phase, val_fraction) in [("search", cfg.search.val_fraction), ("final", 0.0)] {
            data.val_fraction = val_fraction;
            let task = crate::task::select(splits.clone(), &data)?;
            (ctx.log)(&format!("[{phase}] {}", task.note));
        }
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
    let choice = chosen(&ctx.store.trials()?, &Goal::of(&cfg.search));
    let winner = best_scheme(cfg, &choice);
    let stages = ctx
        .source_ctx(0)?
        .source
        .spec_or_infer(cfg.source.init_arch.as_deref())?
        .stages();
    let mut plan = vec![];
    for &scheme in &cfg.schemes {
        let Some(Chosen { point: p, .. }) = choice.get(scheme.name()) else {
            continue;
        };
        if cfg.only_best && winner != Some(scheme) {
            continue;
        }
        plan.extend(runs_over_sources(cfg, "final", scheme, p));
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
    // the finals of the point a target-only search would have chosen, when the objective
    // chose another: what keeping the source costs, measured
    if let Some((scheme, p)) = reference_point(cfg, &ctx.store.trials()?) {
        plan.extend(runs_over_sources(cfg, "reference", scheme, &p));
    }
    ctx.store.plan(&plan)?;
    let finals = ctx.complete_phase("final")?;
    let freeze = ctx.complete_phase("freeze")?;
    let reference = ctx.complete_phase("reference")?;
    let complete = finals && freeze && reference;
    if complete {
        ctx.store.set_note("state", "done")?;
    }
    finish(ctx, complete)
}

/// The `phase` runs of `scheme` at `p`: one per source and seed (`PHASE/SCHEME[/sourceK]/seedN`).
fn runs_over_sources(cfg: &StudyConfig, phase: &str, scheme: Scheme, p: &Point) -> Vec<NewTrial> {
    let mut v = vec![];
    for k in 0..cfg.source.seeds as u64 {
        for seed in 1..=cfg.seeds as u64 {
            v.push(NewTrial {
                key: format!("{phase}/{}{}/seed{seed}", scheme.name(), source_key(k)),
                phase: phase.into(),
                scheme: scheme.name().into(),
                params: with_source(serde_json::to_value(p).expect("a point serializes"), k),
                seed,
            });
        }
    }
    v
}

/// `params` with `source: k` for sources past the first (a one-source study's params).
fn with_source(mut params: Value, k: u64) -> Value {
    if k > 0 {
        params["source"] = json!(k);
    }
    params
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

#[cfg(test)]
mod tests;
