//! A study's configuration (`sptune study --config study.toml`), its defaults and the
//! built-in presets.
//!
//! ```toml
//! name = "my-study"
//! schemes = ["l2", "l2-sp", "l2-sp-fisher"]
//! seeds = 5
//! [source]
//! init = "runs/source.safetensors"     # or a known weights name; or a [source.pretrain] table
//! [target]
//! classes = "5-9"
//! per_class = 20
//! [train]
//! epochs = 20
//! batch_size = 32
//! [search]
//! method = "random"                    # or "grid"
//! trials = 8                           # per scheme
//! lr = [0.02]
//! [search.alpha]
//! l2-sp = [0.001, 10.0]                # log-uniform range per scheme (defaults for the rest)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::regularizer::Scheme;
use crate::run::PretrainConfig;
use crate::task::DataConfig;
use crate::train::{BnMode, TrainConfig};
use crate::util::Choice;
use crate::{Error, Result};

/// Where the source model comes from: a checkpoint (`init`, a file or a known weights name) or
/// a pretrain run (`pretrain`), done once per study.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// A source checkpoint or known weights name.
    pub init: Option<PathBuf>,
    /// Architecture of an `init` file without sptune metadata.
    pub init_arch: Option<String>,
    /// Pretrain the source with this configuration instead (its `out` is ignored: the study
    /// keeps it in its own folder).
    pub pretrain: Option<PretrainConfig>,
    /// Source test images used to measure forgetting (first N, file order); 0 = all.
    pub test_limit: usize,
    /// Source training images the Fisher is taken on (first N); 0 = all.
    pub fisher_samples: usize,
    /// Cap on the mean-normalized Fisher weights.
    pub fisher_max: Option<f64>,
    /// The source task's data (`fashion-mnist` or a directory) when it is not the target's:
    /// forgetting and the source validation images are taken from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The source task's classes in that data (default: the source model's class names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<String>,
    /// Source validation images every search trial is measured on (source accuracy with the
    /// source head put back, as forgetting is): held out from the images that pretrained the
    /// source and from the source test images the finals report on
    /// ([`super::source_val`]). 0 = none (a target-only search).
    #[serde(skip_serializing_if = "is_default_val_images")]
    pub val_images: usize,
    /// Sources pretrained with different training seeds (`[source.pretrain] train.seed`, +1,
    /// +2, ...; the same images), each fine-tuned with every final seed: intervals and paired
    /// differences are then over (source, seed) pairs, and the report says how much of the
    /// variance lies between sources. The search runs on the first source. Needs
    /// `[source.pretrain]`; at most [`MAX_SOURCE_SEEDS`].
    #[serde(skip_serializing_if = "is_one_source")]
    pub seeds: usize,
}

/// The most sources a study pretrains (`[source] seeds`).
pub const MAX_SOURCE_SEEDS: usize = 16;

fn is_one_source(n: &usize) -> bool {
    *n == 1
}

/// Source validation images measured per search trial unless `[source] val_images` says.
pub const DEFAULT_SOURCE_VAL_IMAGES: usize = 500;

fn is_default_val_images(n: &usize) -> bool {
    *n == DEFAULT_SOURCE_VAL_IMAGES
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            init: None,
            init_arch: None,
            pretrain: None,
            test_limit: 0,
            fisher_samples: 0,
            fisher_max: None,
            data: None,
            classes: None,
            val_images: DEFAULT_SOURCE_VAL_IMAGES,
            seeds: 1,
        }
    }
}

/// How hyperparameters are searched.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `trials` points drawn log-uniformly from the α and β ranges (lr and the backbone
    /// multiplier drawn from their lists).
    #[default]
    Random,
    /// Every combination of `grid_points` log-spaced α values (β the range's low end), the lr
    /// list and the multiplier list.
    Grid,
}

/// What the search chooses on (`[search] objective`, `--objective`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The best target validation accuracy (forgetting is measured, not weighed).
    #[default]
    Target,
    /// The best target validation accuracy among points whose source-validation forgetting
    /// is at most `max_forgetting` points; when none meets it, the point that forgets least.
    Budget,
    /// The best target validation accuracy (percent) − `tradeoff_lambda` × forgetting
    /// (points).
    Tradeoff,
}

impl Choice for Objective {
    const ALL: &'static [Self] = &[Objective::Target, Objective::Budget, Objective::Tradeoff];
    fn name(self) -> &'static str {
        match self {
            Objective::Target => "target",
            Objective::Budget => "budget",
            Objective::Tradeoff => "tradeoff",
        }
    }
}

