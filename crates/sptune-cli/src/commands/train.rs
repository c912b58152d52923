//! `sptune pretrain` and `sptune finetune`: flags laid over the `--config` file over the
//! command's defaults ([`sptune::run::config`]), then [`sptune::run::pretrain`] /
//! [`sptune::run::finetune`], then the result printed.

use std::process::ExitCode;

use anyhow::Context;
use sptune::Choice;
use sptune::run::{self, FinetuneConfig, Outcome, PretrainConfig};
use sptune::task::DataConfig;
use sptune::train::TrainConfig;

use super::Global;
use crate::args::{FinetuneArgs, PretrainArgs, TrainArgs};
use crate::report::Bar;

fn set<T>(field: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *field = v;
    }
}

/// Lays the shared flags over the data and training sections.
fn apply_common(a: TrainArgs, data: &mut DataConfig, train: &mut TrainConfig) {
    set(&mut data.data, a.data);
    set(&mut data.classes, a.classes);
    if a.per_class.is_some() {
        data.per_class = a.per_class;
    }
    set(&mut data.val_fraction, a.val_fraction);
    set(&mut data.resize, a.resize);
    if let Some(n) = a.test_limit {
        data.test_limit = (n > 0).then_some(n);
    }
    set(&mut train.epochs, a.epochs);
    set(&mut train.batch_size, a.batch_size);
    set(&mut train.lr, a.lr);
    set(&mut train.momentum, a.momentum);
    set(&mut train.schedule, a.schedule);
    set(&mut train.gamma, a.gamma);
    set(&mut train.reg, a.reg);
    set(&mut train.alpha, a.alpha);
    set(&mut train.beta, a.beta);
    set(&mut train.anchor, a.anchor);
    if a.freeze.is_some() {
        train.freeze = a.freeze;
    }
    set(&mut train.bn, a.bn);
    set(&mut train.augment, a.augment);
    set(&mut train.backbone_lr_mult, a.backbone_lr_mult);
    if let Some(seed) = a.seed {
        data.seed = seed;
        train.seed = seed;
    }
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

/// The config file: `--config`, or the `config.toml` of the `--resume` run directory.
fn config_file(a: &TrainArgs) -> anyhow::Result<Option<std::path::PathBuf>> {
    match (&a.resume, &a.config) {
        (Some(dir), _) => {
            let p = dir.join("config.toml");
            anyhow::ensure!(
                p.is_file(),
                "invalid value for --resume: {} holds no config.toml (not an sptune run directory)",
                dir.display()
            );
            Ok(Some(p))
        }
        (None, c) => Ok(c.clone()),
    }
}

/// A resumed run keeps writing into the directory it was resumed from (which may have moved
/// since its config was written).
fn keep_run_dir(
    a: &TrainArgs,
    out: Option<&std::path::Path>,
    run_dir: &mut Option<std::path::PathBuf>,
) {
    if let (Some(dir), Some(out), None) = (&a.resume, out, &a.run_dir)
        && run::dir::run_dir_for(out, run_dir.as_deref()) != *dir
    {
        *run_dir = Some(dir.clone());
    }
}

/// The resolved pretrain configuration.
pub fn pretrain_config(a: PretrainArgs) -> anyhow::Result<PretrainConfig> {
    let mut c = match config_file(&a.common)? {
        Some(p) => PretrainConfig::from_toml(&p)?,
        None => PretrainConfig::default(),
    };
    set(&mut c.out, a.common.out.clone().map(Some));
    set(&mut c.run_dir, a.common.run_dir.clone().map(Some));
    keep_run_dir(&a.common, c.out.as_deref(), &mut c.run_dir);
    apply_common(a.common, &mut c.data, &mut c.train);
    set(&mut c.model.arch, a.arch);
    set(&mut c.model.width, a.width);
    if a.small_stem.is_some() {
        c.model.small_stem = a.small_stem;
    }
    if let Some(h) = &a.hidden {
        c.model.hidden = parse_hidden(h)?;
    }
    Ok(c)
}

/// The resolved finetune configuration.
pub fn finetune_config(a: FinetuneArgs) -> anyhow::Result<FinetuneConfig> {
    let mut c = match config_file(&a.common)? {
        Some(p) => FinetuneConfig::from_toml(&p)?,
        None => FinetuneConfig::default(),
    };
    set(&mut c.out, a.common.out.clone().map(Some));
    set(&mut c.run_dir, a.common.run_dir.clone().map(Some));
    keep_run_dir(&a.common, c.out.as_deref(), &mut c.run_dir);
    apply_common(a.common, &mut c.data, &mut c.train);
    set(&mut c.start.init, a.init);
    if a.init_arch.is_some() {
        c.start.init_arch = a.init_arch;
    }
    if a.fisher.is_some() {
        c.start.fisher = a.fisher;
    }
    set(&mut c.start.fisher_normalize, a.fisher_normalize);
    set(&mut c.start.fisher_floor, a.fisher_floor);
    if a.fisher_max.is_some() {
        c.start.fisher_max = a.fisher_max;
    }
    if a.overwrite_init {
        c.overwrite_init = true;
    }
    Ok(c)
}

fn print_outcome(o: &Outcome, g: &Global) -> anyhow::Result<ExitCode> {
    let r = &o.report;
    if g.json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        if let Some(l) = r.load.as_ref().filter(|_| !g.quiet) {
            eprintln!("starting point: {}", l.summary());
        }
        if !g.quiet && !r.images.is_empty() {
            eprintln!("{}", r.images);
        }
        println!(
            "test accuracy {:.2}%  -> {} (run dir {})",
            100.0 * r.test_acc,
            r.out.as_deref().unwrap_or("-".as_ref()).display(),
            r.run_dir.as_deref().unwrap_or("-".as_ref()).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--config` file is an input too: never the output.
fn refuse_config_as_output(
    config: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let (Some(out), Some(file)) = (out, config) {
        sptune::util::refuse_input(out, &[file])?;
    }
    Ok(())
}

/// `sptune pretrain`.
pub fn pretrain(a: PretrainArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let resume = a.common.resume.is_some();
    let config = config_file(&a.common)?;
    let cfg = pretrain_config(a)?;
    anyhow::ensure!(cfg.out.is_some(), "missing --out FILE.safetensors");
    refuse_config_as_output(config.as_deref(), cfg.out.as_deref())?;
    let mut bar = Bar::new("pretrain", g.quiet);
    let o = if resume {
        run::resume_pretrain(&cfg, &g.device, &mut |p| bar.event(p))?
    } else {
        run::pretrain(&cfg, &g.device, &mut |p| bar.event(p))?
    };
    bar.finish();
    print_outcome(&o, g)
}

/// `sptune finetune`.
pub fn finetune(a: FinetuneArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let resume = a.common.resume.is_some();
    let config = config_file(&a.common)?;
    let cfg = finetune_config(a)?;
    anyhow::ensure!(cfg.out.is_some(), "missing --out FILE.safetensors");
    refuse_config_as_output(config.as_deref(), cfg.out.as_deref())?;
    let mut bar = Bar::new(cfg.train.reg.name(), g.quiet);
    let o = if resume {
        run::resume_finetune(&cfg, &g.device, &mut |p| bar.event(p))?
    } else {
        run::finetune(&cfg, &g.device, &mut |p| bar.event(p))?
    };
    bar.finish();
    print_outcome(&o, g)
}
