//! The typed configurations of whole runs: what a run directory's `config.toml` holds and what
//! `--config` reads back.
//!
//! Every default lives here or in the section types it is made of ([`DataConfig`],
//! [`TrainConfig::finetune`] / [`TrainConfig::pretrain`], [`FisherScaling`]). A config file may
//! give any subset of the fields: [`FinetuneConfig::from_toml`] lays the file over the
//! command's own defaults (so a `[train]` section without `reg` still means L2-SP for
//! `finetune`), and unknown keys are errors naming the file and the key.
//!
//! ```toml
//! out = "runs/tuned.safetensors"
//! [start]
//! init = "runs/source.safetensors"
//! [data]
//! classes = "5-9"
//! per_class = 20
//! [train]
//! reg = "l2-sp"
//! alpha = 0.1
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::regularizer::{FisherNormalize, FisherScaling};
use crate::task::DataConfig;
use crate::train::TrainConfig;
use crate::util::Choice;
use crate::{Error, Result};

/// The network a pretrain builds.
///
/// | field | default | range |
/// |---|---|---|
/// | `arch` | resnet18 | a registered architecture ([`crate::models::registry::names`]) |
/// | `width` | 64 | ≥ 1 (ResNet base channels) |
/// | `small_stem` | automatic: inputs up to 64 px | |
/// | `hidden` | [256] | MLP hidden sizes, each ≥ 1 |
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Architecture name.
    pub arch: String,
    /// ResNet base width (torchvision: 64).
    pub width: usize,
    /// ResNet small-image stem; `None` = automatic (inputs up to 64 px).
    pub small_stem: Option<bool>,
    /// MLP hidden sizes.
    pub hidden: Vec<usize>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: "resnet18".into(),
            width: 64,
            small_stem: None,
            hidden: vec![256],
        }
    }
}

/// Where a fine-tune starts: the source checkpoint and, for the Fisher schemes, its Fisher.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StartConfig {
    /// The source checkpoint (a file, or a known weights name such as `efficientnet-lite0`).
    pub init: PathBuf,
    /// Architecture of a source file without sptune metadata (a torchvision state dict).
    pub init_arch: Option<String>,
    /// Fisher file of the source model (`sptune fisher`), for l2-sp-fisher / gl-sp-fisher; a
    /// path only (known weights names are not Fisher files).
    pub fisher: Option<PathBuf>,
    /// Fisher scaling: `mean` divides by the mean over the anchored tensors of `S`.
    pub fisher_normalize: FisherNormalize,
    /// Cap on every scaled Fisher weight, applied before the floor.
    pub fisher_max: Option<f64>,
    /// Added to every scaled Fisher weight.
    pub fisher_floor: f64,
}

impl StartConfig {
    /// The Fisher scaling of these settings.
    pub fn scaling(&self) -> FisherScaling {
        FisherScaling {
            normalize: self.fisher_normalize,
            max: self.fisher_max,
            floor: self.fisher_floor,
        }
    }
}

/// A fine-tune: start, data, training; `out` = where the checkpoint (and beside it the run
/// directory) goes, `None` to keep the model in memory only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    /// Output checkpoint.
    pub out: Option<PathBuf>,
    /// Run directory; default `<out without extension>.run/`.
    pub run_dir: Option<PathBuf>,
    /// The starting point.
    pub start: StartConfig,
    /// The target task.
    pub data: DataConfig,
    /// Optimization and regularization.
    pub train: TrainConfig,
    /// Allow `out` to be the `start.init` file itself (replaced atomically once training
    /// ends); refused otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overwrite_init: bool,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            out: None,
            run_dir: None,
            overwrite_init: false,
            start: StartConfig::default(),
            // 0 = the source model's input side (256 for 224 px models)
            data: DataConfig {
                resize: 0,
                ..DataConfig::default()
            },
            train: TrainConfig::finetune(),
        }
    }
}

impl FinetuneConfig {
    /// A fine-tune of `init` on the classes `classes` of the default data set, with the
    /// defaults for everything else.
    pub fn new(init: impl Into<PathBuf>, classes: &str) -> Self {
        let mut c = FinetuneConfig::default();
        c.start.init = init.into();
        c.data.classes = classes.into();
        c
    }

    /// Reads a config file (TOML) laid over the fine-tune defaults.
    pub fn from_toml(path: &Path) -> Result<Self> {
        from_toml_over(path, &FinetuneConfig::default())
    }

