//! Group-Lasso-SP: `Ω(w) = Σ_g √p_g ‖w_g − w0_g‖₂`, one group per output channel.
//!
//! A group is a slice along dim 0 of the checkpoint layout (a conv filter's fan-in, a linear
//! unit's fan-in, or one element of a 1-D tensor); `p_g` is its size, so `s_g = √p_g` balances
//! groups of different sizes. Gradient: `√p_g (w_g − w0_g)/‖w_g − w0_g‖`, with 0 for a group
//! equal to its reference (the subgradient of smallest norm).

use burn::tensor::Tensor;

/// `(Σ_g √p ‖d_g‖, √p d_g/‖d_g‖)` for `d = w − w0` in group view `[g, p]`.
pub fn value_and_grad(w: Tensor<2>, w0: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let s = (w.dims()[1] as f64).sqrt();
    let d = w - w0;
    let norms = d.clone().square().sum_dim(1).sqrt(); // [g, 1]
    let value = norms.clone().sum().mul_scalar(s);
    (value, scaled_directions(d, norms, s))
}

/// `∇Ω = √p d_g/‖d_g‖` (0 for a group at `w0`).
pub fn grad(w: Tensor<2>, w0: Tensor<2>) -> Tensor<2> {
    let s = (w.dims()[1] as f64).sqrt();
    let d = w - w0;
    let norms = d.clone().square().sum_dim(1).sqrt();
    scaled_directions(d, norms, s)
}

/// `s·d_g/‖d_g‖` where the norm is positive, 0 where the group sits exactly at `w0` (also
/// used by GL-SP-Fisher with `F ⊙ d` and the Fisher-weighted norm).
pub(crate) fn scaled_directions(d: Tensor<2>, norms: Tensor<2>, s: f64) -> Tensor<2> {
    let zero = norms.clone().equal_elem(0.0);
    let inv = norms
        .mask_fill(zero.clone(), 1.0)
        .recip()
        .mul_scalar(s)
        .mask_fill(zero, 0.0);
    d * inv
}

/// A group's factor `√p/‖d_g‖` (0 for a group at `w0`) from `Σ d²` over its `p` values, for
/// the fused update ([`crate::train::sgd`]).
pub fn group_factor(squares: f64, p: usize) -> f32 {
    let norm = squares.sqrt() as f32;
    if norm == 0.0 {
        0.0
    } else {
        (1.0 / norm) * (p as f64).sqrt() as f32
    }
}

/// `∇Ω` at one value of a group with factor `k` ([`group_factor`]).
#[inline(always)]
pub fn grad_at(w: f32, w0: f32, k: f32) -> f32 {
    (w - w0) * k
}
