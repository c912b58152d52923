//! Command-line arguments. Training flags can also come from a TOML file (`--config`); a flag
//! given on the command line overrides the file. Every field is optional here and resolved
//! against the defaults of [`sptune::train::TrainConfig`] / [`sptune::task::DataConfig`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sptune::fisher::Estimator;
use sptune::regularizer::{Anchor, FisherNormalize, Scheme};
use sptune::study::config::Objective;
use sptune::train::{BnMode, Schedule};

/// Fine-tune pretrained networks with -SP regularizers.
#[derive(Parser, Debug)]
#[command(
    name = "sptune",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SPTUNE_GIT_HASH"), ")"),
    about,
    args_override_self = true
)]
pub struct Cli {
    /// Compute threads (0 = all cores; more than the machine's cores is lowered to them).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// Largest image decoded, in pixels (width x height, read from the file's header before
    /// decoding); larger PNG/JPEG files are refused.
    #[arg(long, global = true, default_value_t = sptune::runtime::DEFAULT_MAX_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
    /// Memory for one data set's decoded images (both splits, f32), in MiB; a larger data set
    /// is refused before decoding.
    #[arg(long, global = true, default_value_t = sptune::runtime::DEFAULT_MAX_DATA_MB,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_data_mb: u64,
    /// Memory for the frozen stages' outputs with --freeze and no augmentation, in MiB (0 = off).
    #[arg(long, global = true, default_value_t = 2048)]
    pub cache_mb: usize,
    /// Compute device: cpu (default), cuda, wgpu or vulkan (with the cargo feature of that name;
    /// vulkan is wgpu pinned to Vulkan with SPIR-V shaders).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network from scratch on a source task.
    #[command(args_override_self = true)]
    Pretrain(PretrainArgs),
    /// Fine-tune a source checkpoint (--init) on a target task with a regularizer.
    #[command(args_override_self = true)]
    Finetune(FinetuneArgs),
    /// Accuracy on the test split of the model's classes; with --source, the forgetting.
    #[command(args_override_self = true)]
    Eval(EvalArgs),
    /// Weight-space interpolation (WiSE-FT) between a starting point and its fine-tune.
    #[command(args_override_self = true)]
    Interpolate(InterpolateArgs),
    /// How far fine-tuning moved the weights from the starting point.
    #[command(args_override_self = true)]
    Distance(DistanceArgs),
    /// Convert a checkpoint (PyTorch .pth/.pt or safetensors) to an sptune checkpoint.
    #[command(args_override_self = true)]
    Convert(ConvertArgs),
    /// Top-5 classes of images.
    #[command(args_override_self = true)]
    Predict(PredictArgs),
    /// Fine-tune a classification ResNet checkpoint as a segmentation network (FCN head) on a
    /// folder with train/ and test/ (images/ + masks/), with a scheme; prints mIoU and, with
    /// --source-classes, the source task's forgetting.
    #[command(args_override_self = true)]
    Segment(SegmentArgs),
    /// Segmentation scenes composed from a classification set's items (Fashion-MNIST by
    /// default), written as images/ + masks/ folders for training and testing.
    #[command(args_override_self = true)]
    Scenes(ScenesArgs),
    /// Known pretrained weights: list them, fetch one into the cache.
    Weights(WeightsArgs),
    /// Diagonal Fisher information of a source model on its training inputs.
    #[command(args_override_self = true)]
    Fisher(FisherArgs),
    /// The main job: the fashion-mnist-quick study (pretrain on Fashion-MNIST 0-4; per scheme,
    /// choose the hyperparameters on validation and fine-tune on 5-9 with 20 images per class
    /// over seeds), its table and its HTML report.
    #[command(args_override_self = true)]
    Demo(DemoArgs),
    /// Train-step time of plain fine-tuning and of each scheme on ResNet-18.
    #[command(args_override_self = true)]
    Bench(BenchArgs),
    /// Time and peak memory of the batched Fisher against the batch-1 loop.
    #[command(args_override_self = true)]
    BenchFisher(BenchFisherArgs),
    /// Compare schemes with hyperparameters chosen on validation, over seeds, with a report
    /// (resumes an interrupted study in the same folder).
    #[command(args_override_self = true)]
    Study(StudyArgs),
    /// Pick the scheme, alpha, beta and lr on validation within a budget, fine-tune with the
    /// winner, save it and print the table behind the choice.
    #[command(args_override_self = true)]
    Auto(AutoArgs),
    /// The report (HTML with plots, Markdown, CSV) of a study folder.
    #[command(args_override_self = true)]
    Report(ReportArgs),
    /// The trials of a study: list them, show one.
    Runs(RunsArgs),
}

