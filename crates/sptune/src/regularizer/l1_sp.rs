//! L1-SP: `Ω(w) = ‖w − w0‖₁`, subgradient `sign(w − w0)`, taken as 0 at `w = w0`.

use burn::tensor::Tensor;

/// `(Σ |w − w0|, sign(w − w0))`.
pub fn value_and_grad(w: Tensor<2>, w0: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let d = w - w0;
    (d.clone().abs().sum(), d.sign())
}
