//! Whole runs, callable from Rust: [`pretrain`], [`finetune`] and [`evaluate`].
//!
//! Follow one fine-tune top to bottom: a [`FinetuneConfig`] (validated; every default in
//! [`config`]) -> the source checkpoint and its spec ([`crate::models`]) -> the target task
//! ([`crate::task::load`]) -> the network with the source weights and a new head when the
//! classes differ ([`crate::models::checkpoint::load_into`]) -> the [`StartingPoint`] (`w0`
//! without the replaced head, the Fisher weights) -> [`crate::train::fit`] -> test accuracy ->
//! the checkpoint and its run directory ([`dir`]) when `out` is set. The CLI's `pretrain`,
//! `finetune` and `eval`, `demo` and `bench` all go through these functions.
//!
//! ```no_run
//! # fn main() -> sptune::Result<()> {
//! use sptune::run::{FinetuneConfig, finetune};
//! use sptune::regularizer::Scheme;
//!
//! let mut cfg = FinetuneConfig::new("source.safetensors", "5-9");
//! cfg.data.per_class = Some(20);
//! cfg.train.reg = Scheme::L2Sp;
//! cfg.train.alpha = 0.1;
//! let run = finetune(&cfg, &burn::tensor::Device::flex(), &mut |_| {})?;
//! println!("target test accuracy {:.2}%", 100.0 * run.report.test_acc);
//! run.save("tuned.safetensors")?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod dir;
pub mod predict;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;

pub use config::{FinetuneConfig, ModelConfig, PretrainConfig, StartConfig};
pub use predict::{Prediction, predict};

use crate::eval::Forgetting;
use crate::fisher::Fisher;
use crate::models::checkpoint::{Checkpoint, LoadReport, load_into, save_model};
use crate::models::{ModelSpec, Net};
use crate::regularizer::StartingPoint;
use crate::task::{self, DataConfig, Task};
use crate::train::{self, BnMode, EpochLog, Progress};
use crate::util::Choice;
use crate::{Error, Result};

/// What a run reports (printed by `--json`, saved as the run directory's `result.json`).
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The checkpoint written, if any.
    pub out: Option<PathBuf>,
    /// Its run directory, if any.
    pub run_dir: Option<PathBuf>,
    /// Test accuracy on the run's classes.
    pub test_acc: f64,
    /// Number of test images.
    pub test_images: usize,
    /// Validation accuracy after the last epoch, if a validation split was held out.
    pub val_acc: Option<f64>,
    /// Per-epoch figures.
    pub epochs: Vec<EpochLog>,
    /// How the starting point was loaded (finetune).
    pub load: Option<LoadReport>,
    /// The BatchNorm mode that ran (`auto` resolved).
    pub bn: BnMode,
    /// The epoch of best validation accuracy (with a validation split); its model is saved as
    /// `<out stem>.best.safetensors` beside the last one.
    pub best_epoch: Option<usize>,
    /// Whether training was stopped before its last epoch (successive halving).
    pub stopped: bool,
    /// Which images the run trained, validated and tested on, in one line
    /// ([`crate::task::Task::note`]).
    #[serde(default)]
    pub images: String,
}

/// The outcome of a run: the trained model (eval mode, no autodiff), its spec, the report.
pub struct Outcome {
    /// The trained network (after the last epoch).
    pub model: Net,
    /// The network after the epoch of best validation accuracy, with a validation split.
    pub best: Option<Net>,
    /// Its spec (architecture, classes, input normalization).
    pub spec: ModelSpec,
    /// Metrics.
    pub report: RunReport,
}

impl Outcome {
    /// Saves the model as an sptune checkpoint (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_model(&self.model, &self.spec, path.as_ref(), &[])
    }
}

/// Pretrains a network from scratch on `cfg.data`.
pub fn pretrain(
    cfg: &PretrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    pretrain_inner(cfg, device, progress, false)
}