/// `sptune study`.
#[derive(Args, Debug)]
pub struct StudyArgs {
    /// Study file (TOML; see examples/study.toml).
    #[arg(long, conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// A built-in study: fashion-mnist (all seven schemes, target accuracy), fashion-mnist-keep
    /// (a forgetting budget of 3 points, two sources), fashion-mnist-quick (the demo's) or
    /// efficientnet-lite0 (ImageNet weights).
    #[arg(long)]
    pub preset: Option<String>,
    /// Study folder (study.sqlite, checkpoints, report.html); default runs/study-NAME.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Final runs per scheme (overrides the file).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Random search points per scheme (overrides the file).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Fine-tuning epochs (overrides the file).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Schemes to compare (overrides the file).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub schemes: Option<Vec<Scheme>>,
    /// Stop after this many trials (run again to resume).
    #[arg(long)]
    pub max_trials: Option<usize>,
    /// Worker processes sharing the trials (each gets cores/N threads unless --threads says).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Run as a helper of a study led by another process in --dir (what --jobs starts).
    #[arg(long, hide = true)]
    pub helper: bool,
    /// When the study's inputs (source checkpoint, data files, the source phase's files)
    /// changed since it began: start over from the source on the new ones instead of refusing.
    #[arg(long, value_enum)]
    pub restart_from: Option<RestartFrom>,
    /// What the search chooses on (overrides the file): target accuracy, the best within a
    /// forgetting budget, or accuracy − λ·forgetting.
    #[arg(long, value_enum)]
    pub objective: Option<Objective>,
    /// The forgetting budget in points of source validation accuracy (implies --objective
    /// budget unless another is given).
    #[arg(long, value_parser = non_negative)]
    pub max_forgetting: Option<f64>,
    /// λ of --objective tradeoff.
    #[arg(long, value_parser = non_negative)]
    pub tradeoff_lambda: Option<f64>,
}

/// Where `study --restart-from` starts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartFrom {
    /// Every phase (all of them depend on the source and the data).
    Source,
}

/// A finite number >= 0.
fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a finite number >= 0")),
    }
}

/// `sptune auto`.
#[derive(Args, Debug)]
pub struct AutoArgs {
    /// The source checkpoint (a file or a known weights name).
    #[arg(long)]
    pub init: PathBuf,
    /// Architecture of an --init file without sptune metadata.
    #[arg(long = "init-arch", value_parser = clap::builder::PossibleValuesParser::new(sptune::models::registry::names()))]
    pub init_arch: Option<String>,
    /// Target data (fashion-mnist or a directory).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Target classes: names (`sandal,sneaker`: an image folder's class folders) or indices
    /// and ranges in the data's class order (`0-2`, `5,6,9`; a folder's classes are sorted by
    /// name). Default: every class of the data.
    #[arg(long, value_parser = class_list)]
    pub classes: Option<String>,
    /// Training images per class (default: all).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Test on the first N test images only.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Time for the search, e.g. 20m, 90s, 1h (default: no limit).
    #[arg(long, value_parser = parse_minutes)]
    pub budget: Option<f64>,
    /// Schemes to choose from (the Fisher ones need the source task's data: see study).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "l2,l2-sp,l1-sp,gl-sp"
    )]
    pub schemes: Vec<Scheme>,
    /// Search points per scheme.
    #[arg(long, default_value_t = 6)]
    pub trials: usize,
    /// Fine-tuning epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Learning rates to choose from (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.01")]
    pub lr: Vec<f64>,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Study folder (trials, checkpoints; resumable); default: beside --out.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Worker processes sharing the search (each gets cores/N threads unless --threads says).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Where the chosen model goes.
    #[arg(long)]
    pub out: PathBuf,
    /// What the search chooses on: target accuracy, the best within a forgetting budget, or
    /// accuracy − λ·forgetting (default: budget when --max-forgetting is given, else target).
    #[arg(long, value_enum)]
    pub objective: Option<Objective>,
    /// The forgetting budget in points of source validation accuracy.
    #[arg(long, value_parser = non_negative)]
    pub max_forgetting: Option<f64>,
    /// λ of --objective tradeoff.
    #[arg(long, value_parser = non_negative)]
    pub tradeoff_lambda: Option<f64>,
    /// The source task's data (fashion-mnist or a directory), for forgetting and the source
    /// validation images (default: the target's data with the source model's classes).
    #[arg(long)]
    pub source_data: Option<String>,
    /// The source task's classes in --source-data.
    #[arg(long, value_parser = class_list)]
    pub source_classes: Option<String>,
    /// Source test images forgetting is reported on (first N); validation images come from
    /// the ones after them.
    #[arg(long, default_value_t = 2000)]
    pub source_test_limit: usize,
    /// Source validation images each search trial is measured on (0: a target-only search).
    #[arg(long, default_value_t = sptune::study::config::DEFAULT_SOURCE_VAL_IMAGES)]
    pub source_val_images: usize,
}

