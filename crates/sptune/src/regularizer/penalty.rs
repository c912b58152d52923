//! The penalty as a gradient transform, kept apart from the optimizer (as burn keeps weight
//! decay apart from SGD).
//!
//! Training minimizes `task loss + α·Ω(w_S) + β·½‖w_S̄‖²`. [`Penalty::apply`] adds the
//! penalty's gradient to each parameter's task gradient, `g ← ∇L + α∇Ω(w)` on the anchored part
//! of `S` and `g ← ∇L + βw` on `S̄` (PyTorch's weight-decay semantics: before momentum), so no
//! autodiff graph is built for the penalty. The scheme works on each tensor's group view
//! (see [`super::group_view`]). Which tensor is in `S`, `S̄` or anchored is decided by the
//! [`StartingPoint`]; frozen tensors get no gradient and are skipped. The trainer takes the
//! same gradient inside the optimizer's pass on the CPU
//! ([`crate::train::sgd::Sgd::step_penalized`], which asks [`Penalty`] what to add per tensor
//! and each scheme's `grad_at` for the value), and [`Penalty::values`] for the log.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::starting_point::{Part, StartingPoint};
use super::{Anchor, Pull, Scheme, from_group_view, group_tensor, group_view};
use crate::Result;
use crate::kernels::host::Host;
use crate::params::{self, Kind, ParamInfo};
use crate::util::Choice;

/// The penalty's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PenaltyConfig {
    /// The scheme on `S`.
    pub scheme: Scheme,
    /// Its weight α.
    pub alpha: f64,
    /// The weight β of plain L2 on `S̄`.
    pub beta: f64,
    /// Which tensors of `S` are pulled toward `w0`.
    pub anchor: Anchor,
}

/// What the penalty does with one trainable tensor.
#[allow(clippy::large_enum_variant)] // a tensor handle; one per parameter
#[derive(Debug)]
enum Role {
    /// In `S`, pulled toward `w0` (with the Fisher weights of the Fisher schemes).
    Anchored(Pull),
    /// In `S` but left free by `--anchor weights`.
    Free,
    /// In `S̄`: plain L2 with weight β.
    New,
    /// Receives no update.
    Frozen,
}

struct Slot {
    info: ParamInfo,
    role: Role,
}

/// What the penalty adds to one tensor's gradient, for the fused update
/// ([`crate::train::sgd::Sgd::step_penalized`]), with the tensors it reads as slices.
#[allow(clippy::large_enum_variant)] // two tensor handles; one per parameter and step
pub(crate) enum Term {
    /// Nothing: not regularized (α or β is 0, no scheme, or left free).
    Nothing,
    /// `c·w`: plain L2 on `S̄` (`c = β`), or the L2 scheme on `S` (`c = α`).
    Decay(f32),
    /// `α·∇Ω(w)` toward `w0` (with the Fisher weights for the Fisher schemes).
    Pull {
        scheme: Scheme,
        alpha: f32,
        w0: Host,
        fisher: Option<Host>,
    },
}

/// Penalty values of a step that measured them (already multiplied by α and β).
#[derive(Clone, Copy, Debug, Default)]
pub struct Penalties {
    /// α·Ω(w_S).
    pub shared: f64,
    /// β·½‖w_S̄‖².
    pub new: f64,
}

/// The penalty of one fine-tune (or pretrain: without a starting point everything is `S̄`).
pub struct Penalty {
    slots: HashMap<ParamId, Slot>,
    cfg: PenaltyConfig,
    curvature: f64,
}