/// Continues the pretraining whose run directory belongs to `cfg` (the config read back from
/// that directory's `config.toml`) from its last completed epoch ([`crate::train::resume`]);
/// starts from epoch 0 when the run died before its first epoch ended.
pub fn resume_pretrain(
    cfg: &PretrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    pretrain_inner(cfg, device, progress, true)
}

fn pretrain_inner(
    cfg: &PretrainConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
    resume: bool,
) -> Result<Outcome> {
    cfg.validate()?;
    let data = crate::data::data_folder(&cfg.data.data);
    let files = RunFiles::open(
        cfg.out.as_deref(),
        cfg.run_dir.as_deref(),
        &data.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        config::to_toml(cfg)?,
        resume,
    )?;
    let task = task::load(&cfg.data, 3)?;
    let (mean, std) = crate::data::channel_stats(&task.train);
    let side = task.train.height;
    let m = &cfg.model;
    let spec = ModelSpec {
        arch: m.arch.clone(),
        classes: task.classes().to_vec(),
        input: [task.train.channels, side, task.train.width],
        width: m.width,
        small_stem: m.small_stem.unwrap_or(side <= 64),
        hidden: m.hidden.clone(),
        mean,
        std: std.into_iter().map(|s| s.max(1e-6)).collect(),
    };
    spec.validate()?;
    device.seed(cfg.train.seed);
    let ad = device.clone().autodiff();
    let net = spec.init(&ad)?;
    let mut lines = vec![];
    let outcome = train_and_test(
        net,
        spec,
        None,
        &task,
        &cfg.train,
        &ad,
        progress,
        &mut |_| false,
        &mut lines,
        files.as_ref(),
        None,
    )?;
    finish(
        outcome,
        None,
        cfg.out.as_deref(),
        files.as_ref(),
        &[("sptune_command", "pretrain".into())],
        lines,
    )
}

/// Fine-tunes the checkpoint `cfg.start.init` on `cfg.data` with `cfg.train.reg`.
pub fn finetune(
    cfg: &FinetuneConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    finetune_inner(cfg, device, progress, &mut |_| false, None, false)
}

/// Continues the fine-tune whose run directory belongs to `cfg` (the config read back from
/// that directory's `config.toml`) from its last completed epoch ([`crate::train::resume`]);
/// starts from epoch 0 when the run died before its first epoch ended.
pub fn resume_finetune(
    cfg: &FinetuneConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    finetune_inner(cfg, device, progress, &mut |_| false, None, true)
}

/// [`finetune`], asking `stop` after each epoch whether to end there (see
/// [`train::fit_until`]).
pub fn finetune_until(
    cfg: &FinetuneConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
    stop: &mut dyn FnMut(&EpochLog) -> bool,
) -> Result<Outcome> {
    finetune_inner(cfg, device, progress, stop, None, false)
}

/// [`finetune_until`] with a [`train::Hooks::probe`] measuring an extra figure at epoch ends
/// (a study's source validation accuracy).
pub fn finetune_probed(
    cfg: &FinetuneConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
    stop: &mut dyn FnMut(&EpochLog) -> bool,
    probe: &mut train::Probe<'_>,
) -> Result<Outcome> {
    finetune_inner(cfg, device, progress, stop, Some(probe), false)
}