/// `90s`, `20m`, `1.5h` or plain minutes.
fn parse_minutes(s: &str) -> Result<f64, String> {
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 'm'),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 20m, 90s or 1h"))?;
    let minutes = match unit {
        's' => v / 60.0,
        'm' => v,
        'h' => v * 60.0,
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    };
    if minutes.is_finite() && minutes > 0.0 {
        Ok(minutes)
    } else {
        Err(format!("{s:?} is not a positive duration"))
    }
}

/// A count that must be at least 1 (`--steps`, `--batch-size`, `--top`, ...).
fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("0: must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// `--head` of `sptune segment`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum HeadArg {
    /// torchvision's FCNHead.
    Fcn,
    /// torchvision's DeepLabHead (ASPP).
    Deeplabv3,
}

/// `12,24,36`: three positive dilation rates.
fn rates(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|t| t.trim().parse::<usize>().ok().filter(|&r| r > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{s:?} is not three positive whole numbers like 12,24,36"))?;
    <[usize; 3]>::try_from(v).map_err(|v| format!("{s:?} gives {} rates, ASPP takes 3", v.len()))
}

/// `--alpha` and `--lr` of `sptune segment`: one value or comma-separated candidates.
#[derive(Clone, Debug)]
pub struct Candidates(pub Vec<f64>);

/// `0.01` or `0.001,0.01,0.1`: finite, at least `min` (above it when `strict`), no value
/// twice.
fn candidates(s: &str, min: f64, strict: bool) -> Result<Candidates, String> {
    let mut out = Vec::new();
    for t in s.split(',') {
        let v: f64 = t
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} is not a number (give 0.01 or 0.001,0.01,0.1)"))?;
        if !v.is_finite() || v < min || (strict && v == min) {
            let bound = if strict { "above" } else { "at least" };
            return Err(format!("{t:?}: must be finite and {bound} {min}"));
        }
        if out.contains(&v) {
            return Err(format!("{t:?} is listed twice"));
        }
        out.push(v);
    }
    Ok(Candidates(out))
}

/// `--alpha`: candidates of at least 0.
fn alpha_list(s: &str) -> Result<Candidates, String> {
    candidates(s, 0.0, false)
}

/// `--lr`: candidates above 0.
fn lr_list(s: &str) -> Result<Candidates, String> {
    candidates(s, 0.0, true)
}

/// A class selection given on the command line: an empty one is an error (leave the flag out
/// for all classes) rather than silently meaning all of them.
fn class_list(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err(format!(
            "{s:?} is an empty class list (leave --classes out for all classes)"
        ))
    } else {
        Ok(s.to_string())
    }
}

/// `sptune report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The study folder (or its study.sqlite).
    pub study: PathBuf,
    /// Output HTML file (default: report.html in the study folder).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

/// `sptune runs`.
#[derive(Args, Debug)]
pub struct RunsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// `sptune runs list|show`.
#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// One line per trial: key, status, scheme, parameters, main metric, seconds.
    List {
        /// The study folder (or its study.sqlite).
        study: PathBuf,
    },
    /// Trials side by side: parameters and main metrics.
    Compare {
        /// The study folder (or its study.sqlite).
        study: PathBuf,
        /// Trial keys (e.g. final/l2/seed1 final/l2-sp/seed1), or a prefix ending in / for
        /// all trials under it (e.g. final/).
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// One trial whole: parameters, metrics, per-epoch figures.
    Show {
        /// The study folder (or its study.sqlite).
        study: PathBuf,
        /// The trial's key (e.g. final/l2-sp/seed1).
        key: String,
    },
}