impl Penalty {
    /// The penalty on `net`'s parameters. `start` is the starting point (`None`: every
    /// parameter is in `S̄`); `frozen(name)` marks the tensors that get no update. The Fisher
    /// schemes need the starting point's Fisher weights.
    pub fn new<M: Module>(
        net: &M,
        start: Option<&StartingPoint>,
        cfg: PenaltyConfig,
        frozen: &dyn Fn(&str) -> bool,
        device: &Device,
    ) -> Result<Self> {
        let inner = device.clone().without_autodiff();
        if cfg.scheme.needs_fisher() && start.and_then(|s| s.fisher()).is_none() {
            return Err(crate::Error::invalid(
                "--reg",
                format!("{} needs Fisher weights (--fisher FILE)", cfg.scheme.name()),
            ));
        }
        let mut slots = HashMap::new();
        // names of the anchored tensors, for the Fisher normalization
        let mut anchored = Vec::new();
        for info in params::table(net) {
            if info.kind == Kind::Buffer {
                continue;
            }
            let part = match start {
                Some(s) => s.part(&info.name, &info.shape, info.kind, cfg.anchor),
                None => Part::New,
            };
            let role = if frozen(&info.name) {
                Role::Frozen
            } else {
                match (part, start.and_then(|s| s.w0(&info.name))) {
                    (Part::Shared { anchored: true }, Some((shape, vals))) => {
                        anchored.push(info.name.clone());
                        Role::Anchored(Pull::new(group_tensor(shape, vals.clone(), &inner)))
                    }
                    (Part::Shared { .. }, _) => Role::Free,
                    _ => Role::New,
                }
            };
            slots.insert(info.id, Slot { info, role });
        }
        let mut fisher_max = 0.0f64;
        if let Some(s) = start.filter(|_| cfg.scheme.needs_fisher()) {
            let scale = s.fisher_scale(&anchored)?;
            for slot in slots.values_mut() {
                if let Role::Anchored(p) = &mut slot.role
                    && let Some(w) = s.fisher_weights(&slot.info.name, &slot.info.shape, scale)?
                {
                    fisher_max = (w.iter().fold(0f32, |m, x| m.max(*x)) as f64).max(fisher_max);
                    p.fisher = Some(group_tensor(&slot.info.shape, w, &inner));
                }
            }
        }
        // largest curvature of the penalties: α·h on the anchored part of S, β on S̄
        let h = match cfg.scheme {
            Scheme::L2 | Scheme::L2Sp => 1.0,
            Scheme::L2SpFisher => fisher_max,
            _ => 0.0, // not quadratic
        };
        let mut curvature = 0.0f64;
        for slot in slots.values() {
            match slot.role {
                Role::Anchored(_) => curvature = curvature.max(cfg.alpha * h),
                Role::New => curvature = curvature.max(cfg.beta),
                _ => {}
            }
        }
        Ok(Penalty {
            slots,
            cfg,
            curvature,
        })
    }

    /// The largest curvature of the quadratic penalties, weights included: `α` for L2 and
    /// L2-SP, `α·max F` for L2-SP-Fisher, `β` on the new part (L1-SP and the group schemes are
    /// not quadratic and count 0). SGD with momentum μ diverges on the penalties alone when
    /// `lr·curvature ≥ 2(1 + μ)`.
    pub fn curvature(&self) -> f64 {
        self.curvature
    }

    /// The trained tensors outside the new part `S̄` (the backbone), by id.
    pub fn backbone(&self) -> std::collections::HashSet<ParamId> {
        self.slots
            .iter()
            .filter(|(_, s)| matches!(s.role, Role::Anchored(_) | Role::Free))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The role of each named trainable tensor: `shared`, `shared-free`, `new` or `frozen`.
    pub fn roles(&self) -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = self
            .slots
            .values()
            .map(|s| {
                let r = match &s.role {
                    Role::Anchored(_) => "shared",
                    Role::Free => "shared-free",
                    Role::New => "new",
                    Role::Frozen => "frozen",
                };
                (s.info.name.clone(), r)
            })
            .collect();
        v.sort();
        v
    }

    /// Whether the tensor `id` is regularized at all (in `S` with a scheme and α ≠ 0, or in
    /// `S̄` with β ≠ 0).
    fn regularized(&self, slot: &Slot) -> bool {
        let cfg = &self.cfg;
        match &slot.role {
            Role::Anchored(_) => cfg.scheme != Scheme::None && cfg.alpha != 0.0,
            Role::New => cfg.beta != 0.0,
            _ => false,
        }
    }

