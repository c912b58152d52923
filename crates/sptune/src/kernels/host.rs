//! A tensor's values on the CPU (Flex) device as a slice, read or written in place, for
//! code that works on whole parameter tensors outside any autodiff graph (the fused SGD update
//! in [`crate::train::sgd`]). Only contiguous f32 tensors that own their whole buffer qualify;
//! anything else stays with burn's ops.

use burn::backend::flex::FlexTensor;
use burn::backend::{BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind};
use burn::tensor::{DType, Tensor};

/// The values of a 2-D tensor on the CPU, row-major.
#[derive(Clone, Debug)]
pub struct Host {
    t: FlexTensor,
}

impl Host {
    /// `t`'s values when `t` is an f32 tensor on the CPU (Flex) device without autodiff,
    /// contiguous and the only view of its buffer's extent, and no [`super::BurnOps`] is held
    /// on this thread; otherwise `t` back.
    #[allow(clippy::result_large_err)] // the tensor back by value, as burn passes tensors
    pub fn of(t: Tensor<2>) -> Result<Host, Tensor<2>> {
        if t.dtype() != DType::F32 || t.device().is_autodiff() || super::burn_ops_held() {
            return Err(t);
        }
        let d = t.into_dispatch();
        match d.kind {
            DispatchTensorKind::Flex(BackendTensor::Float(ft))
                if matches!(d.autodiff, DispatchAutodiffContext::Disabled)
                    && ft.layout().contiguous_offsets()
                        == Some((0, ft.layout().num_elements()))
                    && ft.as_slice::<f32>().map(|s| s.len())
                        == Some(ft.layout().num_elements()) =>
            {
                Ok(Host { t: ft })
            }
            kind => Err(Tensor::from_dispatch(DispatchTensor {
                kind,
                autodiff: d.autodiff,
            })),
        }
    }

    /// Rows (dim 0).
    pub fn rows(&self) -> usize {
        self.t.layout().shape()[0]
    }

    /// The values.
    pub fn values(&self) -> &[f32] {
        self.t.as_slice::<f32>().expect("checked by Host::of")
    }

    /// The values to write: in place when this is the buffer's only owner, else a copy first.
    pub fn values_mut(&mut self) -> &mut [f32] {
        let n = self.t.layout().num_elements();
        &mut self.t.storage_mut::<f32>()[..n]
    }

    /// Back to a tensor (same shape).
    pub fn into_tensor(self) -> Tensor<2> {
        Tensor::from_dispatch(DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(self.t)),
            autodiff: DispatchAutodiffContext::Disabled,
        })
    }
}