fn finetune_inner(
    cfg: &FinetuneConfig,
    device: &Device,
    progress: &mut dyn FnMut(Progress),
    stop: &mut dyn FnMut(&EpochLog) -> bool,
    probe: Option<&mut train::Probe<'_>>,
    resume: bool,
) -> Result<Outcome> {
    cfg.validate()?;
    let mut inputs = vec![];
    if !cfg.overwrite_init {
        if let Some(out) = cfg.out.as_deref()
            && crate::util::same_file(out, &cfg.start.init)
        {
            return Err(Error::invalid(
                "--out",
                format!(
                    "{} is also the starting point {}; write the result elsewhere or give \
                     --overwrite-init",
                    out.display(),
                    cfg.start.init.display()
                ),
            ));
        }
        inputs.push(cfg.start.init.as_path());
    }
    inputs.extend(cfg.start.fisher.as_deref());
    let data = crate::data::data_folder(&cfg.data.data);
    inputs.extend(data.as_deref());
    let files = RunFiles::open(
        cfg.out.as_deref(),
        cfg.run_dir.as_deref(),
        &inputs,
        config::to_toml(cfg)?,
        resume,
    )?;
    let source = Checkpoint::read(&cfg.start.init)?;
    let source_spec = source.spec_or_infer_as(cfg.start.init_arch.as_deref(), "--init-arch")?;
    config::check_freeze(cfg.train.freeze, &source_spec)?;
    // read before any data is loaded: the Fisher must describe exactly this source model
    let fisher = match &cfg.start.fisher {
        Some(path) => Some(read_fisher(path)?),
        None => None,
    };
    if let Some(f) = &fisher {
        f.check_against(&source)?;
    }
    let mut data = cfg.data.clone();
    if data.resize == 0 {
        // automatic: what the source model's input needs (ImageNet's 256 -> 224 from 128 px)
        data.resize = crate::data::stored_side(source_spec.input[1]);
    }
    let task = task::load(&data, source_spec.input[0])?;
    let spec = ModelSpec {
        classes: task.classes().to_vec(),
        ..source_spec.clone()
    };
    spec.validate()?;
    device.seed(cfg.train.seed);
    let ad = device.clone().autodiff();
    let replace_head = source_spec.classes != spec.classes;
    let (net, load) = load_into(spec.init(&ad)?, &spec, &source, replace_head)?;
    let mut start = StartingPoint::new(source, &load.replaced_head);
    if let Some(f) = fisher {
        start = start.with_fisher(f, cfg.start.scaling())?;
    }
    let mut lines = vec![format!(
        "loaded {}: {}",
        cfg.start.init.display(),
        load.summary()
    )];
    let outcome = train_and_test(
        net,
        spec,
        Some(&start),
        &task,
        &cfg.train,
        &ad,
        progress,
        stop,
        &mut lines,
        files.as_ref(),
        probe,
    )?;
    finish(
        outcome,
        Some(load),
        cfg.out.as_deref(),
        files.as_ref(),
        &[
            ("sptune_command", "finetune".into()),
            ("init", cfg.start.init.display().to_string()),
        ],
        lines,
    )
}

/// Reads a Fisher file named by `--fisher`: a path only, never a known weights name.
pub fn read_fisher(path: &Path) -> Result<Fisher> {
    if !path.is_file() {
        let known = crate::weights::known(&path.to_string_lossy()).is_some();
        return Err(Error::invalid(
            "--fisher",
            if known {
                format!(
                    "{} names known pretrained weights, not a Fisher file; make one with \
                     `sptune fisher --model {} --out FILE`",
                    path.display(),
                    path.display()
                )
            } else {
                format!(
                    "{}: no such file (make one with `sptune fisher`)",
                    path.display()
                )
            },
        ));
    }
    Fisher::read(path)
}

