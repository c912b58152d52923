//! How far fine-tuning moved the weights from the starting point.
//!
//! `S` = parameter tensors present in both `w0` and `w` with equal shapes (buffers excluded),
//! `S̄` = parameters only in `w`. Per tensor of `S`: `‖w − w0‖₂` and its ratio to `‖w0‖₂`;
//! the -SP penalties at α = 1 with the same code the optimizer uses
//! ([`crate::regularizer::Scheme::value_and_grad`]); with a Fisher file also L2-SP-Fisher and
//! GL-SP-Fisher with the raw `F`; for `S̄` the plain `½‖w‖²`.

use std::path::Path;

use burn::tensor::Device;
use serde::Serialize;

use crate::models::checkpoint::Checkpoint;
use crate::params::{self, Kind};
use crate::regularizer::{Anchor, Part, Pull, Scheme, StartingPoint, group_tensor};
use crate::{Error, Result};

/// One tensor of `S`.
#[derive(Clone, Debug, Serialize)]
pub struct TensorDistance {
    /// Checkpoint name.
    pub name: String,
    /// Number of elements.
    pub numel: usize,
    /// `‖w − w0‖₂`.
    pub l2: f64,
    /// `‖w − w0‖₂ / ‖w0‖₂` (0 when `w0` is 0).
    pub rel: f64,
}

/// The -SP penalties at α = 1.
#[derive(Clone, Debug, Serialize)]
pub struct PenaltyValues {
    /// `½ Σ (w − w0)²`.
    pub l2_sp: f64,
    /// `Σ |w − w0|`.
    pub l1_sp: f64,
    /// `Σ_g √p_g ‖w_g − w0_g‖₂`.
    pub gl_sp: f64,
    /// `½ Σ F (w − w0)²` (raw `F`; with `--fisher` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l2_sp_fisher: Option<f64>,
    /// `Σ_g √p_g (Σ_{j∈g} F_j (w_j − w0_j)²)^½` (raw `F`; with `--fisher` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gl_sp_fisher: Option<f64>,
}

/// The new part `S̄`.
#[derive(Clone, Debug, Serialize)]
pub struct NewPart {
    /// Names of the tensors only in `w`.
    pub names: Vec<String>,
    /// `½ Σ ‖w‖²` over them.
    pub l2: f64,
}

/// The whole report (`sptune distance --json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct Distance {
    /// Per tensor of `S`.
    pub tensors: Vec<TensorDistance>,
    /// `‖w_S − w0_S‖₂` over all of `S`.
    pub total_l2: f64,
    /// `total_l2 / ‖w0_S‖₂`.
    pub total_rel: f64,
    /// Penalties at α = 1.
    pub penalty: PenaltyValues,
    /// The new part.
    pub new: NewPart,
}

/// `sptune distance`: reads the starting point `from` and the fine-tuned `to` (paths or known
/// weights names), checks them ([`check_finite`](Checkpoint::check_finite),
/// [`check_comparable`]), attaches the Fisher file of `from` if given, and measures
/// [`distance`].
pub fn distance_between(
    from: &Path,
    to: &Path,
    fisher: Option<&Path>,
    anchor: Anchor,
) -> Result<Distance> {
    let w0 = Checkpoint::read(from)?;
    let w = Checkpoint::read(to)?;
    w0.check_finite()?;
    w.check_finite()?;
    check_comparable(&w0, &w)?;
    let mut start = crate::run::starting_point_of(w0, &w)?;
    if let Some(p) = fisher {
        start = start.with_fisher(crate::run::read_fisher(p)?, Default::default())?;
    }
    Ok(distance(&start, &w, anchor))
}

/// The architecture a checkpoint records (its spec, else the `arch` of known weights).
fn recorded_arch(c: &Checkpoint) -> Option<String> {
    c.spec()
        .ok()
        .map(|s| s.arch)
        .or_else(|| c.metadata.get("arch").cloned())
}

