//! SGD with momentum, PyTorch semantics: `b ← μb + g` (`b ← g` on the first step, dampening
//! 0), `w ← w − lr·b`.
//!
//! burn's own `MomentumConfig` defaults to dampening 0.1, which is why sptune has its own. The
//! gradient `g` arrives with the regularizer's term already added
//! ([`crate::regularizer::Penalty::apply`]), as PyTorch adds weight decay before momentum.
//! Parameters without a gradient (frozen ones, buffers) are left as they are.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::regularizer::{from_group_view, group_view};

/// The optimizer state: one momentum buffer per parameter.
pub struct Sgd {
    momentum: f64,
    buffers: HashMap<ParamId, Tensor<2>>,
    scaled: std::collections::HashSet<ParamId>,
    lr_mult: f64,
}

impl Sgd {
    /// SGD with momentum `momentum` (0.9 in the paper; 0 = plain SGD).
    pub fn new(momentum: f64) -> Self {
        Sgd {
            momentum,
            buffers: HashMap::new(),
            scaled: Default::default(),
            lr_mult: 1.0,
        }
    }

    /// Scales the learning rate of the parameters `ids` by `mult` (the backbone at 0.1x).
    pub fn with_scaled_lr(mut self, ids: std::collections::HashSet<ParamId>, mult: f64) -> Self {
        self.scaled = ids;
        self.lr_mult = mult;
        self
    }

    /// The momentum buffers by parameter name (`names`: id -> checkpoint name), in the
    /// optimizer's layout, for the resume state ([`super::resume`]).
    pub fn export(&self, names: &HashMap<ParamId, String>) -> super::resume::Tensors {
        self.buffers
            .iter()
            .filter_map(|(id, b)| {
                let name = names.get(id)?;
                let vals = b
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32 momentum");
                Some((name.clone(), (b.dims().to_vec(), vals)))
            })
            .collect()
    }

    /// Restores buffers written by [`Sgd::export`] onto `device` (the non-autodiff device);
    /// an unknown name or a wrong size is an error.
    pub fn import(
        &mut self,
        names: &HashMap<ParamId, String>,
        buffers: &super::resume::Tensors,
        device: &Device,
    ) -> crate::Result<()> {
        let ids: HashMap<&str, ParamId> = names.iter().map(|(i, n)| (n.as_str(), *i)).collect();
        for (name, (shape, vals)) in buffers {
            let id = ids.get(name.as_str()).ok_or_else(|| {
                crate::Error::Other(format!(
                    "resume state: momentum of '{name}', a parameter this network lacks"
                ))
            })?;
            if shape.len() != 2 || shape.iter().product::<usize>() != vals.len() {
                return Err(crate::Error::Other(format!(
                    "resume state: momentum of '{name}' has shape {shape:?} and {} values",
                    vals.len()
                )));
            }
            let t = Tensor::<2>::from_data(TensorData::new(vals.clone(), shape.clone()), device);
            self.buffers.insert(*id, t);
        }
        Ok(())
    }

    /// One update of every parameter that has a gradient in `grads`, learning rate `lr`
    /// (`net`: a [`Net`](crate::models::Net) or any other module, a segmentation network).
    pub fn step<M: Module>(&mut self, lr: f64, net: M, grads: GradientsParams) -> M {
        let mut m = Step {
            opt: self,
            grads,
            lr,
        };
        net.map(&mut m)
    }
}

struct Step<'a> {
    opt: &'a mut Sgd,
    grads: GradientsParams,
    lr: f64,
}

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        // The update runs on the group view [g, p] in checkpoint orientation; 2-D parameters
        // are linear weights, which burn stores [in, out], updated as [out, in] (the memory
        // layout, and so the matmul rounding, of sptune's releases before the own kernels).
        let linear = D == 2;
        let w = group_view(tensor.inner(), linear);
        let g = group_view(grad, linear);
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
        let lr = if self.opt.scaled.contains(&id) {
            self.lr * self.opt.lr_mult
        } else {
            self.lr
        };
        let w = from_group_view(w - step.mul_scalar(lr), dims, linear);
        Param::from_mapped_value(id, Tensor::from_inner(w).require_grad(), mapper)
    }
}
