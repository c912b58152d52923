//! Diagonal Fisher information of a source model, on source inputs.
//!
//! `F_jj = 1/m Σ_i Σ_c f_c(x_i; w0) (∂ log f_c(x_i; w0) / ∂w_j)²` (the seed's formula, the
//! "true" Fisher: every class, weighted by the model's own probabilities). Three estimators:
//!
//! | estimator | per example `i` | note |
//! |---|---|---|
//! | `exact` | `Σ_c p_c(x_i) g_{i,c}²` | the formula; `C − 1` backward rows stand for the `C` classes |
//! | `mc` | `1/K Σ_k g_{i,y_k}²`, `y_k ~ p(x_i)` | unbiased for `exact`; K backwards |
//! | `empirical` | `g_{i,y_i}²`, `y_i` the true label | biased ("empirical Fisher"); one backward |
//!
//! where `g_{i,c} = ∇_w log p_c(x_i)`. Squares are always **per example**: never the square of
//! a batch-summed gradient. The model is in eval mode (BatchNorm uses its running statistics).
//!
//! Three [`Engine`]s accumulate `Σ_i ω_i g_{i,y}²` over the same *rows* `(example i, label y,
//! weight ω)`; the batched ones draw them from `batch_rows`, the loop builds its own:
//!
//! - [`CpuEngine`] (`fisher/cpu/`), [`compute`]'s choice on the CPU: one forward pass per
//!   batch, then every row of an example through one hand-written backward pass, a matrix
//!   product per layer;
//! - [`ProbeEngine`] (`fisher/probe.rs`), burn's autodiff with "probe" tensors: one forward and
//!   backward pass per row (or sample) over a whole batch, on any device (the GPU path);
//! - [`Batch1Loop`] ([`batch1`]), one example and one class at a time, for the tests and the
//!   benchmark.
//!
//! `fisher/common.rs` holds what they share (the rows, the `mc` draws, the batches).

pub mod batch1;
mod common;
mod cpu;
mod probe;

pub use common::eval_mode;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::models::checkpoint::{Checkpoint, to_bytes};
use crate::models::{ModelSpec, Net};
use crate::params::{self, Kind};
use crate::util::Choice;
use crate::{Error, Result, util};

/// How the classes of the Fisher's expectation are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// Every class, weighted by the model's probability (the seed's formula).
    #[default]
    Exact,
    /// `K` labels sampled from the model's distribution per example.
    Mc,
    /// The true labels (biased; what many libraries call "Fisher").
    Empirical,
}

impl crate::util::Choice for Estimator {
    const ALL: &'static [Self] = &[Estimator::Exact, Estimator::Mc, Estimator::Empirical];
    fn name(self) -> &'static str {
        match self {
            Estimator::Exact => "exact",
            Estimator::Mc => "mc",
            Estimator::Empirical => "empirical",
        }
    }
}

/// Settings of a Fisher computation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FisherOptions {
    /// The estimator.
    pub estimator: Estimator,
    /// Labels sampled per example (`mc` only, ≥ 1).
    pub mc_samples: usize,
    /// Examples per forward/backward pass.
    pub batch_size: usize,
    /// Seed of the `mc` label draws.
    pub seed: u64,
}

impl Default for FisherOptions {
    fn default() -> Self {
        FisherOptions {
            estimator: Estimator::Exact,
            mc_samples: 1,
            batch_size: 64,
            seed: 0,
        }
    }
}

impl FisherOptions {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::invalid("--batch-size", "must be at least 1"));
        }
        if self.estimator == Estimator::Mc && self.mc_samples == 0 {
            return Err(Error::invalid("--mc-samples", "must be at least 1"));
        }
        Ok(())
    }

    /// Backward passes per batch of the probe path (`exact`: one row fewer than the classes,
    /// see [`common::exact_rows`]).
    pub fn passes(&self, classes: usize) -> usize {
        match self.estimator {
            Estimator::Exact => classes.saturating_sub(1).max(1),
            Estimator::Mc => self.mc_samples,
            Estimator::Empirical => 1,
        }
    }
}

