//! BatchNorm on the CPU, NCHW, f32, each step one pass over the tensor per channel (burn's
//! generic batch norm swaps the batch and channel dimensions and copies the tensor several
//! times): the batch statistics, the normalization, and its backward pass in training mode
//! (batch statistics) and with the running statistics (eval mode, `--bn frozen`).
//!
//! With `x̂ = (x − μ)/σ`, `σ = √(var + ε)` and `y = γ x̂ + β` per channel over its
//! `n = batch · h · w` values, the gradients are `dβ = Σ dy`, `dγ = Σ dy · x̂`, and
//! `dx = γ/(n σ) · (n dy − dβ − x̂ dγ)` when μ and var are the batch's (biased variance, as
//! burn), `dx = γ/σ · dy` when they are the running statistics (constants).

use rayon::prelude::*;

use super::simd::simd;

/// `[batch, channels, h·w]` of a tensor.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Values per image and channel.
    pub plane: usize,
}

impl Dims {
    fn planes(self, x: &[f32], c: usize) -> impl Iterator<Item = &[f32]> {
        (0..self.batch).map(move |b| &x[(b * self.channels + c) * self.plane..][..self.plane])
    }
}

/// `(Σ a, Σ a·b)` over a slice pair (inlined into its callers' [`simd`] blocks) in 16 lanes of f32 (the compiler vectorizes fixed-size
/// lane arrays), totalled in f64.
#[inline(always)]
fn sums(a: &[f32], b: &[f32]) -> (f64, f64) {
    let (mut sa, mut sab) = ([0f32; 16], [0f32; 16]);
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (mut ta, mut tab) = (0f64, 0f64);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        ta += *x as f64;
        tab += (*x * *y) as f64;
    }
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            sa[i] += x[i];
            sab[i] += x[i] * y[i];
        }
    }
    let total = |v: [f32; 16]| v.iter().map(|&x| x as f64).sum::<f64>();
    (total(sa) + ta, total(sab) + tab)
}

/// Mean and biased variance of each channel (lane sums in f32 per image, totals in f64; the
/// variance as the mean of squares around a first estimate of the mean, which keeps it exact
/// to rounding for data far from 0).
pub fn channel_stats(x: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let n = (d.batch * d.plane) as f64;
    (0..d.channels)
        .into_par_iter()
        .map(|c| {
            simd(
                #[inline(always)]
                || {
                    // plain loops: an iterator's fold would be compiled outside `simd`
                    let mut total = 0f64;
                    for p in d.planes(x, c) {
                        total += sums(p, p).0;
                    }
                    let mean = total / n;
                    let m = mean as f32;
                    let mut centered = vec![0f32; d.plane];
                    let mut ss = 0f64;
                    for p in d.planes(x, c) {
                        for (o, &v) in centered.iter_mut().zip(p) {
                            *o = v - m;
                        }
                        ss += sums(&centered, &centered).1;
                    }
                    (m, (ss / n) as f32)
                },
            )
        })
        .unzip()
}

/// `γ (x − μ)/√(var + ε) + β` per channel. With `centered`, as `(x − μ)·γ/σ + β` (PyTorch's
/// order); without, as `x·γ/σ + (β − μ·γ/σ)`, one operation fewer per value, which training
/// mode uses (the batch's own mean: `x − μ` is of the order of the spread, and the results are
/// those of every earlier release). Running statistics can lie far from the batch, where the
/// second form loses the digits of `x − μ`: [`super::Stats::Running`] takes the first.
pub fn forward(
    x: &[f32],
    d: Dims,
    stats: (&[f32], &[f32]),
    affine: (&[f32], &[f32]),
    eps: f64,
    centered: bool,
) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    normalize(&mut y, Some(x), d, stats, affine, eps, centered);
    y
}

/// [`forward`] in place: what evaluation takes when the input is not kept (no autodiff).
pub fn forward_in_place(
    x: &mut [f32],
    d: Dims,
    stats: (&[f32], &[f32]),
    affine: (&[f32], &[f32]),
    eps: f64,
    centered: bool,
) {
    normalize(x, None, d, stats, affine, eps, centered);
}