#[allow(clippy::too_many_arguments)]
fn train_and_test(
    net: Net,
    spec: ModelSpec,
    start: Option<&StartingPoint>,
    task: &Task,
    cfg: &train::TrainConfig,
    ad: &Device,
    progress: &mut dyn FnMut(Progress),
    stop: &mut dyn FnMut(&EpochLog) -> bool,
    lines: &mut Vec<String>,
    files: Option<&RunFiles>,
    probe: Option<&mut train::Probe<'_>>,
) -> Result<Trained> {
    let val = (!task.val.is_empty()).then_some(&task.val);
    let bn = cfg.bn.resolve(&spec, start.is_some());
    lines.insert(0, task.note.clone());
    lines.insert(
        1,
        format!(
            "BatchNorm statistics: {} (--bn {})",
            bn.name(),
            cfg.bn.name()
        ),
    );
    let resume = match files.filter(|f| f.resume) {
        Some(f) => train::resume::read(&f.state_dir())?,
        None => None,
    };
    if let Some(f) = files {
        f.begin()?;
    }
    if let Some(st) = &resume {
        lines.extend(st.logs.iter().map(dir::epoch_line));
        lines.push(format!(
            "resumed after epoch {} from {}",
            st.epochs_done,
            files.map(|f| f.state_dir()).unwrap_or_default().display()
        ));
    }
    // notes (what training decided on its own) go into the log too
    let shared = std::cell::RefCell::new(&mut *lines);
    let mut progress = |p: Progress| {
        if let Progress::Note(n) = &p {
            shared.borrow_mut().push(format!("note: {n}"));
        }
        progress(p)
    };
    let mut save = |st: &train::EpochState<'_>| -> Result<()> {
        let Some(f) = files else { return Ok(()) };
        let mut lines = shared.borrow_mut();
        lines.push(dir::epoch_line(st.logs.last().expect("an epoch ended")));
        // the summary first: a state on disk always has its epochs in summary.csv (a resumed
        // run rewrites the summary from the state's logs)
        f.write_progress(st.logs, &lines)?;
        train::resume::save(&f.state_dir(), st)
    };
    let hooks = train::Hooks {
        progress: &mut progress,
        stop,
        resume,
        save_state: Some(&mut save),
        // the probe's own lifetime shortened to the hooks'
        probe: probe.map(|p| &mut *p as &mut train::Probe<'_>),
    };
    let fitted = train::fit_with(net, &spec, start, &task.train, val, cfg, ad, hooks)
        .inspect_err(|_| {
            if let Some(f) = files {
                f.abandon_if_empty();
            }
        })
        .map_err(|e| match (e, files) {
            (Error::Diverged(m), Some(f)) if train::resume::has_state(&f.state_dir()) => {
                Error::Diverged(format!(
                    "{m}; the last good epoch is kept in {}: continue from it with --resume {} \
                     and a lower --lr",
                    f.state_dir().display(),
                    f.dir.display()
                ))
            }
            (e, _) => e,
        })?;
    let (net, logs) = (fitted.net, fitted.logs);
    if files.is_none() {
        lines.extend(logs.iter().map(dir::epoch_line));
    }
    let net = net.valid();
    let test_acc = crate::eval::accuracy(&net, &spec, &task.test, spec.eval_batch(), ad)?;
    lines.push(format!(
        "test accuracy {:.2}% on {} images",
        100.0 * test_acc,
        task.test.len()
    ));
    let report = RunReport {
        out: None,
        run_dir: None,
        test_acc,
        test_images: task.test.len(),
        val_acc: logs.last().and_then(|l| l.val_acc),
        epochs: logs,
        load: None,
        bn,
        best_epoch: fitted.best.as_ref().map(|(e, _)| *e),
        stopped: fitted.stopped,
        images: task.note.clone(),
    };
    Ok((net, fitted.best.map(|(_, b)| b.valid()), spec, report))
}

/// A trained network, the one of its best validation epoch, its spec and its report.
type Trained = (Net, Option<Net>, ModelSpec, RunReport);

fn finish(
    (model, best, spec, mut report): Trained,
    load: Option<LoadReport>,
    out: Option<&Path>,
    files: Option<&RunFiles>,
    meta: &[(&str, String)],
    lines: Vec<String>,
) -> Result<Outcome> {
    report.load = load;
    if let (Some(out), Some(f)) = (out, files) {
        save_model(&model, &spec, out, meta)?;
        if let Some(b) = &best {
            save_model(b, &spec, &best_path(out), meta)?;
        }
        report.out = Some(out.to_path_buf());
        report.run_dir = Some(f.dir.clone());
        let json =
            serde_json::to_value(&report).map_err(|e| Error::Other(format!("result.json: {e}")))?;
        dir::write(&f.dir, &f.config_toml, &report.epochs, &lines, &json)?;
        // the outputs are complete: the resume state has served its purpose
        train::resume::clear(&f.state_dir())?;
    }
    Ok(Outcome {
        model,
        best,
        spec,
        report,
    })
}

