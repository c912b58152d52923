//! `sptune pretrain` and `sptune finetune`.
//!
//! The path of one run: flags (+ `--config` file) -> [`Plan`] (resolved, validated, saved as
//! `config.toml`) -> [`sptune::task::load`] -> network (fresh, or the `--init` checkpoint with
//! its head replaced when the classes differ) -> [`sptune::train::fit`] -> checkpoint (written
//! atomically) + run directory (`config.toml`, `summary.csv`, `log.txt`, `result.json`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use burn::module::Module;
use serde::Serialize;
use sptune::fisher::Fisher;
use sptune::models::ModelSpec;
use sptune::models::checkpoint::{Checkpoint, LoadReport, load_into, save_model};
use sptune::regularizer::{Anchor, FisherNormalize, Scheme};
use sptune::task::{self, DataConfig};
use sptune::train::{self, EpochLog, Schedule, TrainConfig};

use super::Global;
use crate::args::TrainArgs;
use crate::report::{self, Bar};

/// A fully resolved run: what `config.toml` records.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `pretrain` or `finetune`.
    pub command: String,
    /// Output checkpoint.
    pub out: PathBuf,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Starting point (finetune).
    pub init: Option<PathBuf>,
    /// Architecture of an `--init` file without metadata.
    pub init_arch: Option<String>,
    /// Data selection.
    pub data: DataConfig,
    /// Optimization and regularization.
    pub train: TrainConfig,
    /// Architecture (pretrain).
    pub arch: String,
    /// ResNet width (pretrain).
    pub width: usize,
    /// Small stem (pretrain); `None` = automatic (inputs up to 64 px).
    pub small_stem: Option<bool>,
    /// MLP hidden sizes (pretrain).
    pub hidden: Vec<usize>,
}

/// What a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The checkpoint written.
    pub out: PathBuf,
    /// Its run directory.
    pub run_dir: PathBuf,
    /// Test accuracy on the run's classes.
    pub test_acc: f64,
    /// Validation accuracy after the last epoch, if a validation split was held out.
    pub val_acc: Option<f64>,
    /// Per-epoch figures.
    pub epochs: Vec<EpochLog>,
    /// How the starting point was loaded (finetune).
    pub load: Option<LoadReport>,
}

fn parse_hidden(s: &str) -> anyhow::Result<Vec<usize>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .ok()
                .filter(|v| *v > 0)
                .with_context(|| {
                    format!("invalid value for --hidden: {p:?} is not a positive integer")
                })
        })
        .collect()
}

/// Resolves flags + config file + defaults into a [`Plan`].
pub fn resolve(a: TrainArgs, command: &str) -> anyhow::Result<Plan> {
    let a = a.with_config_file()?;
    let finetune = command == "finetune";
    let d = DataConfig::default();
    let data = DataConfig {
        data: a.data.clone().unwrap_or(d.data),
        classes: a.classes.clone().unwrap_or_default(),
        per_class: a.per_class,
        val_fraction: a.val_fraction.unwrap_or(0.0),
        resize: a.resize.unwrap_or(if finetune { 0 } else { d.resize }),
        seed: a.seed.unwrap_or(0),
        test_limit: a.test_limit.filter(|n| *n > 0),
    };
    let t = TrainConfig::default();
    let reg = match &a.reg {
        Some(r) => Scheme::parse(r)?,
        None if finetune => Scheme::L2Sp,
        None => Scheme::None,
    };
    let schedule = match a.schedule.as_deref() {
        None | Some("step") => Schedule::Step,
        Some("cosine") => Schedule::Cosine,
        Some("constant") => Schedule::Constant,
        Some(o) => bail!("invalid value for --schedule: {o:?}; expected step, cosine or constant"),
    };
    let train = TrainConfig {
        epochs: a.epochs.unwrap_or(t.epochs),
        batch_size: a.batch_size.unwrap_or(t.batch_size),
        lr: a.lr.unwrap_or(t.lr),
        momentum: a.momentum.unwrap_or(t.momentum),
        schedule,
        gamma: a.gamma.unwrap_or(t.gamma),
        reg,
        alpha: a.alpha.unwrap_or(t.alpha),
        fisher: a.fisher.clone(),
        fisher_normalize: match &a.fisher_normalize {
            Some(s) => FisherNormalize::parse(s)?,
            None => t.fisher_normalize,
        },
        fisher_floor: a.fisher_floor.unwrap_or(t.fisher_floor),
        fisher_max: a.fisher_max,
        // pretraining: β is ordinary weight decay on every parameter
        beta: a.beta.unwrap_or(if finetune { t.beta } else { 5e-4 }),
        anchor: match &a.anchor {
            Some(s) => Anchor::parse(s)?,
            None => Anchor::All,
        },
        freeze: a.freeze,
        bn: match &a.bn {
            Some(s) => train::BnMode::parse(s)?,
            None if finetune => train::BnMode::Auto,
            None => train::BnMode::Train,
        },
        augment: a.augment.unwrap_or(false),
        seed: a.seed.unwrap_or(0),
    };
    train.validate()?;
    if finetune && a.init.is_none() {
        bail!("finetune needs --init SOURCE.safetensors (the starting point)");
    }
    if !finetune && train.reg.needs_reference() {
        bail!(
            "invalid value for --reg: {} needs a starting point; use finetune --init",
            train.reg.name()
        );
    }
    if finetune && a.classes.is_none() {
        bail!("finetune needs --classes (the target task's classes)");
    }
    let out = a.out.clone().context("missing --out FILE.safetensors")?;
    let run_dir = report::run_dir_for(&out, a.run_dir.as_ref());
    Ok(Plan {
        command: command.into(),
        out,
        run_dir,
        init: a.init.clone(),
        init_arch: a.init_arch.clone(),
        data,
        train,
        arch: a.arch.clone().unwrap_or_else(|| "resnet18".into()),
        width: a.width.unwrap_or(64),
        small_stem: a.small_stem,
        hidden: parse_hidden(a.hidden.as_deref().unwrap_or("256"))?,
    })
}