/// Flags shared by `pretrain` and `finetune`. Each overrides the same field of the `--config`
/// file, which overrides the command's defaults ([`sptune::run::config`]).
#[derive(Args, Debug, Default, Clone)]
pub struct TrainArgs {
    /// TOML file of the run's configuration (a run directory's `config.toml` is one); flags
    /// override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the killed run in this run directory from its last completed epoch (its
    /// `config.toml` is the config; flags override it, and any change but a larger --epochs
    /// makes the result differ from an uninterrupted run).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Output checkpoint (.safetensors).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run directory (resolved config, summary.csv, log); default: beside --out.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Data: `fashion-mnist` or a directory (IDX or ImageFolder layout).
    #[arg(long)]
    pub data: Option<String>,
    /// Classes: names (an image folder's class folder names, `sandal,sneaker`) or indices and
    /// ranges in the data's class order (`0-4`, `5,6,9`; a folder's classes sorted by name);
    /// the head's output i is the i-th listed class. Default: every class of the data.
    #[arg(long, value_parser = class_list)]
    pub classes: Option<String>,
    /// Keep the first N training images of each class after a seeded shuffle.
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Fraction of training images held out for validation.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Side ImageFolder images are stored at before the center crop to the model's input
    /// (default: for finetune the source model's input side, 8/7 of it from 128 px up, i.e. 256
    /// for 224; for pretrain 32).
    #[arg(long)]
    pub resize: Option<usize>,
    /// Evaluate on the first N test images (file order) only; 0 = all.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Passes over the training set.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum (PyTorch semantics, dampening 0).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// LR schedule (step: x gamma at 50% and 75% of the epochs).
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// Step-schedule factor.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Regularizer on the shared part S (finetune default l2-sp; pretrain none).
    #[arg(long, value_enum)]
    pub reg: Option<Scheme>,
    /// Weight of the regularizer on the shared part S.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Weight of plain L2 on the new head S̄ (pretrain: on everything).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Which tensors of S the scheme pulls toward w0.
    #[arg(long, value_enum)]
    pub anchor: Option<Anchor>,
    /// Freeze the stem and the first K stages.
    #[arg(long)]
    pub freeze: Option<usize>,
    /// BatchNorm statistics while training (finetune default auto; pretrain train).
    #[arg(long, value_enum)]
    pub bn: Option<BnMode>,
    /// Random crop + horizontal flip on training batches.
    #[arg(long)]
    pub augment: Option<bool>,
    /// Seed of initialization, subsets and shuffling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Learning-rate factor of everything but the new head (e.g. 0.1; default 1).
    #[arg(long)]
    pub backbone_lr_mult: Option<f64>,
}

/// `sptune pretrain`.
#[derive(Args, Debug, Default, Clone)]
pub struct PretrainArgs {
    /// Flags shared with finetune.
    #[command(flatten)]
    pub common: TrainArgs,
    /// Architecture.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(sptune::models::registry::names()))]
    pub arch: Option<String>,
    /// ResNet base width (torchvision: 64).
    #[arg(long)]
    pub width: Option<usize>,
    /// ResNet small-image stem (3x3 conv, no max-pool); default: for inputs up to 64 px.
    #[arg(long)]
    pub small_stem: Option<bool>,
    /// MLP hidden sizes, e.g. `256,128` (empty: linear model).
    #[arg(long)]
    pub hidden: Option<String>,
}

/// `sptune finetune`.
#[derive(Args, Debug, Default, Clone)]
pub struct FinetuneArgs {
    /// Flags shared with pretrain.
    #[command(flatten)]
    pub common: TrainArgs,
    /// Starting point: a source checkpoint (or a known weights name).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Architecture of an --init file without sptune metadata (e.g. a torchvision state dict).
    #[arg(long = "init-arch", value_parser = clap::builder::PossibleValuesParser::new(sptune::models::registry::names()))]
    pub init_arch: Option<String>,
    /// Fisher file of the source model (`sptune fisher`), for l2-sp-fisher / gl-sp-fisher.
    #[arg(long)]
    pub fisher: Option<PathBuf>,
    /// Fisher scaling: mean divides by the mean over the anchored part of S, so alpha is on
    /// L2-SP's scale.
    #[arg(long, value_enum)]
    pub fisher_normalize: Option<FisherNormalize>,
    /// Added to every (scaled) Fisher weight (default 0).
    #[arg(long)]
    pub fisher_floor: Option<f64>,
    /// Cap on every (scaled) Fisher weight, applied before the floor (default: none).
    #[arg(long)]
    pub fisher_max: Option<f64>,
    /// Allow --out to be the --init file (replaced once training ends).
    #[arg(long)]
    pub overwrite_init: bool,
}