/// The files of a run with an output: its run directory (config, per-epoch summary and log,
/// resume state), checked and created before any work.
struct RunFiles {
    dir: PathBuf,
    config_toml: String,
    resume: bool,
}

impl RunFiles {
    /// Checks the output paths (`out`, its `.best` sibling, the run directory) before any work
    /// ([`crate::util::check_output`]: not a directory or special file, not one of `inputs`);
    /// nothing is written until [`RunFiles::begin`]. `None` when there is no `out`.
    fn open(
        out: Option<&Path>,
        run_dir: Option<&Path>,
        inputs: &[&Path],
        config_toml: String,
        resume: bool,
    ) -> Result<Option<RunFiles>> {
        let Some(out) = out else {
            if resume {
                return Err(Error::invalid("--resume", "the run has no output (--out)"));
            }
            return Ok(None);
        };
        crate::util::check_output(out, inputs)?;
        crate::util::check_output(&best_path(out), inputs)?;
        let dir = dir::run_dir_for(out, run_dir);
        crate::util::refuse_input_dir(&dir, inputs).map_err(|e| match e {
            Error::Invalid { msg, .. } => Error::invalid("--run-dir", msg),
            e => e,
        })?;
        if dir.exists() && !dir.is_dir() {
            return Err(Error::invalid(
                "--run-dir",
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        let files = RunFiles {
            dir,
            config_toml,
            resume,
        };
        if resume
            && files.dir.join("result.json").exists()
            && !train::resume::has_state(&files.state_dir())
        {
            return Err(Error::invalid(
                "--resume",
                format!(
                    "{}: the run finished (result.json is written); nothing to resume",
                    files.dir.display()
                ),
            ));
        }
        Ok(Some(files))
    }

    /// Training starts: creates the run directory and writes `config.toml` (a resumed run: at
    /// its first epoch end); a fresh run removes an older run's resume state and result there.
    fn begin(&self) -> Result<()> {
        if !self.resume {
            train::resume::clear(&self.state_dir())?;
            // an older run's result: this run's will replace it; until then it would say
            // "finished" to --resume
            let _ = std::fs::remove_file(self.dir.join("result.json"));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        if self.resume {
            // a resumed run's changed options become its config only once an epoch ran with
            // them ([`RunFiles::write_progress`]): a failed attempt leaves the run as it was
            return Ok(());
        }
        crate::util::write_atomic(&self.dir.join("config.toml"), self.config_toml.as_bytes())
    }

    /// After a failure before the first epoch's state was saved: removes what
    /// [`RunFiles::begin`] and [`RunFiles::write_progress`] wrote (and the run directory if
    /// that leaves it empty), so a failed run leaves nothing, not a folder `--resume` cannot
    /// read. A fresh run only: a resumed one keeps its files.
    fn abandon_if_empty(&self) {
        if !self.resume && !train::resume::has_state(&self.state_dir()) {
            for f in ["config.toml", "summary.csv", "log.txt"] {
                let _ = std::fs::remove_file(self.dir.join(f));
            }
            let _ = std::fs::remove_dir(self.state_dir());
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    fn state_dir(&self) -> PathBuf {
        train::resume::state_dir(&self.dir)
    }

    /// Rewrites `config.toml`, `summary.csv` and `log.txt` with the epochs so far (each
    /// atomically).
    fn write_progress(&self, logs: &[EpochLog], lines: &[String]) -> Result<()> {
        crate::util::write_atomic(&self.dir.join("config.toml"), self.config_toml.as_bytes())?;
        crate::util::write_atomic(
            &self.dir.join("summary.csv"),
            dir::summary_csv(logs).as_bytes(),
        )?;
        let mut log = lines.join("\n");
        log.push('\n');
        crate::util::write_atomic(&self.dir.join("log.txt"), log.as_bytes())
    }
}

/// Where the model of the best validation epoch goes: `<out stem>.best.safetensors`.
pub fn best_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{stem}.best.safetensors"))
}

/// What [`evaluate`] measures.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// The model (a checkpoint path or a known weights name).
    pub model: PathBuf,
    /// Architecture of a checkpoint without sptune metadata.
    pub arch: Option<String>,
    /// The source model: also measure the forgetting of its task.
    pub source: Option<PathBuf>,
    /// Data set (`fashion-mnist` or a directory).
    pub data: String,
    /// The source task's data set (`None`: `data`).
    pub source_data: Option<String>,
    /// ImageFolder storage side; 0 = automatic from the model's input.
    pub resize: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            model: PathBuf::new(),
            arch: None,
            source: None,
            data: DataConfig::default().data,
            source_data: None,
            resize: 0,
        }
    }
}

/// What [`evaluate`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// The model evaluated.
    pub model: PathBuf,
    /// Its classes.
    pub classes: Vec<String>,
    /// Test images of those classes.
    pub test_images: usize,
    /// Which images, in one line (the test split, or all of a folder without one).
    #[serde(default)]
    pub images: String,
    /// Top-1 accuracy on them.
    pub test_acc: f64,
    /// The source model, with `source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// Forgetting of the source task, with `source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgetting: Option<Forgetting>,
    /// The forgetting split into BatchNorm statistics and weights, with `source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decomposition: Option<crate::eval::Decomposition>,
}

/// Test accuracy of a checkpoint on its own classes; with a source model, the forgetting of
/// the source task (source head on the fine-tuned body, see [`crate::eval::forgetting`]).
pub fn evaluate(cfg: &EvalConfig, device: &Device) -> Result<Evaluation> {
    let data_for = |spec: &ModelSpec, data: &str| DataConfig {
        data: data.to_string(),
        classes: spec.classes.join(","),
        resize: match cfg.resize {
            0 => crate::data::stored_side(spec.input[1]),
            r => r,
        },
        ..DataConfig::default()
    };
    let ckpt = Checkpoint::read(&cfg.model)?;
    let spec = ckpt.spec_or_infer(cfg.arch.as_deref())?;
    let (net, _) = load_into(spec.init(device)?, &spec, &ckpt, false)?;
    let (test, images) = task::eval_set(&data_for(&spec, &cfg.data), spec.input[0])?;
    let test_acc = crate::eval::accuracy(&net.valid(), &spec, &test, spec.eval_batch(), device)?;
    let (forgetting, decomposition) = match &cfg.source {
        Some(src) => {
            let s = Checkpoint::read(src)?;
            let sspec = s.spec()?;
            let data = cfg.source_data.as_deref().unwrap_or(&cfg.data);
            let st = task::load(&data_for(&sspec, data), sspec.input[0])?;
            let f = crate::eval::forgetting(&s, &ckpt, &st.test, device)?;
            let d = crate::eval::decompose(&s, &ckpt, &st.test, Some(f.source_acc), device)?;
            (Some(f), Some(d))
        }
        None => (None, None),
    };
    Ok(Evaluation {
        model: cfg.model.clone(),
        classes: spec.classes,
        test_images: test.len(),
        images,
        test_acc,
        source: cfg.source.clone(),
        forgetting,
        decomposition,
    })
}

/// The starting point for comparing a fine-tuned checkpoint `w` with its source `w0` (as
/// `sptune distance` does): when both carry a spec and their classes differ, the source head
/// was replaced and belongs to `S̄`, as in training.
pub fn starting_point_of(w0: Checkpoint, w: &Checkpoint) -> Result<StartingPoint> {
    let replaced = match (
        w0.metadata.contains_key("spec"),
        w.metadata.contains_key("spec"),
    ) {
        (true, true) => {
            let (s0, s) = (w0.spec()?, w.spec()?);
            if s0.classes != s.classes {
                s0.head_names()
            } else {
                vec![]
            }
        }
        _ => vec![],
    };
    Ok(StartingPoint::new(w0, &replaced))
}

/// A Fisher computation on a source model's training images.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FisherConfig {
    /// The source model (a checkpoint path or a known weights name).
    pub model: PathBuf,
    /// Architecture of a checkpoint without sptune metadata.
    pub arch: Option<String>,
    /// The data; `classes` empty = the model's own classes. Subsets and validation splits
    /// are ignored: the Fisher is taken on the source task's training images in file order.
    pub data: DataConfig,
    /// Use the first N training images (after class selection); 0 = all.
    pub samples: usize,
    /// Estimator, batch size, seed.
    pub options: crate::fisher::FisherOptions,
    /// Where to write the Fisher file (atomically), if anywhere.
    pub out: Option<PathBuf>,
}