/// `dst ← normalized src` plane by plane (`src` absent: `dst` itself).
fn normalize(
    dst: &mut [f32],
    src: Option<&[f32]>,
    d: Dims,
    (mean, var): (&[f32], &[f32]),
    (gamma, beta): (&[f32], &[f32]),
    eps: f64,
    centered: bool,
) {
    dst.par_chunks_mut(d.plane)
        .enumerate()
        .for_each(|(i, dst)| {
            let c = i % d.channels;
            let inv = (1.0 / (var[c] as f64 + eps).sqrt()) as f32;
            let (m, scale) = (mean[c], gamma[c] * inv);
            // centered: `(v − m)·scale + β`; else `v·scale + shift` with `shift = β − scale·m`
            let (sub, shift) = match centered {
                true => (m, beta[c]),
                false => (0.0, beta[c] - scale * m),
            };
            let src = src.map(|x| &x[i * d.plane..(i + 1) * d.plane]);
            simd(
                #[inline(always)]
                || match (src, centered) {
                    (Some(src), true) => {
                        for (o, &v) in dst.iter_mut().zip(src) {
                            *o = (v - sub) * scale + shift;
                        }
                    }
                    (Some(src), false) => {
                        for (o, &v) in dst.iter_mut().zip(src) {
                            *o = v * scale + shift;
                        }
                    }
                    (None, true) => {
                        for o in dst.iter_mut() {
                            *o = (*o - sub) * scale + shift;
                        }
                    }
                    (None, false) => {
                        for o in dst.iter_mut() {
                            *o = *o * scale + shift;
                        }
                    }
                },
            )
        });
}

fn inverse_deviations(var: &[f32], eps: f64) -> Vec<f32> {
    var.iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect()
}

/// `(dγ, dβ)`, one value per channel each.
pub type AffineGrads = (Vec<f32>, Vec<f32>);

/// `(dγ, dβ)` per channel: `dβ = Σ dy`, `dγ = Σ dy·x̂ = (Σ dy·x − μ Σ dy)/σ` (`inv = 1/σ`).
fn affine_grads(x: &[f32], gy: &[f32], d: Dims, mean: &[f32], inv: &[f32]) -> AffineGrads {
    (0..d.channels)
        .into_par_iter()
        .map(|c| {
            let (sg, sgx) = simd(
                #[inline(always)]
                || {
                    let (mut sg, mut sgx) = (0f64, 0f64);
                    for (g, xp) in d.planes(gy, c).zip(d.planes(x, c)) {
                        let (p, q) = sums(g, xp);
                        sg += p;
                        sgx += q;
                    }
                    (sg, sgx)
                },
            );
            let dg = (sgx - mean[c] as f64 * sg) * inv[c] as f64;
            (dg as f32, sg as f32)
        })
        .unzip()
}

/// `(dx, dγ, dβ)` given the output's gradient `gy`, with `mean`, `var` the batch statistics
/// of `x` (training mode: `dx` accounts for their dependence on `x`).
pub fn backward(
    x: &[f32],
    gy: &[f32],
    d: Dims,
    (mean, var): (&[f32], &[f32]),
    gamma: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let inv = inverse_deviations(var, eps);
    let (dgamma, dbeta) = affine_grads(x, gy, d, mean, &inv);
    let n = (d.batch * d.plane) as f32;
    let mut gx = vec![0f32; x.len()];
    gx.par_chunks_mut(d.plane).enumerate().for_each(|(i, dst)| {
        let c = i % d.channels;
        let (m, s) = (mean[c], inv[c]);
        let k = gamma[c] * s / n;
        let (a, b) = (dbeta[c], dgamma[c]);
        let (xp, gp) = (&x[i * d.plane..][..d.plane], &gy[i * d.plane..][..d.plane]);
        simd(
            #[inline(always)]
            || {
                for ((o, &xv), &g) in dst.iter_mut().zip(xp).zip(gp) {
                    *o = k * (n * g - a - (xv - m) * s * b);
                }
            },
        )
    });
    (gx, dgamma, dbeta)
}

/// `(dx, dγ, dβ)` given the output's gradient `gy`, with `mean`, `var` constants (the running
/// statistics: eval mode, `--bn frozen`): `dx = γ/σ · dy`. `dγ` and `dβ` are computed only
/// when `affine` (a frozen layer's are not needed).
pub fn backward_running(
    x: &[f32],
    gy: &[f32],
    d: Dims,
    (mean, var): (&[f32], &[f32]),
    gamma: &[f32],
    eps: f64,
    affine: bool,
) -> (Vec<f32>, Option<AffineGrads>) {
    let inv = inverse_deviations(var, eps);
    let params = affine.then(|| affine_grads(x, gy, d, mean, &inv));
    let mut gx = vec![0f32; x.len()];
    gx.par_chunks_mut(d.plane).enumerate().for_each(|(i, dst)| {
        let c = i % d.channels;
        let k = gamma[c] * inv[c];
        let gp = &gy[i * d.plane..][..d.plane];
        simd(
            #[inline(always)]
            || {
                for (o, &g) in dst.iter_mut().zip(gp) {
                    *o = k * g;
                }
            },
        )
    });
    (gx, params)
}
