//! SGD with momentum (PyTorch semantics) whose gradient transform adds the regularizer.
//!
//! For each parameter: `g ← ∇L + α∇Ω(w)` (shared part `S`) or `g ← ∇L + βw` (new head `S̄`),
//! then `b ← μb + g` (`b ← g` on the first step; dampening 0), `w ← w − lr·b`. This is
//! PyTorch's `SGD(momentum=μ, weight_decay=…)` with the decay replaced by the scheme's
//! gradient (burn's own `MomentumConfig` defaults to dampening 0.1, which is why sptune has its
//! own). Frozen parameters and buffers are never touched. Penalty values are computed only when
//! asked for (once per epoch for the log), so a step costs no extra reduction otherwise.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use crate::fisher::Fisher;
use crate::models::Net;
use crate::models::checkpoint::Checkpoint;
use crate::params::{self, Kind, ParamInfo};
use crate::regularizer::{
    Anchor, FisherNormalize, Reference, Scheme, from_group_view, group_tensor, group_view,
};
use crate::{Error, Result};

/// What the optimizer does with one tensor.
#[allow(clippy::large_enum_variant)] // a tensor handle; one per parameter
#[derive(Debug)]
pub enum Role {
    /// In `S`: regularized by the scheme toward `w0` (group view, with the Fisher weights of
    /// the Fisher schemes), unless `None` because `--anchor weights` leaves this tensor free.
    Shared(Option<Reference>),
    /// In `S̄` (no counterpart in the reference): plain L2 with weight β.
    New,
    /// Receives no update.
    Frozen,
}

struct Slot {
    info: ParamInfo,
    role: Role,
}

/// Penalty values of the last step that computed them (already multiplied by α and β).
#[derive(Clone, Copy, Debug, Default)]
pub struct Penalties {
    /// α·Ω(w_S).
    pub shared: f64,
    /// β·½‖w_S̄‖².
    pub new: f64,
}

/// The optimizer and its regularizer.
pub struct Sgd {
    slots: HashMap<ParamId, Slot>,
    momentum: f64,
    scheme: Scheme,
    alpha: f64,
    beta: f64,
    buffers: HashMap<ParamId, Tensor<2>>,
    curvature: f64,
}

/// Options of [`Sgd::new`].
#[derive(Clone, Debug, Default)]
pub struct SgdOptions {
    /// Momentum μ (0.9 in the paper).
    pub momentum: f64,
    /// Penalty on the shared part.
    pub scheme: Scheme,
    /// Weight α of the scheme.
    pub alpha: f64,
    /// Weight β of the plain L2 on the new head.
    pub beta: f64,
    /// Which tensors of `S` are regularized.
    pub anchor: Anchor,
    /// Fisher weights of the Fisher schemes (checked against the reference by the caller).
    pub fisher: Option<std::sync::Arc<Fisher>>,
    /// Scaling of the Fisher weights.
    pub fisher_normalize: FisherNormalize,
    /// Added to every (scaled) Fisher weight.
    pub fisher_floor: f64,
    /// Upper bound on every (scaled) Fisher weight, applied before the floor.
    pub fisher_max: Option<f64>,
}

impl Sgd {
    /// Builds the optimizer for `net`. `reference` is the starting point `w0` (the source
    /// checkpoint); without it every parameter is in `S̄`. `frozen(name)` says which tensors get
    /// no update. The Fisher schemes need `opts.fisher`; its weights are scaled over the
    /// regularized tensors of `S` (`--fisher-normalize mean`), then the floor is added.
    pub fn new(
        net: &Net,
        reference: Option<&Checkpoint>,
        opts: &SgdOptions,
        frozen: &dyn Fn(&str) -> bool,
        device: &Device,
    ) -> Result<Self> {
        let inner = device.clone().without_autodiff();
        let fisher = if opts.scheme.needs_fisher() {
            let f = opts.fisher.as_deref().ok_or_else(|| {
                Error::invalid(
                    "--reg",
                    format!(
                        "{} needs Fisher weights (--fisher FILE)",
                        opts.scheme.name()
                    ),
                )
            })?;
            Some(f)
        } else {
            None
        };
        let mut slots = HashMap::new();
        // (id, name) of the regularized tensors, for the Fisher normalization
        let mut regularized = Vec::new();
        for info in params::table(net) {
            if info.kind == Kind::Buffer {
                continue;
            }
            let role = if frozen(&info.name) {
                Role::Frozen
            } else {
                match reference.and_then(|r| r.tensors.get(&info.name)) {
                    Some((shape, vals)) if *shape == info.shape => {
                        let keep = opts.anchor == Anchor::All || info.is_kernel();
                        if keep {
                            regularized.push(info.name.clone());
                        }
                        Role::Shared(
                            keep.then(|| Reference::new(group_tensor(shape, vals.clone(), &inner))),
                        )
                    }
                    _ => Role::New,
                }
            };
            slots.insert(info.id, Slot { info, role });
        }
        let mut fisher_max = 0.0f64;
        if let Some(f) = fisher {
            let scale = fisher_scale(f, &regularized, opts.fisher_normalize)?;
            for slot in slots.values_mut() {
                if let Role::Shared(Some(r)) = &mut slot.role {
                    let (shape, vals) = f.tensors.get(&slot.info.name).ok_or_else(|| {
                        Error::invalid(
                            "--fisher",
                            format!("no Fisher tensor for {}", slot.info.name),
                        )
                    })?;
                    if *shape != slot.info.shape {
                        return Err(Error::invalid(
                            "--fisher",
                            format!(
                                "Fisher tensor {} has shape {shape:?}, the model's is {:?}",
                                slot.info.name, slot.info.shape
                            ),
                        ));
                    }
                    let w: Vec<f32> = vals
                        .iter()
                        .map(|v| {
                            let f = *v as f64 * scale;
                            (opts.fisher_max.map_or(f, |m| f.min(m)) + opts.fisher_floor) as f32
                        })
                        .collect();
                    fisher_max = vals_max(&w).max(fisher_max);
                    r.fisher = Some(group_tensor(shape, w, &inner));
                }
            }
        }
        // largest curvature of the penalties: α·h on the regularized part of S, β on S̄
        let h = match opts.scheme {
            Scheme::L2 | Scheme::L2Sp => 1.0,
            Scheme::L2SpFisher => fisher_max,
            _ => 0.0, // not quadratic
        };
        let mut curvature = 0.0f64;
        for slot in slots.values() {
            match slot.role {
                Role::Shared(Some(_)) => curvature = curvature.max(opts.alpha * h),
                Role::New => curvature = curvature.max(opts.beta),
                _ => {}
            }
        }
        Ok(Sgd {
            slots,
            momentum: opts.momentum,
            scheme: opts.scheme,
            alpha: opts.alpha,
            beta: opts.beta,
            buffers: HashMap::new(),
            curvature,
        })
    }