/// `sptune eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model to evaluate.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture, for a checkpoint without sptune metadata.
    #[arg(long)]
    pub arch: Option<String>,
    /// The source model: report forgetting of its task.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Data (default fashion-mnist). For a segmentation network (`sptune segment --out`):
    /// a folder with images/ and masks/, or one holding it as test/ (`sptune scenes`).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// The source task's data for --source (default: --data; for a segmentation network,
    /// fashion-mnist).
    #[arg(long)]
    pub source_data: Option<String>,
    /// Side ImageFolder images are stored at before the center crop to the model's input;
    /// 0 = automatic (the input side, 8/7 of it from 128 px up: 256 for 224).
    #[arg(long, default_value_t = 0)]
    pub resize: usize,
}

/// `sptune interpolate`.
#[derive(Args, Debug)]
pub struct InterpolateArgs {
    /// The starting point θ0 (the source model).
    #[arg(long)]
    pub from: PathBuf,
    /// The fine-tune θ_ft.
    #[arg(long)]
    pub to: PathBuf,
    /// One weight a of the fine-tune (0: the starting point, 1: the fine-tune); with --out.
    #[arg(long, conflicts_with = "sweep", requires = "out")]
    pub at: Option<f64>,
    /// Weights to evaluate: `0,0.25,0.5,0.75,1` or `0:0.1:1`.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Where the model of --at goes (BatchNorm recalibrated on the target training images).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Target data (the classes are the fine-tune's).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Target training images per class for the recalibration (as the fine-tune had).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Seed of that subset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The source task's data (default: --data; the classes are the starting point's).
    #[arg(long)]
    pub source_data: Option<String>,
}

/// `sptune distance`.
#[derive(Args, Debug)]
pub struct DistanceArgs {
    /// The starting point w0.
    #[arg(long)]
    pub from: PathBuf,
    /// The fine-tuned weights w.
    #[arg(long)]
    pub to: PathBuf,
    /// Penalties over all of S, or kernels only.
    #[arg(long, value_enum, default_value_t = Anchor::All)]
    pub anchor: Anchor,
    /// Fisher file of w0: adds the L2-SP-Fisher and GL-SP-Fisher penalties (raw F).
    #[arg(long)]
    pub fisher: Option<PathBuf>,
}

/// `sptune predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The model (a checkpoint path or a known name such as efficientnet-lite0).
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Architecture, for a checkpoint without sptune metadata.
    #[arg(long)]
    pub arch: Option<String>,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub top: usize,
    /// Segmentation networks: the folder each image's mask is written to (`STEM.png`, VOC
    /// colours, values the class indices).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Segmentation networks: also write `STEM-panel.png`, the image beside its (true and)
    /// predicted mask, every pixel repeated N times.
    #[arg(long, value_parser = positive)]
    pub panel: Option<usize>,
    /// Segmentation networks: a folder of true masks (`STEM.png`) shown in the panels.
    #[arg(long)]
    pub truth: Option<std::path::PathBuf>,
    /// PNG or JPEG files.
    #[arg(required = true)]
    pub images: Vec<std::path::PathBuf>,
}

