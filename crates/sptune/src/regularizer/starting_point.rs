//! The starting point `w0` of fine-tuning: the source weights, which tensors of a network they
//! cover, and the Fisher weights of the Fisher schemes.
//!
//! One place decides, for every tensor, which part it belongs to ([`StartingPoint::part`]):
//!
//! - `S`, shared: a parameter present in `w0` with the same shape, unless it is the source
//!   head that fine-tuning replaced (new classes). With `--anchor weights` only convolution
//!   and linear kernels of `S` are pulled toward `w0` ("anchored"); the others are free.
//! - `S̄`, new: every other parameter (the new head); plain L2 with weight β.
//! - buffers (BatchNorm running statistics) belong to neither and are never regularized.
//!
//! The optimizer's penalty ([`super::penalty`]) and `sptune distance`
//! ([`crate::eval::distance`]) both ask this type, so the split is written once.
//!
//! Fisher weights come from a Fisher file ([`crate::fisher::Fisher::read`], by path only),
//! checked against the source checkpoint when attached, and are scaled per
//! [`FisherScaling`]: divided by their mean over the anchored tensors of `S` (`normalize =
//! mean`, so α means what it means for L2-SP), capped at `max`, then `floor` added.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Anchor, FisherNormalize};
use crate::fisher::Fisher;
use crate::models::checkpoint::Checkpoint;
use crate::params::{self, Kind};
use crate::{Error, Result};

/// Which part of the network a tensor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// In `S`; `anchored` says whether the scheme pulls it toward `w0` (`--anchor`).
    Shared {
        /// Regularized toward `w0`.
        anchored: bool,
    },
    /// In `S̄` (no counterpart in `w0`, or the replaced head): plain L2 with weight β.
    New,
    /// A buffer (BatchNorm running statistics): never regularized.
    Buffer,
}

/// How Fisher weights are scaled before use.
///
/// | field | default | range |
/// |---|---|---|
/// | `normalize` | mean | none, mean |
/// | `max` | none | > 0 |
/// | `floor` | 0 | ≥ 0 |
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct FisherScaling {
    /// `mean` divides `F` by its mean over the anchored tensors of `S`; `none` keeps it raw.
    pub normalize: FisherNormalize,
    /// Cap on every scaled weight, applied before the floor.
    pub max: Option<f64>,
    /// Added to every (scaled, capped) weight.
    pub floor: f64,
}

impl FisherScaling {
    /// The scaled weight of a raw Fisher value `f` given the normalization factor `scale`.
    pub fn apply(&self, f: f32, scale: f64) -> f32 {
        let f = f as f64 * scale;
        (self.max.map_or(f, |m| f.min(m)) + self.floor) as f32
    }
}

/// The source weights `w0`, the names excluded from `S`, and optional Fisher weights.
#[derive(Clone, Debug)]
pub struct StartingPoint {
    source: Checkpoint,
    excluded: BTreeSet<String>,
    fisher: Option<(Fisher, FisherScaling)>,
}

impl StartingPoint {
    /// The starting point of a fine-tune from `source`; `replaced_head` (the load report's
    /// list) names the source head replaced for new classes: it is not part of `S` even where
    /// its shape matches.
    pub fn new(source: Checkpoint, replaced_head: &[String]) -> Self {
        StartingPoint {
            source,
            excluded: replaced_head.iter().cloned().collect(),
            fisher: None,
        }
    }

    /// The current weights of `net` as the starting point, the `head` tensors excluded from
    /// `S` (for benchmarks and tests that fine-tune from an initialization).
    pub fn of_network(net: &crate::models::Net, head: &[String]) -> Self {
        let tensors = params::values(net)
            .into_iter()
            .map(|(info, vals)| (info.name, (info.shape, vals)))
            .collect();
        let source = Checkpoint {
            path: "the network's weights".into(),
            tensors,
            metadata: Default::default(),
        };
        StartingPoint::new(source, head)
    }

    /// Attaches the Fisher weights of the Fisher schemes. The file must describe exactly the
    /// source model (names and shapes); the error names the file and the tensor.
    pub fn with_fisher(mut self, fisher: Fisher, scaling: FisherScaling) -> Result<Self> {
        fisher.check_against(&self.source)?;
        self.fisher = Some((fisher, scaling));
        Ok(self)
    }

    /// The source checkpoint.
    pub fn source(&self) -> &Checkpoint {
        &self.source
    }

    /// The Fisher weights, if attached.
    pub fn fisher(&self) -> Option<&Fisher> {
        self.fisher.as_ref().map(|(f, _)| f)
    }

    /// `w0` of a tensor of `S` (checkpoint layout), `None` outside `S`.
    pub fn w0(&self, name: &str) -> Option<&(Vec<usize>, Vec<f32>)> {
        (!self.excluded.contains(name))
            .then(|| self.source.tensors.get(name))
            .flatten()
    }

    /// The part a tensor of the fine-tuned network belongs to, by checkpoint name, shape
    /// (checkpoint layout) and kind.
    pub fn part(&self, name: &str, shape: &[usize], kind: Kind, anchor: Anchor) -> Part {
        if kind == Kind::Buffer {
            return Part::Buffer;
        }
        match self.w0(name) {
            Some((s, _)) if s == shape => Part::Shared {
                anchored: anchor == Anchor::All || params::is_kernel(name, shape),
            },
            _ => Part::New,
        }
    }

    /// The factor applied to the raw Fisher weights: `1 / mean` over the tensors named in
    /// `anchored` (the anchored, trainable part of `S`), or 1 with `normalize = none`.
    pub fn fisher_scale(&self, anchored: &[String]) -> Result<f64> {
        let Some((f, scaling)) = &self.fisher else {
            return Ok(1.0);
        };
        if scaling.normalize == FisherNormalize::None {
            return Ok(1.0);
        }
        let (mut sum, mut n) = (0.0f64, 0usize);
        for name in anchored {
            if let Some((_, v)) = f.tensors.get(name) {
                sum += v.iter().map(|x| *x as f64).sum::<f64>();
                n += v.len();
            }
        }
        let mean = sum / n.max(1) as f64;
        if !(mean.is_finite() && mean > 0.0) {
            return Err(Error::invalid(
                "--fisher",
                format!(
                    "the Fisher weights of the regularized tensors have mean {mean}; \
                     --fisher-normalize mean needs a positive mean"
                ),
            ));
        }
        Ok(1.0 / mean)
    }

    /// The scaled Fisher weights of tensor `name` (checkpoint layout), given the factor from
    /// [`StartingPoint::fisher_scale`]; `None` without Fisher weights.
    pub fn fisher_weights(
        &self,
        name: &str,
        shape: &[usize],
        scale: f64,
    ) -> Result<Option<Vec<f32>>> {
        let Some((f, scaling)) = &self.fisher else {
            return Ok(None);
        };
        let (s, vals) = f
            .tensors
            .get(name)
            .ok_or_else(|| Error::invalid("--fisher", format!("no Fisher tensor for {name}")))?;
        if s != shape {
            return Err(Error::invalid(
                "--fisher",
                format!("Fisher tensor {name} has shape {s:?}, the model's is {shape:?}"),
            ));
        }
        Ok(Some(
            vals.iter().map(|v| scaling.apply(*v, scale)).collect(),
        ))
    }
}