/// Runs a resolved plan.
pub fn execute(plan: &Plan, g: &Global, label: &str) -> anyhow::Result<Outcome> {
    let device = g.device.clone();
    let source = match &plan.init {
        Some(p) => Some(Checkpoint::read(p)?),
        None => None,
    };
    let source_spec = match &source {
        Some(c) => Some(c.spec_or_infer(plan.init_arch.as_deref())?),
        None => None,
    };
    if let (Some(path), Some(src)) = (&plan.train.fisher, &source) {
        // fail before any data is loaded: the Fisher must describe exactly this source model
        Fisher::read(path)?.check_against(src)?;
    }
    let channels = source_spec.as_ref().map(|s| s.input[0]).unwrap_or(3);
    let mut data = plan.data.clone();
    if data.resize == 0 {
        // automatic: what the source model's input needs (ImageNet's 256 -> 224 from 128 px)
        data.resize = source_spec
            .as_ref()
            .map(|s| sptune::data::stored_side(s.input[1]))
            .unwrap_or(DataConfig::default().resize);
    }
    let task = task::load(&data, channels)?;
    let spec = match &source_spec {
        Some(s) => ModelSpec {
            classes: task.classes().to_vec(),
            ..s.clone()
        },
        None => {
            let (mean, std) = sptune::data::channel_stats(&task.train);
            let side = task.train.height;
            ModelSpec {
                arch: plan.arch.clone(),
                classes: task.classes().to_vec(),
                input: [task.train.channels, side, task.train.width],
                width: plan.width,
                small_stem: plan.small_stem.unwrap_or(side <= 64),
                hidden: plan.hidden.clone(),
                mean,
                std: std.into_iter().map(|s| s.max(1e-6)).collect(),
            }
        }
    };
    spec.validate()?;
    device.seed(plan.train.seed);
    let ad = device.clone().autodiff();
    let mut net = spec.init(&ad)?;
    let mut load = None;
    if let (Some(src), Some(sspec)) = (&source, &source_spec) {
        let replace = sspec.classes != spec.classes;
        let (n, rep) = load_into(net, &spec, src, replace)?;
        net = n;
        load = Some(rep);
    }
    // A replaced head belongs to the new part S̄ even when its shape matches the old one.
    let reference = source.as_ref().map(|src| {
        let mut r = src.clone();
        for h in load.iter().flat_map(|l| l.replaced_head.iter()) {
            r.tensors.remove(h);
        }
        r
    });
    let mut bar = Bar::new(label, g.quiet);
    let val = (!task.val.is_empty()).then_some(&task.val);
    let (net, logs) = train::fit(
        net,
        &spec,
        reference.as_ref(),
        &task.train,
        val,
        &plan.train,
        &ad,
        &mut |p| bar.event(p),
    )?;
    let mut lines = bar.finish();
    let bn = plan.train.bn.resolve(&spec, reference.is_some());
    lines.insert(
        0,
        format!("BatchNorm statistics: {bn:?} (--bn {:?})", plan.train.bn),
    );
    let net = net.valid();
    let test_acc = sptune::eval::accuracy(&net, &spec, &task.test, 256, &device)?;
    let mut meta = vec![("sptune_command", plan.command.clone())];
    if let Some(p) = &plan.init {
        meta.push(("init", p.display().to_string()));
    }
    save_model(&net, &spec, &plan.out, &meta)?;
    if let Some(r) = &load {
        lines.insert(
            0,
            format!(
                "loaded {}: {}",
                plan.init.as_ref().unwrap().display(),
                r.summary()
            ),
        );
    }
    lines.push(format!(
        "test accuracy {:.2}% on {} images",
        100.0 * test_acc,
        task.test.len()
    ));
    let outcome = Outcome {
        out: plan.out.clone(),
        run_dir: plan.run_dir.clone(),
        test_acc,
        val_acc: logs.last().and_then(|l| l.val_acc),
        epochs: logs.clone(),
        load,
    };
    let config = toml::to_string(plan).context("serializing the resolved config")?;
    let result = serde_json::to_value(&outcome)?;
    report::write_run_dir(&plan.run_dir, &config, &logs, &lines, &result)?;
    Ok(outcome)
}

fn print_outcome(o: &Outcome, g: &Global) -> anyhow::Result<ExitCode> {
    if g.json {
        println!("{}", serde_json::to_string_pretty(o)?);
    } else {
        if let Some(r) = o.load.as_ref().filter(|_| !g.quiet) {
            eprintln!("starting point: {}", r.summary());
        }
        println!(
            "test accuracy {:.2}%  -> {} (run dir {})",
            100.0 * o.test_acc,
            o.out.display(),
            o.run_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `sptune pretrain`.
pub fn pretrain(a: TrainArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let plan = resolve(a, "pretrain")?;
    let o = execute(&plan, g, "pretrain")?;
    print_outcome(&o, g)
}

/// `sptune finetune`.
pub fn finetune(a: TrainArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let plan = resolve(a, "finetune")?;
    let o = execute(&plan, g, plan.train.reg.name())?;
    print_outcome(&o, g)
}
