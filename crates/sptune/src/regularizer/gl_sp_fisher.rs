//! GL-SP-Fisher: `Ω(w) = Σ_g √p_g (Σ_{j∈g} F_j (w_j − w0_j)²)^½`, groups as in
//! [`super::gl_sp`] (one per output channel, `p_g` its size).
//!
//! Gradient: `√p_g F_j (w_j − w0_j) / (Σ_{j∈g} F_j (w_j − w0_j)²)^½`, with 0 for a group whose
//! Fisher-weighted norm is 0 (the subgradient of smallest norm).

use burn::tensor::Tensor;

/// `(Σ_g √p n_g, √p F d_g / n_g)` with `n_g = (Σ F d²)^½`, in group view `[g, p]`.
pub fn value_and_grad(w: Tensor<2>, w0: Tensor<2>, f: Tensor<2>) -> (Tensor<1>, Tensor<2>) {
    let s = (w.dims()[1] as f64).sqrt();
    let d = w - w0;
    let fd = d.clone() * f;
    let norms = (fd.clone() * d).sum_dim(1).sqrt(); // [g, 1]
    let value = norms.clone().sum().mul_scalar(s);
    (value, super::gl_sp::scaled_directions(fd, norms, s))
}

/// `∇Ω` alone.
pub fn grad(w: Tensor<2>, w0: Tensor<2>, f: Tensor<2>) -> Tensor<2> {
    value_and_grad(w, w0, f).1
}

/// `∇Ω` at one value of a group with factor `k` ([`super::gl_sp::group_factor`] of
/// `Σ F d²`), for the fused update ([`crate::train::sgd`]).
#[inline(always)]
pub fn grad_at(w: f32, w0: f32, f: f32, k: f32) -> f32 {
    ((w - w0) * f) * k
}
