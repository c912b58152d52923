//! L1-SP: `Ω(w) = ‖w − w0‖₁`, subgradient `sign(w − w0)`, taken as 0 at `w = w0`.

use burn::tensor::Tensor;

/// `∇Ω = sign(w − w0)` (0 at `w = w0`), computed as `clamp(1e30·(w − w0), −1, 1)`: identical
/// to `sign` for `|w − w0| ≥ 1e-30` and a valid subgradient (in [−1, 1]) below, but two fast
/// elementwise passes where burn Flex's `sign` is ~3x slower (see `sptune bench`).
pub fn grad(w: Tensor<2>, w0: Tensor<2>) -> Tensor<2> {
    (w - w0).mul_scalar(1e30).clamp(-1.0, 1.0)
}

/// `(Σ |w − w0|, sign(w − w0))`.
pub fn value_and_grad(w: Tensor<2>, w0: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let d = w - w0;
    (d.clone().abs().sum(), d.sign())
}

/// `∇Ω` at one value, for the fused update ([`crate::train::sgd`]): the same float operations
/// as [`grad`].
#[inline(always)]
pub fn grad_at(w: f32, w0: f32) -> f32 {
    ((w - w0) * 1e30).clamp(-1.0, 1.0)
}
