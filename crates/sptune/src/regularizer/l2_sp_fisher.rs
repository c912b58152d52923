//! L2-SP-Fisher: `Ω(w) = ½ Σ_j F_j (w_j − w0_j)²`, `∇Ω = F ⊙ (w − w0)`.
//!
//! `F` is the diagonal Fisher information of the source model on source inputs
//! ([`crate::fisher`]): parameters that matter to the source task are held close to `w0`,
//! the others are left nearly free (the idea of EWC, applied to fine-tuning).

use burn::tensor::Tensor;

/// `∇Ω = F ⊙ (w − w0)`.
pub fn grad(w: Tensor<2>, w0: Tensor<2>, f: Tensor<2>) -> Tensor<2> {
    (w - w0) * f
}

/// `(½ Σ F (w − w0)², F ⊙ (w − w0))`.
pub fn value_and_grad(w: Tensor<2>, w0: Tensor<2>, f: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let d = w - w0;
    let fd = d.clone() * f;
    ((fd.clone() * d).sum().mul_scalar(0.5), fd)
}

/// `∇Ω` at one value, for the fused update ([`crate::train::sgd`]): the same float operations
/// as [`grad`].
#[inline(always)]
pub fn grad_at(w: f32, w0: f32, f: f32) -> f32 {
    (w - w0) * f
}