/// A Fisher diagonal: one tensor per model parameter, checkpoint names and layout.
#[derive(Clone, Debug)]
pub struct Fisher {
    /// Name -> (shape, values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// The estimator that produced it.
    pub estimator: Estimator,
    /// Number of examples averaged (`m`).
    pub samples: usize,
    /// Labels drawn per example (`mc`), else 0.
    pub mc_samples: usize,
    /// The file it was read from, if any.
    pub path: Option<PathBuf>,
}

impl Fisher {
    /// Stand-in Fisher weights `f(w0_j)` for every parameter of `w0` (buffers left out), for
    /// benchmarks and tests where only their positions matter, not their values (any positive
    /// weights cost the same). Its estimator is `Exact` over 0 samples: it estimates nothing.
    pub fn stand_in(w0: &Checkpoint, f: impl Fn(f32) -> f32) -> Self {
        Fisher {
            tensors: w0
                .tensors
                .iter()
                .filter(|(n, _)| !params::is_buffer_name(n))
                .map(|(n, (shape, v))| {
                    (
                        n.clone(),
                        (shape.clone(), v.iter().map(|&x| f(x)).collect()),
                    )
                })
                .collect(),
            estimator: Estimator::Exact,
            samples: 0,
            mc_samples: 0,
            path: None,
        }
    }

    /// Builds the tensors from per-parameter sums in group view (keyed by burn id), divided by
    /// `m`. Every trainable parameter of `net` must have a sum.
    pub(crate) fn from_sums(
        net: &Net,
        sums: HashMap<burn::module::ParamId, Vec<f64>>,
        m: usize,
        opts: &FisherOptions,
    ) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for info in params::table(net) {
            if info.kind == Kind::Buffer {
                continue;
            }
            let s = sums.get(&info.id).ok_or_else(|| {
                Error::Other(format!("no per-example gradient for {}", info.name))
            })?;
            if s.len() != info.numel() {
                return Err(Error::Other(format!(
                    "{}: {} Fisher values for {} parameters",
                    info.name,
                    s.len(),
                    info.numel()
                )));
            }
            let vals = s.iter().map(|v| (v / m as f64) as f32).collect();
            tensors.insert(info.name.clone(), (info.shape.clone(), vals));
        }
        Ok(Fisher {
            tensors,
            estimator: opts.estimator,
            samples: m,
            mc_samples: if opts.estimator == Estimator::Mc {
                opts.mc_samples
            } else {
                0
            },
            path: None,
        })
    }

    /// Writes the Fisher as safetensors (temp file, then rename); the estimator, `m`, `K` and
    /// the source model's spec go to `__metadata__`.
    pub fn save(&self, path: &Path, spec: &ModelSpec) -> Result<()> {
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .map(|(n, (s, v))| (n.clone(), s.clone(), v.clone()))
            .collect();
        let mut meta = HashMap::new();
        meta.insert("format".into(), "pt".into());
        meta.insert("content".into(), "sptune-fisher".into());
        meta.insert("estimator".into(), self.estimator.name().into());
        meta.insert("samples".into(), self.samples.to_string());
        meta.insert("mc_samples".into(), self.mc_samples.to_string());
        meta.insert("arch".into(), spec.arch.clone());
        meta.insert("spec".into(), serde_json::to_string(spec).unwrap());
        let bytes = to_bytes(&tensors, &[], meta)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        util::write_atomic(path, &bytes)
    }

    /// Reads a Fisher file, by path only (a known weights name is not resolved); every entry
    /// must be finite and non-negative.
    pub fn read(path: &Path) -> Result<Self> {
        // messages quote tensor names from the file: kept to one line
        Self::read_raw(path).map_err(util::one_line_error)
    }

    fn read_raw(path: &Path) -> Result<Self> {
        let ck = Checkpoint::read_file(path)?;
        for (name, (_, vals)) in &ck.tensors {
            if let Some((j, v)) = vals
                .iter()
                .enumerate()
                .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
            {
                return Err(Error::format(
                    path,
                    format!(
                        "Fisher tensor {name} holds {v} at index {j}; a Fisher diagonal is finite and non-negative"
                    ),
                ));
            }
        }
        let estimator = ck
            .metadata
            .get("estimator")
            .map(|e| Estimator::parse_for("estimator", e))
            .transpose()
            .map_err(|e| Error::format(path, e.to_string()))?
            .unwrap_or_default();
        let num = |k: &str| ck.metadata.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Fisher {
            samples: num("samples"),
            mc_samples: num("mc_samples"),
            tensors: ck.tensors,
            estimator,
            path: Some(path.to_path_buf()),
        })
    }

    fn mismatch(&self, msg: String) -> Error {
        Error::Checkpoint {
            path: self.path.clone().unwrap_or_else(|| "Fisher".into()),
            msg,
        }
    }

    /// Checks that the Fisher has exactly the parameters of the source checkpoint `w0` (same
    /// names and shapes; buffers excluded); the error names the file and the tensor.
    pub fn check_against(&self, w0: &Checkpoint) -> Result<()> {
        for (name, (shape, _)) in &w0.tensors {
            if params::is_buffer_name(name) {
                continue;
            }
            match self.tensors.get(name) {
                None => {
                    return Err(self.mismatch(format!(
                        "no Fisher tensor for parameter {name} of {}",
                        w0.path.display()
                    )));
                }
                Some((s, _)) if s != shape => {
                    return Err(self.mismatch(format!(
                        "Fisher tensor {name} has shape {s:?}, the model's is {shape:?} ({})",
                        w0.path.display()
                    )));
                }
                _ => {}
            }
        }
        if let Some(extra) = self.tensors.keys().find(|n| !w0.tensors.contains_key(*n)) {
            return Err(self.mismatch(format!(
                "Fisher tensor {extra} names no parameter of {}",
                w0.path.display()
            )));
        }
        Ok(())
    }
}