/// `sptune segment`.
#[derive(Args, Debug)]
pub struct SegmentArgs {
    /// The classification checkpoint whose network (a ResNet or EfficientNet-Lite0) becomes
    /// the backbone (the -SP starting point).
    #[arg(long)]
    pub init: std::path::PathBuf,
    /// The folder with train/ and test/ (each images/ + masks/ + classes.txt), e.g. from
    /// `sptune scenes`.
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// Where to save the segmentation network (safetensors, torchvision's names).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// The scheme on the backbone.
    #[arg(long, default_value = "l2-sp")]
    pub reg: Scheme,
    /// Its weight alpha, or candidates `0.001,0.01,0.1` chosen by validation mIoU (on
    /// --validation of the training scenes, with --lr's candidates) before the final
    /// fine-tune on all of them.
    #[arg(long, default_value = "0.01", value_parser = alpha_list)]
    pub alpha: Candidates,
    /// Share of the training scenes held out (every 1/share-th by file order) when --alpha or
    /// --lr list candidates.
    #[arg(long, default_value_t = 0.2)]
    pub validation: f64,
    /// L2 weight beta on the new head.
    #[arg(long, default_value_t = 0.01)]
    pub beta: f64,
    /// Freeze the backbone's stem and first K stages (ResNet 0-4; EfficientNet-Lite0 0-8,
    /// 8 being its head convolution).
    #[arg(long)]
    pub freeze: Option<usize>,
    /// BatchNorm statistics while training: train (batch statistics), frozen (running
    /// statistics kept) or auto (frozen for EfficientNet-Lite0, whose momentum is 0.01; train
    /// for ResNets).
    #[arg(long, value_enum, default_value_t = BnMode::Auto)]
    pub bn: BnMode,
    /// Base learning rate (SGD, momentum 0.9, step schedule), or candidates `0.01,0.05`
    /// chosen by validation together with --alpha's.
    #[arg(long, default_value = "0.01", value_parser = lr_list)]
    pub lr: Candidates,
    /// Epochs.
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub epochs: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub batch_size: usize,
    /// Training crop side (after a random scale of 0.75-1.25 and before a random flip).
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub crop: usize,
    /// The head: fcn (torchvision's FCNHead) or deeplabv3 (DeepLabHead: ASPP, then a 3x3
    /// convolution).
    #[arg(long, value_enum, default_value_t = HeadArg::Fcn)]
    pub head: HeadArg,
    /// deeplabv3: ASPP's three dilation rates (torchvision's 12,24,36 suit its 65-px feature
    /// maps at output stride 8; on 64-px scenes at stride 8, feature maps are 8 px: try
    /// 1,2,3).
    #[arg(long, default_value = "12,24,36", value_parser = rates)]
    pub aspp_rates: [usize; 3],
    /// deeplabv3: channels of ASPP's branches and projection (torchvision: 256).
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub aspp_channels: usize,
    /// Stride of the backbone's output (dilation replaces the later strides): 8, 16 or 32
    /// with torchvision's ResNet stem and with EfficientNet-Lite0, 2, 4 or 8 with the small
    /// stem.
    #[arg(long, default_value_t = 8, value_parser = positive)]
    pub output_stride: usize,
    /// Seed of the order, the augmentation and the head's initialization.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The source task's data, for forgetting (with --source-classes).
    #[arg(long, default_value = "fashion-mnist")]
    pub source_data: String,
    /// The source task's classes: measures forgetting on its test images.
    #[arg(long, value_parser = class_list)]
    pub source_classes: Option<String>,
    /// The source model's Fisher diagonal (`sptune fisher`), for --reg l2-sp-fisher and
    /// gl-sp-fisher (mean-normalized).
    #[arg(long)]
    pub fisher: Option<std::path::PathBuf>,
}

/// `sptune scenes`.
#[derive(Args, Debug)]
pub struct ScenesArgs {
    /// Where the items come from: fashion-mnist or a directory (IDX or class folders).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// The items' classes (`5-9`, `5,6,9`, names): the scenes' classes after `background`.
    #[arg(long, default_value = "5-9", value_parser = class_list)]
    pub classes: String,
    /// The folder to write: OUT/train and OUT/test, each with images/, masks/ and classes.txt
    /// (neither may exist yet).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Training scenes (from the training split's items).
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    pub train: usize,
    /// Test scenes (from the test split's items).
    #[arg(long, default_value_t = 200, value_parser = positive)]
    pub test: usize,
    /// Canvas side in pixels.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub size: usize,
    /// Items per scene, fewest and most: `2-4`, or one number.
    #[arg(long, default_value = "2-4", value_parser = item_range)]
    pub items: (usize, usize),
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `2-4` or `3`.
fn item_range(s: &str) -> Result<(usize, usize), String> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is not N or N-M (whole numbers)"))
    };
    match s.split_once('-') {
        Some((a, b)) => Ok((num(a)?, num(b)?)),
        None => num(s).map(|n| (n, n)),
    }
}

/// `sptune weights`.
#[derive(Args, Debug)]
pub struct WeightsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WeightsCommand,
}

/// `sptune weights list|fetch`.
#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// The known weights and whether they are cached.
    List,
    /// Download a known checkpoint into the cache ($SPTUNE_CACHE, default ~/.cache/sptune),
    /// checking its SHA-256.
    Fetch {
        /// e.g. efficientnet-lite0
        name: String,
    },
}