    /// Checks ranges and consistency; the error names the option and the value.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if self.start.init.as_os_str().is_empty() {
            return Err(Error::invalid(
                "--init",
                "finetune needs a starting point (a source checkpoint)",
            ));
        }
        let reg = self.train.reg;
        match (&self.start.fisher, reg.needs_fisher()) {
            (None, true) => {
                return Err(Error::invalid(
                    "--reg",
                    format!("{} needs --fisher FILE (see `sptune fisher`)", reg.name()),
                ));
            }
            (Some(_), false) => {
                return Err(Error::invalid(
                    "--fisher",
                    format!(
                        "only l2-sp-fisher and gl-sp-fisher use it, not {}",
                        reg.name()
                    ),
                ));
            }
            _ => {}
        }
        let s = &self.start;
        if !(s.fisher_floor.is_finite() && s.fisher_floor >= 0.0) {
            return Err(Error::invalid(
                "--fisher-floor",
                format!("{} is not a non-negative number", s.fisher_floor),
            ));
        }
        if let Some(m) = s.fisher_max.filter(|m| !(m.is_finite() && *m > 0.0)) {
            return Err(Error::invalid(
                "--fisher-max",
                format!("{m} is not a positive number"),
            ));
        }
        Ok(())
    }
}

/// A pretrain from scratch: model, data, training.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// Output checkpoint.
    pub out: Option<PathBuf>,
    /// Run directory; default `<out without extension>.run/`.
    pub run_dir: Option<PathBuf>,
    /// The network.
    pub model: ModelConfig,
    /// The source task.
    pub data: DataConfig,
    /// Optimization (`reg` none or l2: there is no starting point).
    pub train: TrainConfig,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            out: None,
            run_dir: None,
            model: ModelConfig::default(),
            data: DataConfig::default(),
            train: TrainConfig::pretrain(),
        }
    }
}

impl PretrainConfig {
    /// Reads a config file (TOML) laid over the pretrain defaults.
    pub fn from_toml(path: &Path) -> Result<Self> {
        from_toml_over(path, &PretrainConfig::default())
    }

    /// Checks ranges and consistency; the error names the option and the value.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if self.train.reg.needs_starting_point() {
            return Err(Error::invalid(
                "--reg",
                format!(
                    "{} needs a starting point; use finetune --init",
                    self.train.reg.name()
                ),
            ));
        }
        if let Some(h) = self.model.hidden.iter().find(|h| **h == 0) {
            return Err(Error::invalid(
                "--hidden",
                format!("{h} is not a positive size"),
            ));
        }
        if self.model.width == 0 {
            return Err(Error::invalid("--width", "must be positive"));
        }
        // the stages depend on the architecture and the hidden sizes only
        let spec = crate::models::ModelSpec {
            arch: self.model.arch.clone(),
            classes: vec![],
            input: [1, 1, 1],
            width: self.model.width,
            small_stem: false,
            hidden: self.model.hidden.clone(),
            mean: vec![],
            std: vec![],
        };
        if crate::models::registry::get(&spec.arch).is_err() {
            // an unknown name is reported where the network is built
            return Ok(());
        }
        check_freeze(self.train.freeze, &spec)
    }
}

/// `--freeze K` within the stages of `spec` (what training checks too, here before any work).
pub(crate) fn check_freeze(freeze: Option<usize>, spec: &crate::models::ModelSpec) -> Result<()> {
    match freeze.filter(|k| *k > spec.stages()) {
        Some(k) => Err(Error::invalid(
            "--freeze",
            format!("{k}, but {} has {} stages", spec.arch, spec.stages()),
        )),
        None => Ok(()),
    }
}

/// Serializes a config as the TOML `from_toml` reads back.
pub fn to_toml<T: Serialize>(cfg: &T) -> Result<String> {
    toml::to_string(cfg).map_err(|e| Error::Other(format!("serializing the config: {e}")))
}

/// Reads `path` and lays its tables over `defaults`, key by key (nested tables merged).
/// Reads `path` laid over `defaults` (see [`merge`]).
fn from_toml_over<T: Serialize + DeserializeOwned>(path: &Path, defaults: &T) -> Result<T> {
    let text = crate::util::read_input_text(path)?;
    // the message may quote the file's text back, newlines included: kept to one line
    let err = |e: toml::de::Error| Error::format(path, crate::util::escape_controls(e.message()));
    let file: toml::Table = toml::from_str(&text).map_err(err)?;
    let mut base = match toml::Value::try_from(defaults) {
        Ok(toml::Value::Table(t)) => t,
        _ => {
            return Err(Error::Other(
                "the defaults do not serialize to a table".into(),
            ));
        }
    };
    merge(&mut base, file);
    toml::Value::Table(base).try_into().map_err(err)
}

/// Lays `over` on `base`, key by key (nested tables merged).
pub(crate) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