/// Whether `w` can be measured against `w0`: an error naming both files when they record
/// different architectures, or when no parameter tensor of one has the same name and shape in
/// the other (a replaced head aside) — the distance would be 0 over an empty `S`.
pub fn check_comparable(w0: &Checkpoint, w: &Checkpoint) -> Result<()> {
    let both = |msg: String| {
        Error::Other(format!(
            "{} and {}: {msg}",
            w0.path.display(),
            w.path.display()
        ))
    };
    if let (Some(a0), Some(a)) = (recorded_arch(w0), recorded_arch(w))
        && a0 != a
    {
        return Err(both(format!(
            "the architectures differ ({a0} and {a}); nothing to compare"
        )));
    }
    // the head a fine-tune on other classes replaced (as `starting_point_of` excludes it)
    let replaced = match (w0.spec(), w.spec()) {
        (Ok(s0), Ok(s)) if s0.classes != s.classes => s0.head_names(),
        _ => vec![],
    };
    let common: Vec<&String> = w
        .tensors
        .keys()
        .filter(|n| !params::is_buffer_name(n) && w0.tensors.contains_key(*n))
        .collect();
    let same_shape = common
        .iter()
        .any(|n| !replaced.contains(n) && w0.tensors[*n].0 == w.tensors[*n].0);
    let only_head = !common.is_empty() && common.iter().all(|n| replaced.contains(n));
    if same_shape || only_head {
        return Ok(());
    }
    Err(both(if common.is_empty() {
        "no parameter tensor in common; the architectures differ".into()
    } else {
        format!(
            "no parameter tensor with the same shape in both (e.g. {}: {:?} and {:?}); \
             the architectures differ",
            common[0], w0.tensors[common[0]].0, w.tensors[common[0]].0
        )
    }))
}

/// Distance from the starting point to `w`. With [`Anchor::Weights`] the penalties cover
/// kernels only (per-tensor distances are listed for all of `S`). The starting point's Fisher
/// weights, if attached, add the Fisher penalties (raw `F`).
pub fn distance(start: &StartingPoint, w: &Checkpoint, anchor: Anchor) -> Distance {
    let device = Device::flex();
    let fisher = start.fisher();
    let mut tensors = Vec::new();
    let (mut sq, mut sq0) = (0.0f64, 0.0f64);
    let mut pen = PenaltyValues {
        l2_sp: 0.0,
        l1_sp: 0.0,
        gl_sp: 0.0,
        l2_sp_fisher: fisher.map(|_| 0.0),
        gl_sp_fisher: fisher.map(|_| 0.0),
    };
    let mut new = NewPart {
        names: vec![],
        l2: 0.0,
    };
    for (name, (shape, vals)) in &w.tensors {
        let kind = if params::is_buffer_name(name) {
            Kind::Buffer
        } else {
            Kind::Param
        };
        match (start.part(name, shape, kind, anchor), start.w0(name)) {
            (Part::Buffer, _) => continue,
            (Part::Shared { anchored }, Some((s0, v0))) => {
                let d2: f64 = vals
                    .iter()
                    .zip(v0)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum();
                let n0: f64 = v0.iter().map(|b| (*b as f64).powi(2)).sum();
                sq += d2;
                sq0 += n0;
                tensors.push(TensorDistance {
                    name: name.clone(),
                    numel: vals.len(),
                    l2: d2.sqrt(),
                    rel: if n0 > 0.0 { (d2 / n0).sqrt() } else { 0.0 },
                });
                if anchored {
                    let a = group_tensor(shape, vals.clone(), &device);
                    let mut r = Pull::new(group_tensor(s0, v0.clone(), &device));
                    let val = |s: Scheme, r: &Pull| {
                        s.value_and_grad(a.clone(), r).0.into_scalar::<f32>() as f64
                    };
                    pen.l2_sp += val(Scheme::L2Sp, &r);
                    pen.l1_sp += val(Scheme::L1Sp, &r);
                    pen.gl_sp += val(Scheme::GlSp, &r);
                    if let Some((fs, fv)) = fisher.and_then(|f| f.tensors.get(name)) {
                        r.fisher = Some(group_tensor(fs, fv.clone(), &device));
                        *pen.l2_sp_fisher.get_or_insert(0.0) += val(Scheme::L2SpFisher, &r);
                        *pen.gl_sp_fisher.get_or_insert(0.0) += val(Scheme::GlSpFisher, &r);
                    }
                }
            }
            _ => {
                new.names.push(name.clone());
                new.l2 += 0.5 * vals.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
            }
        }
    }
    Distance {
        tensors,
        total_l2: sq.sqrt(),
        total_rel: if sq0 > 0.0 { (sq / sq0).sqrt() } else { 0.0 },
        penalty: pen,
        new,
    }
}