/// The search space and budget.
///
/// | field | default |
/// |---|---|
/// | `method` | random |
/// | `trials` | 6 per scheme |
/// | `grid_points` | 4 |
/// | `alpha` | per scheme: l2 [1e-4, 0.1], l2-sp and l2-sp-fisher [1e-3, 10], l1-sp, gl-sp and gl-sp-fisher [1e-5, 1e-2] |
/// | `beta` | [0.01, 0.01] |
/// | `lr` | [the train section's lr] |
/// | `backbone_lr_mult` | [1] |
/// | `val_fraction` | 0.25 |
/// | `halving` | true, η = 3 |
/// | `budget_minutes` | none |
/// | `objective` | target (`budget`, `tradeoff`: see [`Objective`]) |
/// | `max_forgetting` | 3 points (for `budget`) |
/// | `tradeoff_lambda` | 1 (for `tradeoff`) |
/// | `bn` | [the train section's bn] |
/// | `freeze` | [the train section's freeze] |
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Random or grid.
    pub method: Method,
    /// Random trials per scheme.
    pub trials: usize,
    /// α values per scheme in a grid.
    pub grid_points: usize,
    /// α range `[low, high]` per scheme name (log scale); schemes not listed use the defaults.
    pub alpha: BTreeMap<String, [f64; 2]>,
    /// β range `[low, high]` (log scale; equal ends fix β).
    pub beta: [f64; 2],
    /// Learning rates to choose from (empty: the train section's).
    pub lr: Vec<f64>,
    /// Backbone learning-rate multipliers to choose from.
    pub backbone_lr_mult: Vec<f64>,
    /// Fraction of the target training images held out to choose on.
    pub val_fraction: f64,
    /// Successive halving: stop a trial at an epoch milestone when its validation accuracy is
    /// below the best 1/η of the trials of its scheme that reached the milestone before it.
    pub halving: bool,
    /// η of successive halving (≥ 2).
    pub eta: usize,
    /// Stop planning new search trials after this many minutes (the trials already planned
    /// run).
    pub budget_minutes: Option<f64>,
    /// Keep each search trial's models on disk: its last and its best-validation epoch's
    /// (`search/search_SCHEME_NNN[.best].safetensors`). Written to the resolved config only
    /// when off, so studies started before this key existed resume unchanged.
    #[serde(skip_serializing_if = "is_true")]
    pub keep_checkpoints: bool,
    /// What the search chooses on.
    #[serde(skip_serializing_if = "is_target")]
    pub objective: Objective,
    /// The forgetting budget of `objective = "budget"`, in points of source validation
    /// accuracy.
    #[serde(skip_serializing_if = "is_default_max_forgetting")]
    pub max_forgetting: f64,
    /// λ of `objective = "tradeoff"` (target points given up per point of forgetting saved).
    #[serde(skip_serializing_if = "is_one")]
    pub tradeoff_lambda: f64,
    /// BatchNorm modes to choose from (empty: the train section's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bn: Vec<BnMode>,
    /// Frozen first stages to choose from (empty: the train section's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<usize>,
}

fn is_target(o: &Objective) -> bool {
    *o == Objective::Target
}

fn is_default_max_forgetting(v: &f64) -> bool {
    *v == 3.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            method: Method::Random,
            trials: 6,
            grid_points: 4,
            alpha: BTreeMap::new(),
            beta: [0.01, 0.01],
            lr: vec![],
            backbone_lr_mult: vec![1.0],
            val_fraction: 0.25,
            halving: true,
            eta: 3,
            budget_minutes: None,
            keep_checkpoints: true,
            objective: Objective::Target,
            max_forgetting: 3.0,
            tradeoff_lambda: 1.0,
            bn: vec![],
            freeze: vec![],
        }
    }
}

impl SearchConfig {
    /// The α range of `scheme`: the config's, else the default.
    pub fn alpha_range(&self, scheme: Scheme) -> [f64; 2] {
        if let Some(r) = self.alpha.get(scheme.name()) {
            return *r;
        }
        match scheme {
            Scheme::None => [0.0, 0.0],
            Scheme::L2 => [1e-4, 0.1],
            Scheme::L2Sp | Scheme::L2SpFisher => [1e-3, 10.0],
            Scheme::L1Sp | Scheme::GlSp | Scheme::GlSpFisher => [1e-5, 1e-2],
        }
    }
}