    /// The penalty's gradient (α or β included) for the tensor `id` at `w`, in group view;
    /// `None` when the tensor is not regularized.
    pub(crate) fn grad_for(&self, id: ParamId, w: Tensor<2>) -> Option<Tensor<2>> {
        let slot = self.slots.get(&id).filter(|s| self.regularized(s))?;
        let cfg = &self.cfg;
        Some(match &slot.role {
            Role::Anchored(p) => cfg.scheme.grad(w, p).mul_scalar(cfg.alpha),
            _ => w.mul_scalar(cfg.beta),
        })
    }

    /// What the fused update adds to the tensor `id`: `None` when it needs burn's ops (a
    /// starting point or Fisher weights not held as plain CPU slices).
    pub(crate) fn term(&self, id: ParamId) -> Option<Term> {
        let Some(slot) = self.slots.get(&id).filter(|s| self.regularized(s)) else {
            return Some(Term::Nothing);
        };
        let cfg = &self.cfg;
        match &slot.role {
            Role::Anchored(_) if cfg.scheme == Scheme::L2 => Some(Term::Decay(cfg.alpha as f32)),
            Role::Anchored(p) => Some(Term::Pull {
                scheme: cfg.scheme,
                alpha: cfg.alpha as f32,
                w0: Host::of(p.w0.clone()).ok()?,
                fisher: match &p.fisher {
                    Some(f) => Some(Host::of(f.clone()).ok()?),
                    None => None,
                },
            }),
            _ => Some(Term::Decay(cfg.beta as f32)),
        }
    }

    /// The penalty values at `net`'s current weights (α and β included), without touching any
    /// gradient: what the log shows once per epoch.
    pub fn values<M: Module>(&self, net: &M) -> Penalties {
        let mut grads = GradientsParams::new();
        let mut v = Transform {
            penalty: self,
            grads: &mut grads,
            measure: true,
            shared: Vec::new(),
            new: Vec::new(),
        };
        net.visit(&mut v);
        v.totals()
    }

    /// Adds the penalty's gradient at `net`'s current weights to `grads`. With `measure` the
    /// penalty values are returned too.
    pub fn apply<M: Module>(
        &self,
        net: &M,
        grads: &mut GradientsParams,
        measure: bool,
    ) -> Option<Penalties> {
        let mut v = Transform {
            penalty: self,
            grads,
            measure,
            shared: Vec::new(),
            new: Vec::new(),
        };
        net.visit(&mut v);
        measure.then(|| v.totals())
    }
}

struct Transform<'a> {
    penalty: &'a Penalty,
    grads: &'a mut GradientsParams,
    measure: bool,
    shared: Vec<Tensor<1>>,
    new: Vec<Tensor<1>>,
}

impl Transform<'_> {
    fn totals(&self) -> Penalties {
        let sum = |v: &[Tensor<1>]| -> f64 {
            v.iter()
                .map(|t| t.clone().into_scalar::<f32>() as f64)
                .fold(0.0, |a, b| a + b)
        };
        Penalties {
            shared: sum(&self.shared),
            new: sum(&self.new),
        }
    }
}

impl ModuleVisitor for Transform<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(slot) = self.penalty.slots.get(&param.id) else {
            return;
        };
        if !self.penalty.regularized(slot) {
            return;
        }
        let grad = self.grads.remove::<D>(param.id);
        if grad.is_none() && !self.measure {
            return;
        }
        let cfg = &self.penalty.cfg;
        let transposed = slot.info.transposed;
        let w = group_view(param.val().inner(), transposed);
        let pg = match &slot.role {
            Role::Anchored(p) => {
                let pg = if self.measure {
                    let (v, pg) = cfg.scheme.value_and_grad(w, p);
                    self.shared.push(v.mul_scalar(cfg.alpha));
                    pg
                } else {
                    cfg.scheme.grad(w, p)
                };
                pg.mul_scalar(cfg.alpha)
            }
            Role::New => {
                if self.measure {
                    self.new
                        .push(w.clone().square().sum().mul_scalar(0.5 * cfg.beta));
                }
                w.mul_scalar(cfg.beta)
            }
            _ => unreachable!("checked by regularized"),
        };
        if let Some(grad) = grad {
            let dims = grad.dims();
            let g = group_view(grad, transposed) + pg;
            self.grads
                .register::<D>(param.id, from_group_view(g, dims, transposed));
        }
    }
}