    /// The largest curvature of the quadratic penalties, weights included: `α` for L2 and
    /// L2-SP, `α·max F` for L2-SP-Fisher, `β` on the new part (L1-SP and the group schemes
    /// are not quadratic and count 0). SGD with momentum μ diverges on the penalties alone when
    /// `lr·curvature ≥ 2(1 + μ)`.
    pub fn penalty_curvature(&self) -> f64 {
        self.curvature
    }

    /// The role of each named tensor (for logs and tests).
    pub fn roles(&self) -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = self
            .slots
            .values()
            .map(|s| {
                let r = match &s.role {
                    Role::Shared(Some(_)) => "shared",
                    Role::Shared(None) => "shared-free",
                    Role::New => "new",
                    Role::Frozen => "frozen",
                };
                (s.info.name.clone(), r)
            })
            .collect();
        v.sort();
        v
    }

    /// One update with learning rate `lr`. When `measure` is true the penalty values at the
    /// pre-update weights are returned.
    pub fn step(
        &mut self,
        lr: f64,
        net: Net,
        grads: GradientsParams,
        measure: bool,
    ) -> (Net, Option<Penalties>) {
        let mut m = StepMapper {
            opt: self,
            grads,
            lr,
            measure,
            shared: Vec::new(),
            new: Vec::new(),
        };
        let net = net.map(&mut m);
        let pen = measure.then(|| {
            let sum = |v: &[Tensor<1>]| -> f64 {
                v.iter()
                    .map(|t| t.clone().into_scalar::<f32>() as f64)
                    .fold(0.0, |a, b| a + b)
            };
            Penalties {
                shared: sum(&m.shared),
                new: sum(&m.new),
            }
        });
        (net, pen)
    }
}

fn vals_max(v: &[f32]) -> f64 {
    v.iter().fold(0f32, |m, x| m.max(*x)) as f64
}

/// The factor applied to the Fisher weights: `1 / mean` over the regularized tensors, or 1.
fn fisher_scale(f: &Fisher, regularized: &[String], how: FisherNormalize) -> Result<f64> {
    if how == FisherNormalize::None {
        return Ok(1.0);
    }
    let (mut sum, mut n) = (0.0f64, 0usize);
    for name in regularized {
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

struct StepMapper<'a> {
    opt: &'a mut Sgd,
    grads: GradientsParams,
    lr: f64,
    measure: bool,
    shared: Vec<Tensor<1>>,
    new: Vec<Tensor<1>>,
}

impl ModuleMapper for StepMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(slot) = self.opt.slots.get(&param.id) else {
            return param;
        };
        if matches!(slot.role, Role::Frozen) {
            return param;
        }
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let w = group_view(tensor.inner(), slot.info.transposed);
        let mut g = group_view(grad, slot.info.transposed);
        match &slot.role {
            Role::Shared(Some(r)) if self.opt.scheme != Scheme::None && self.opt.alpha != 0.0 => {
                let pg = if self.measure {
                    let (v, pg) = self.opt.scheme.value_and_grad(w.clone(), r);
                    self.shared.push(v.mul_scalar(self.opt.alpha));
                    pg
                } else {
                    self.opt.scheme.grad(w.clone(), r)
                };
                g = g + pg.mul_scalar(self.opt.alpha);
            }
            Role::New if self.opt.beta != 0.0 => {
                if self.measure {
                    self.new
                        .push(w.clone().square().sum().mul_scalar(0.5 * self.opt.beta));
                }
                g = g + w.clone().mul_scalar(self.opt.beta);
            }
            _ => {}
        }
        let step = if self.opt.momentum != 0.0 {
            let b = match self.opt.buffers.remove(&id) {
                Some(b) => b.mul_scalar(self.opt.momentum) + g,
                None => g,
            };
            self.opt.buffers.insert(id, b.clone());
            b
        } else {
            g
        };
        let w = w - step.mul_scalar(self.lr);
        let w: Tensor<D> = from_group_view(w, dims, slot.info.transposed);
        Param::from_mapped_value(id, Tensor::from_inner(w).require_grad(), mapper)
    }
}