impl Default for FisherConfig {
    fn default() -> Self {
        FisherConfig {
            model: PathBuf::new(),
            arch: None,
            data: DataConfig {
                resize: 0,
                ..DataConfig::default()
            },
            samples: 0,
            options: Default::default(),
            out: None,
        }
    }
}

/// What [`fisher`] computed.
pub struct FisherOutcome {
    /// The Fisher (written to `out` if set).
    pub fisher: Fisher,
    /// Seconds spent in the computation (data loading excluded).
    pub seconds: f64,
    /// The engine that computed it ([`crate::fisher::engine`]).
    pub engine: &'static str,
}

/// The diagonal Fisher of `cfg.model` on the first `cfg.samples` training images of its own
/// task; `progress(done, total)` after each batch.
pub fn fisher(
    cfg: &FisherConfig,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<FisherOutcome> {
    cfg.options.validate()?;
    if let Some(out) = &cfg.out {
        let data = crate::data::data_folder(&cfg.data.data);
        let mut inputs = vec![cfg.model.as_path()];
        inputs.extend(data.as_deref());
        crate::util::check_output(out, &inputs)?;
    }
    let ckpt = Checkpoint::read(&cfg.model)?;
    let spec = ckpt.spec_or_infer(cfg.arch.as_deref())?;
    let (net, _) = load_into(spec.init(device)?, &spec, &ckpt, false)?;
    let mut data = cfg.data.clone();
    if data.resize == 0 {
        data.resize = crate::data::stored_side(spec.input[1]);
    }
    if data.classes.trim().is_empty() {
        data.classes = spec.classes.join(",");
    }
    data.per_class = None;
    data.val_fraction = 0.0;
    let t = task::load(&data, spec.input[0])?;
    if t.classes() != spec.classes.as_slice() {
        return Err(Error::invalid(
            "--classes",
            format!(
                "selects [{}] but {} was trained on [{}] (the Fisher is taken on the source task)",
                t.classes().join(", "),
                cfg.model.display(),
                spec.classes.join(", ")
            ),
        ));
    }
    let ds = if cfg.samples > 0 {
        crate::data::take_first(&t.train, cfg.samples)
    } else {
        t.train
    };
    let total = ds.len();
    progress(0, total);
    let engine = crate::fisher::engine(&net, device);
    let t0 = std::time::Instant::now();
    let f = crate::fisher::compute(&net, &spec, &ds, &cfg.options, device, &mut |done| {
        progress(done, total)
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(out) = &cfg.out {
        f.save(out, &spec)?;
    }
    Ok(FisherOutcome {
        fisher: f,
        seconds,
        engine,
    })
}
