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

/// How one process takes part in a study.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// This process's name in the study file.
    pub worker: String,
    /// Stop after this many trials (for tests of resuming, and for bounded sessions).
    pub max_trials: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            worker: format!("pid{}", std::process::id()),
            max_trials: None,
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

/// A trial's status, metrics and per-epoch figures.
type TrialOutcome = (Status, Value, Option<Value>);

struct Ctx<'a> {
    cfg: &'a StudyConfig,
    dir: &'a Path,
    device: &'a Device,
    store: Store,
    opts: RunOptions,
    done: usize,
    log: &'a mut dyn FnMut(&str),
}

impl Ctx<'_> {
    fn budget_left(&self) -> bool {
        self.opts.max_trials.is_none_or(|m| self.done < m)
    }

    /// Claims and runs the pending trials of `phase` with `f`, recording each outcome.
    fn run_phase(
        &mut self,
        phase: &str,
        f: &mut dyn FnMut(&mut Self, &Trial) -> Result<TrialOutcome>,
    ) -> Result<()> {
        while self.budget_left() {
            let Some(t) = self.store.claim(&self.opts.worker, Some(phase))? else {
                break;
            };
            (self.log)(&format!("[{phase}] {}", t.key));
            let t0 = Instant::now();
            let secs = || t0.elapsed().as_secs_f64();
            match f(self, &t) {
                Ok((status, metrics, epochs)) => {
                    self.store.finish(
                        t.id,
                        status,
                        Some(&metrics),
                        epochs.as_ref(),
                        None,
                        secs(),
                    )?;
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.store
                        .finish(t.id, Status::Failed, None, None, Some(&msg), secs())?;
                    (self.log)(&format!("[{phase}] {} failed: {msg}", t.key));
                }
            }
            self.done += 1;
        }
        Ok(())
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
/// validation accuracy; ties go to the earlier trial.
pub fn chosen(trials: &[Trial]) -> BTreeMap<String, (Point, f64)> {
    let mut out: BTreeMap<String, (Point, f64)> = BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| t.phase == "search" && t.status == Status::Done)
    {
        let (Ok(p), Some(v)) = (
            point_of(t),
            t.metrics.as_ref().and_then(|m| m["val_acc"].as_f64()),
        ) else {
            continue;
        };
        match out.get(&t.scheme) {
            Some((_, best)) if *best >= v => {}
            _ => {
                out.insert(t.scheme.clone(), (p, v));
            }
        }
    }
    out
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

/// Runs (or resumes) the study `cfg` in the folder `dir`; `log` gets one line per trial.
pub fn run(
    cfg: &StudyConfig,
    dir: &Path,
    device: &Device,
    opts: RunOptions,
    log: &mut dyn FnMut(&str),
) -> Result<StudyOutcome> {
    cfg.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config_text =
        toml::to_string(cfg).map_err(|e| Error::Other(format!("study config: {e}")))?;
    let store = Store::open(&store_path(dir), &config_text)?;
    let requeued = store.requeue_running()?;
    if requeued > 0 {
        log(&format!(
            "resuming: {requeued} interrupted trial(s) requeued"
        ));
    }
    let mut ctx = Ctx {
        cfg,
        dir,
        device,
        store,
        opts,
        done: 0,
        log,
    };
    let started = Instant::now();

    // 1. the source model and its Fisher
    let mut plan = vec![];
    if cfg.source.pretrain.is_some() {
        plan.push(NewTrial {
            key: "source/pretrain".into(),
            phase: "source".into(),
            scheme: "none".into(),
            params: json!({}),
            seed: 0,
        });
    }
    if cfg.schemes.iter().any(|s| s.needs_fisher()) {
        plan.push(NewTrial {
            key: "source/fisher".into(),
            phase: "source".into(),
            scheme: "none".into(),
            params: json!({"samples": cfg.source.fisher_samples}),
            seed: 0,
        });
    }
    ctx.store.plan(&plan)?;
    ctx.run_phase("source", &mut |c, t| {
        if t.key == "source/pretrain" {
            let mut pre = c
                .cfg
                .source
                .pretrain
                .clone()
                .expect("planned with a pretrain");
            pre.out = Some(source_path(c.cfg, c.dir));
            pre.run_dir = None;
            let o = run::pretrain(&pre, c.device, &mut |_| {})?;
            Ok((Status::Done, json!({"test_acc": o.report.test_acc}), None))
        } else {
            let o = run::fisher(
                &FisherConfig {
                    model: source_path(c.cfg, c.dir),
                    arch: c.cfg.source.init_arch.clone(),
                    data: DataConfig {
                        data: c.cfg.target.data.clone(),
                        ..FisherConfig::default().data
                    },
                    samples: c.cfg.source.fisher_samples,
                    out: Some(fisher_path(c.dir)),
                    ..FisherConfig::default()
                },
                c.device,
                &mut |_, _| {},
            )?;
            Ok((
                Status::Done,
                json!({"seconds": o.seconds, "engine": o.engine}),
                None,
            ))
        }
    })?;
    let source_ready = ctx
        .store
        .trials_of("source")?
        .iter()
        .all(|t| t.status == Status::Done);
    if !source_ready {
        return finish(ctx, false);
    }

    // the source task's test images and the source model's accuracy on them (forgetting)
    let source = Checkpoint::read(&source_path(cfg, dir))?;
    let source_spec = source.spec_or_infer(cfg.source.init_arch.as_deref())?;
    let source_test = task::load(
        &DataConfig {
            data: cfg.target.data.clone(),
            classes: source_spec.classes.join(","),
            test_limit: (cfg.source.test_limit > 0).then_some(cfg.source.test_limit),
            resize: crate::data::stored_side(source_spec.input[1]),
            ..DataConfig::default()
        },
        source_spec.input[0],
    )
    .ok()
    .map(|t| t.test);
    let source_acc = match (&source_test, source.metadata.contains_key("spec")) {
        (Some(st), true) => Some(crate::eval::forgetting(&source, &source, st, device)?.source_acc),
        _ => None,
    };

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
    let milestones = if cfg.search.halving {
        search::milestones(cfg.train.epochs, cfg.search.eta)
    } else {
        vec![]
    };
    ctx.run_phase("search", &mut |c, t| {
        if let Some(b) = c.cfg.search.budget_minutes
            && started.elapsed().as_secs_f64() > 60.0 * b
        {
            return Ok((Status::Stopped, json!({"skipped": "budget"}), None));
        }
        let scheme = scheme_of(t)?;
        let p = point_of(t)?;
        let mut ft = finetune_config(c.cfg, c.dir, scheme, &p, 0);
        ft.data.val_fraction = c.cfg.search.val_fraction;
        let recorded = recorded_val(&c.store.trials()?, &t.scheme);
        let eta = c.cfg.search.eta;
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
        let o = run::finetune_until(&ft, c.device, &mut |_| {}, &mut stop)?;
        let r = &o.report;
        let vals: Vec<f64> = r.epochs.iter().filter_map(|e| e.val_acc).collect();
        let metrics = json!({
            "val_acc": vals.last().copied().unwrap_or(f64::NAN),
            "best_val_acc": vals.iter().copied().fold(f64::NAN, f64::max),
            "epochs": r.epochs.len(),
            "stopped": r.stopped,
        });
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
    })?;
    if ctx
        .store
        .trials_of("search")?
        .iter()
        .any(|t| matches!(t.status, Status::Pending | Status::Running))
    {
        return finish(ctx, false);
    }

    // 3. the final runs, and 4. the freeze sweep
    let choice = chosen(&ctx.store.trials()?);
    let winner = best_scheme(cfg, &choice);
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
            for k in 0..=source_spec.stages() {
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
    let source_test = source_test.as_ref();
    for phase in ["final", "freeze"] {
        ctx.run_phase(phase, &mut |c, t| {
            let scheme = scheme_of(t)?;
            let p = point_of(t)?;
            let mut ft = finetune_config(c.cfg, c.dir, scheme, &p, t.seed);
            ft.data.val_fraction = 0.0;
            if let Some(k) = t.params["freeze"].as_u64() {
                ft.train.freeze = (k > 0).then_some(k as usize);
            }
            let out = c
                .dir
                .join(phase)
                .join(format!("{}.safetensors", t.key.replace('/', "_")));
            ft.out = Some(out.clone());
            let o = run::finetune(&ft, c.device, &mut |_| {})?;
            let mut metrics = json!({"test_acc": o.report.test_acc});
            if phase == "final" {
                let tuned = Checkpoint::read(&out)?;
                if let (Some(st), Some(before)) = (source_test, source_acc) {
                    let after = crate::eval::source_head_accuracy(&source, &tuned, st, c.device)?;
                    metrics["source_acc_after"] = json!(after);
                    metrics["forgetting"] = json!(100.0 * (before - after));
                }
                let start = run::starting_point_of(source.clone(), &tuned)?;
                let d = crate::eval::distance(&start, &tuned, Anchor::All);
                let rel: Vec<Value> = d.tensors.iter().map(|t| json!([t.name, t.rel])).collect();
                metrics["distances"] = Value::Array(rel);
            }
            Ok((
                Status::Done,
                metrics,
                Some(serde_json::to_value(&o.report.epochs).unwrap_or(Value::Null)),
            ))
        })?;
    }
    let complete = ctx
        .store
        .trials()?
        .iter()
        .all(|t| !matches!(t.status, Status::Pending | Status::Running));
    finish(ctx, complete)
}

fn finish(ctx: Ctx<'_>, complete: bool) -> Result<StudyOutcome> {
    let results = aggregate(ctx.cfg, &ctx.store.trials()?);
    let markdown = report::markdown(&results);
    let written = if complete {
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