/// A whole study.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StudyConfig {
    /// Name (the report's title).
    pub name: String,
    /// The source model.
    pub source: SourceConfig,
    /// The target task (`val_fraction` is ignored: the search holds out its own).
    pub target: DataConfig,
    /// Schemes compared, in the report's order.
    pub schemes: Vec<Scheme>,
    /// Final runs per scheme (seeds 1..=N; the search uses seed 0).
    pub seeds: usize,
    /// Training settings shared by every fine-tune (reg, alpha, beta, lr and seed are set per
    /// trial).
    pub train: TrainConfig,
    /// The search.
    pub search: SearchConfig,
    /// Freeze sweep: for these schemes, final runs with K = 0 ..= stages frozen.
    pub freeze_sweep: Vec<Scheme>,
    /// Final runs only for the scheme of best validation accuracy (`sptune auto`), not for
    /// every scheme.
    pub only_best: bool,
    /// What the final runs measure besides accuracy and forgetting.
    #[serde(rename = "final", skip_serializing_if = "FinalConfig::is_default")]
    pub finals: FinalConfig,
}

/// `[final]`: extra measurements of every final run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FinalConfig {
    /// Weight-space interpolation toward the source ([`crate::interpolate`]): each final is
    /// evaluated at these `a` (0: the source, 1: the final), BatchNorm recalibrated on its
    /// training images; the report draws the curves on the trade-off plot.
    pub interpolate: Vec<f64>,
}

impl FinalConfig {
    fn is_default(&self) -> bool {
        self.interpolate.is_empty()
    }
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            name: "study".into(),
            source: SourceConfig::default(),
            target: DataConfig {
                resize: 0,
                ..DataConfig::default()
            },
            schemes: Scheme::ALL.to_vec(),
            seeds: 5,
            train: TrainConfig::finetune(),
            search: SearchConfig::default(),
            freeze_sweep: vec![],
            only_best: false,
            finals: FinalConfig::default(),
        }
    }
}

impl StudyConfig {
    /// Reads a study file laid over the defaults; errors name the file, and for TOML errors
    /// the key and line.
    pub fn from_toml(path: &Path) -> Result<Self> {
        let text = crate::util::read_input_text(path)?;
        Self::from_toml_text(&text, path)
    }

    /// Parses study TOML `text` that came from `origin` (named in errors).
    pub fn from_toml_text(text: &str, origin: &Path) -> Result<Self> {
        let path = origin;
        // parsed once as written, for errors with their line, then laid over the defaults
        let cfg = toml::from_str::<StudyConfig>(text)
            .and_then(|_| Self::over_defaults(text))
            .map_err(|e| {
                let at = e
                    .span()
                    .map(|s| {
                        let start = s.start.min(text.len());
                        let line = text[..start].matches('\n').count() + 1;
                        // the key written on that line, if it is a `key = value` line
                        let row = text.lines().nth(line - 1).unwrap_or("");
                        match row.split_once('=') {
                            Some((k, _)) if !row.trim_start().starts_with('[') => {
                                format!(" (line {line}, key {})", k.trim())
                            }
                            _ => format!(" (line {line})"),
                        }
                    })
                    .unwrap_or_default();
                // the message and the key may quote the file's text, newlines included
                let msg = format!("{}{at}", e.message());
                Error::format(path, crate::util::escape_controls(&msg))
            })?;
        cfg.validate()
            .map_err(|e| Error::format(path, crate::util::escape_controls(&e.to_string())))?;
        Ok(cfg)
    }

    /// Parses `text` laid over the defaults, key by key: a partial `[train]` keeps the
    /// fine-tuning defaults for the rest, a partial `[source.pretrain.train]` the pretraining
    /// ones.
    fn over_defaults(text: &str) -> std::result::Result<Self, toml::de::Error> {
        let mut file: toml::Table = toml::from_str(text)?;
        let table = |v: &Self| match toml::Value::try_from(v) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
        if let Some(toml::Value::Table(source)) = file.get_mut("source")
            && let Some(toml::Value::Table(pre)) = source.remove("pretrain")
        {
            let mut base = match toml::Value::try_from(PretrainConfig::default()) {
                Ok(toml::Value::Table(t)) => t,
                _ => toml::Table::new(),
            };
            crate::run::config::merge(&mut base, pre);
            source.insert("pretrain".into(), toml::Value::Table(base));
        }
        let mut base = table(&StudyConfig::default());
        crate::run::config::merge(&mut base, file);
        toml::Value::Table(base).try_into()
    }

