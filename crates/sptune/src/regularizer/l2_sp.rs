//! L2-SP (Li, Grandvalet, Davoine, ICML 2018): `Ω(w) = ½‖w − w0‖²`, `∇Ω = w − w0`.
//!
//! The starting point `w0` (the pretrained weights) is both the initialization and the
//! reference of the penalty.

use burn::tensor::Tensor;

/// `∇Ω = w − w0`.
pub fn grad(w: Tensor<2>, w0: Tensor<2>) -> Tensor<2> {
    w - w0
}

/// `(½ Σ (w − w0)², w − w0)`.
pub fn value_and_grad(w: Tensor<2>, w0: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let d = w - w0;
    (d.clone().square().sum().mul_scalar(0.5), d)
}

/// `∇Ω` at one value, for the fused update ([`crate::train::sgd`]): the same float operations
/// as [`grad`].
#[inline(always)]
pub fn grad_at(w: f32, w0: f32) -> f32 {
    w - w0
}