/// A way of computing the Fisher diagonal.
pub trait Engine {
    /// Its name, as `sptune fisher` reports it: `"cpu-engine"`, `"probe"` or `"batch-1"`.
    fn name(&self) -> &'static str;

    /// Whether it computes the Fisher of `net` on `device`.
    fn supports(&self, net: &Net, device: &Device) -> bool;

    /// The Fisher diagonal of `net` on the examples of `ds` (labels index the model's classes).
    /// `progress(k)` is called with the number of examples done.
    fn compute(
        &self,
        net: &Net,
        spec: &ModelSpec,
        ds: &Dataset,
        opts: &FisherOptions,
        device: &Device,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Fisher>;
}

/// The CPU engine (`"cpu-engine"`): one forward pass per batch, then every row of an example
/// through one hand-written backward pass. Every architecture of sptune, on the CPU backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuEngine;

/// burn's autodiff with "probe" tensors (`"probe"`): one forward and backward pass per row
/// (or sample) over whole batches. Any network on any device (the GPU path).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeEngine;

/// The batch-1 loop (`"batch-1"`): one forward and backward pass per example and class, with
/// burn's ordinary parameter gradients. `exact` and `empirical` only; for the tests and the
/// benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct Batch1Loop;

/// The engines [`compute`] chooses from, in order of preference; the last takes every network
/// on every device.
const ENGINES: [&dyn Engine; 2] = [&CpuEngine, &ProbeEngine];

/// The first of [`ENGINES`] that supports `net` on `device`.
fn chosen(net: &Net, device: &Device) -> &'static dyn Engine {
    ENGINES
        .into_iter()
        .find(|e| e.supports(net, device))
        .unwrap_or(&ProbeEngine)
}

/// The Fisher diagonal of `net` on the examples of `ds` (labels index the model's classes) by
/// the first engine that supports the network and the device: [`CpuEngine`] for every sptune
/// architecture on the CPU, otherwise [`ProbeEngine`]. `progress(k)` is called after each
/// batch with the number of examples done.
pub fn compute(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    opts: &FisherOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Fisher> {
    chosen(net, device).compute(net, spec, ds, opts, device, progress)
}

/// The name of the engine [`compute`] takes for `net` on `device`: `"cpu-engine"` or
/// `"probe"`.
pub fn engine(net: &Net, device: &Device) -> &'static str {
    chosen(net, device).name()
}