    /// The names [`StudyConfig::preset`] knows.
    pub const PRESETS: &'static [&'static str] = &[
        "fashion-mnist",
        "fashion-mnist-keep",
        "fashion-mnist-quick",
        "efficientnet-lite0",
    ];

    /// A built-in preset: `fashion-mnist` (a ResNet-18 of width 16 pretrained on Fashion-MNIST
    /// 0-4, target 5-9 with 20 images per class, all seven schemes), `fashion-mnist-keep` (the
    /// same choosing on a forgetting budget of 3 points, BatchNorm mode and freezing searched),
    /// `fashion-mnist-quick`
    /// (the demo's smaller version: fewer trials, seeds and epochs) or `efficientnet-lite0`
    /// (ImageNet weights -> Fashion-MNIST, 10 images per class; L2, L2-SP, L1-SP, GL-SP).
    pub fn preset(name: &str) -> Result<Self> {
        let mut pre = PretrainConfig::default();
        pre.model.width = 16;
        pre.model.small_stem = Some(true);
        pre.data.classes = "0-4".into();
        pre.data.per_class = Some(2000);
        pre.train.epochs = 2;
        pre.train.lr = 0.05;
        let mut c = StudyConfig {
            name: name.into(),
            source: SourceConfig {
                pretrain: Some(pre),
                test_limit: 2000,
                fisher_samples: 1000,
                fisher_max: Some(50.0),
                ..SourceConfig::default()
            },
            target: DataConfig {
                classes: "5-9".into(),
                per_class: Some(20),
                test_limit: Some(2000),
                resize: 0,
                ..DataConfig::default()
            },
            ..StudyConfig::default()
        };
        c.train.epochs = 20;
        c.train.batch_size = 32;
        c.train.lr = 0.02;
        c.search.lr = vec![0.02];
        match name {
            "fashion-mnist" => {}
            "fashion-mnist-keep" => {
                // the fashion-mnist study choosing what keeps the source: at most 3 points of
                // source-validation forgetting, BatchNorm mode and frozen stages searched too
                c.search.objective = Objective::Budget;
                c.search.max_forgetting = 3.0;
                c.search.bn = vec![BnMode::Train, BnMode::Frozen];
                c.search.freeze = vec![0, 1, 2];
                // two pretrained sources: how much forgetting moves with the source itself
                c.source.seeds = 2;
            }
            "efficientnet-lite0" => {
                // ImageNet weights -> Fashion-MNIST's 10 classes, 10 images each (upsampled to
                // 224 px, replicated to RGB); no Fisher schemes and no forgetting (the source
                // task's data, ImageNet, is not at hand)
                c.source = SourceConfig {
                    init: Some("efficientnet-lite0".into()),
                    ..SourceConfig::default()
                };
                c.target.classes = "0-9".into();
                c.target.per_class = Some(10);
                c.target.test_limit = Some(500);
                c.schemes = vec![Scheme::L2, Scheme::L2Sp, Scheme::L1Sp, Scheme::GlSp];
                c.train.epochs = 6;
                c.train.batch_size = 16;
                c.train.lr = 0.01;
                // lr 0.01 collapses to chance on some seeds (in PyTorch too): the search
                // chooses between it and a gentler one, and a final at chance is flagged
                c.search.lr = vec![0.003, 0.01];
                c.search.trials = 4;
                c.search.halving = false;
            }
            "fashion-mnist-quick" => {
                c.seeds = 3;
                c.search.trials = 3;
                c.train.epochs = 12;
                if let Some(p) = c.source.pretrain.as_mut() {
                    p.data.per_class = Some(1000);
                }
                c.source.test_limit = 1000;
                c.target.test_limit = Some(1000);
                c.source.fisher_samples = 500;
            }
            other => {
                return Err(Error::invalid(
                    "--preset",
                    format!(
                        "unknown preset {other:?}; known: {}",
                        Self::PRESETS.join(", ")
                    ),
                ));
            }
        }
        Ok(c)
    }

    /// Checks the study: schemes, seeds, ranges; the error names the key.
    /// Every count is checked against [`super::limits`] first.
    pub fn validate(&self) -> Result<()> {
        self.check_limits()?;
        if self.schemes.is_empty() {
            return Err(Error::invalid("schemes", "no scheme to compare"));
        }
        if self.seeds == 0 {
            return Err(Error::invalid("seeds", "must be at least 1"));
        }
        if self.source.seeds == 0 || self.source.seeds > MAX_SOURCE_SEEDS {
            return Err(Error::invalid(
                "source.seeds",
                format!(
                    "{} is out of range 1..={MAX_SOURCE_SEEDS}",
                    self.source.seeds
                ),
            ));
        }
        if self.source.seeds > 1 && self.source.pretrain.is_none() {
            return Err(Error::invalid(
                "source.seeds",
                "several sources need [source.pretrain] (a given checkpoint is one source)",
            ));
        }
        match (&self.source.init, &self.source.pretrain) {
            (None, None) => {
                return Err(Error::invalid(
                    "source",
                    "give source.init (a checkpoint) or a [source.pretrain] table",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "source",
                    "give either source.init or [source.pretrain], not both",
                ));
            }
            _ => {}
        }
        let s = &self.search;
        for (name, r) in &s.alpha {
            Scheme::parse_for("search.alpha", name)?;
            check_range(&format!("search.alpha.{name}"), *r)?;
        }
        check_range("search.beta", s.beta)?;
        if s.method == Method::Random && s.trials == 0 {
            return Err(Error::invalid("search.trials", "must be at least 1"));
        }
        if s.method == Method::Grid && s.grid_points == 0 {
            return Err(Error::invalid("search.grid_points", "must be at least 1"));
        }
        if s.halving && s.eta < 2 {
            return Err(Error::invalid(
                "search.eta",
                format!("{} is below 2", s.eta),
            ));
        }
        if !(s.val_fraction > 0.0 && s.val_fraction < 1.0) {
            return Err(Error::invalid(
                "search.val_fraction",
                format!("{} is outside (0, 1)", s.val_fraction),
            ));
        }
        for lr in s.lr.iter().chain(&s.backbone_lr_mult) {
            if !(lr.is_finite() && *lr > 0.0) {
                return Err(Error::invalid(
                    "search.lr / search.backbone_lr_mult",
                    format!("{lr} is not a positive number"),
                ));
            }
        }
        if s.backbone_lr_mult.is_empty() {
            return Err(Error::invalid("search.backbone_lr_mult", "empty list"));
        }
        if !(s.max_forgetting.is_finite() && s.max_forgetting >= 0.0) {
            return Err(Error::invalid(
                "search.max_forgetting",
                format!("{} is not a number of points >= 0", s.max_forgetting),
            ));
        }
        if !(s.tradeoff_lambda.is_finite() && s.tradeoff_lambda >= 0.0) {
            return Err(Error::invalid(
                "search.tradeoff_lambda",
                format!("{} is not a number >= 0", s.tradeoff_lambda),
            ));
        }
        if self.source.val_images > MAX_SOURCE_VAL_IMAGES {
            return Err(Error::invalid(
                "source.val_images",
                format!(
                    "{} is above the limit of {MAX_SOURCE_VAL_IMAGES}",
                    self.source.val_images
                ),
            ));
        }
        if self.finals.interpolate.len() > 101
            || self
                .finals
                .interpolate
                .iter()
                .any(|a| !(a.is_finite() && (0.0..=1.0).contains(a)))
        {
            return Err(Error::invalid(
                "final.interpolate",
                "at most 101 weights, each in [0, 1]",
            ));
        }
        if s.bn.contains(&BnMode::Auto) {
            return Err(Error::invalid(
                "search.bn",
                "\"auto\" is not a mode to search: list train, frozen or recalibrate",
            ));
        }
        // the train section's errors name its keys (`train.epochs`), not the flags
        self.train.validate().map_err(|e| match e {
            Error::Invalid { what, msg } => Error::invalid(
                format!("train.{}", what.trim_start_matches("--").replace('-', "_")),
                msg,
            ),
            e => e,
        })
    }

    /// Checks every count against its limit ([`super::limits`]).
    fn check_limits(&self) -> Result<()> {
        use super::limits::*;
        let cfg = self;
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
        let n = cfg.planned_runs();
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

    /// The most runs this study plans, counted without building the plan (saturating): per
    /// scheme its search points, its finals (sources x seeds), its freeze sweep (counted as
    /// [`super::limits::SWEEP_DEPTHS`] depths), and the reference finals.
    pub fn planned_runs(&self) -> u64 {
        let cfg = self;
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
                super::limits::SWEEP_DEPTHS.saturating_mul(cfg.seeds as u64)
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

    /// Learning rates searched.
    pub fn lrs(&self) -> Vec<f64> {
        if self.search.lr.is_empty() {
            vec![self.train.lr]
        } else {
            self.search.lr.clone()
        }
    }
}

/// The most source validation images a study measures per trial.
pub const MAX_SOURCE_VAL_IMAGES: usize = 100_000;

fn check_range(what: &str, [lo, hi]: [f64; 2]) -> Result<()> {
    if !(lo.is_finite() && hi.is_finite() && lo >= 0.0) {
        return Err(Error::invalid(
            what,
            format!("[{lo}, {hi}] is not a non-negative range"),
        ));
    }
    if lo > hi {
        return Err(Error::invalid(what, format!("low {lo} is above high {hi}")));
    }
    if lo == 0.0 && hi > 0.0 {
        return Err(Error::invalid(
            what,
            format!("[{lo}, {hi}]: a log range needs a positive low end (or [0, 0])"),
        ));
    }
    Ok(())
}