/// `sptune convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint to convert (.pth, .pt or .safetensors).
    pub input: PathBuf,
    /// The sptune checkpoint to write (.safetensors).
    pub output: PathBuf,
    /// Architecture (needed when the input has no sptune metadata, e.g. any .pth).
    #[arg(long)]
    pub arch: Option<String>,
}

/// `sptune fisher`.
#[derive(Args, Debug)]
pub struct FisherArgs {
    /// The source model.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture, for a checkpoint without sptune metadata.
    #[arg(long)]
    pub arch: Option<String>,
    /// Data (default fashion-mnist).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// The source task's classes (default: the model's own class names).
    #[arg(long, value_parser = class_list)]
    pub classes: Option<String>,
    /// Use the first N training examples in file order (after class selection); 0 = all.
    #[arg(long, default_value_t = 0)]
    pub samples: usize,
    /// The estimator.
    #[arg(long, value_enum, default_value_t = Estimator::Exact)]
    pub estimator: Estimator,
    /// Labels drawn per example for mc.
    #[arg(long, default_value_t = 1)]
    pub mc_samples: usize,
    /// Examples per backward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Seed of the mc draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side ImageFolder images are stored at before the center crop to the model's input;
    /// 0 = automatic (the input side, 8/7 of it from 128 px up: 256 for 224).
    #[arg(long, default_value_t = 0)]
    pub resize: usize,
    /// Output file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
}

/// `sptune demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The study folder (study.sqlite, checkpoints, report.html); run again to resume.
    #[arg(long, default_value = "runs/demo")]
    pub out_dir: PathBuf,
    /// Final runs per scheme (the preset's 3; the paper averages 5).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Search points per scheme (the preset's 3).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Fine-tuning epochs (the preset's 12).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Schemes to compare (default: all seven).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub schemes: Option<Vec<Scheme>>,
    /// Data (default fashion-mnist).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
}

/// `sptune bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Timed steps per variant (after one warm-up step).
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub steps: usize,
    /// Only the plain step (one network in memory: for peak-memory comparisons with PyTorch).
    #[arg(long)]
    pub plain_only: bool,
    /// Batch size.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    /// Image side.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub size: usize,
    /// ResNet base width (64 = ResNet-18 as in torchvision).
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub width: usize,
    /// Architecture (resnet18, ..., efficientnet-lite0); small stem for sizes up to 64 px.
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// BatchNorm statistics: train (batch statistics) or frozen (running statistics, as
    /// `finetune --bn frozen`).
    #[arg(long, value_enum, default_value_t = BnMode::Train)]
    pub bn: sptune::train::BnMode,
    /// Also time the plain step on burn's own ops (`sptune::kernels::BurnOps`), round-robin
    /// with the others: what the own kernels gain, measured in the same run.
    #[arg(long)]
    pub burn_ops: bool,
    /// Time evaluation instead of the train step: N synthetic Fashion-MNIST-sized images
    /// (28 px, one channel) scored as `sptune eval` scores a test set (resized and normalized to
    /// the model's input, batches of the model's evaluation batch, BatchNorm with its running
    /// statistics), --steps times; prints images/s of the whole evaluation and of its forward
    /// passes alone. With --burn-ops, the same on burn's own ops, interleaved.
    #[arg(long, value_parser = positive)]
    pub eval: Option<usize>,
}

/// `sptune bench-fisher`.
#[derive(Args, Debug)]
pub struct BenchFisherArgs {
    /// Examples the Fisher is averaged over.
    #[arg(long, default_value_t = 512, value_parser = positive)]
    pub examples: usize,
    /// Classes of the model's head.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub classes: usize,
    /// Examples per batched backward pass.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub batch_size: usize,
    /// Image side (one channel; three for efficientnet-lite0).
    #[arg(long, default_value_t = 28, value_parser = positive)]
    pub size: usize,
    /// ResNet-18 base width (64 = torchvision's).
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub width: usize,
    /// Architecture: resnet18 (small stem) or efficientnet-lite0 (random weights either way).
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// Also time the batch-1 loop on burn's own ops (`sptune::kernels::BurnOps`), the loop as
    /// it ran before the own kernels.
    #[arg(long)]
    pub burn_loop: bool,
}
