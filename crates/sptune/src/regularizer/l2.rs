//! L2 weight decay, the baseline: `Ω(w) = ½‖w‖²`, `∇Ω = w`.
//!
//! It pulls every weight toward 0, i.e. away from what the source task taught.

use burn::tensor::Tensor;

/// `∇Ω = w`.
pub fn grad(w: Tensor<2>) -> Tensor<2> {
    w
}

/// `(½ Σ w², w)`.
pub fn value_and_grad(w: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    (w.clone().square().sum().mul_scalar(0.5), w)
}

/// `∇Ω` at one value, for the fused update ([`crate::train::sgd`]): the same float operations
/// as [`grad`].
#[inline(always)]
pub fn grad_at(w: f32) -> f32 {
    w
}
