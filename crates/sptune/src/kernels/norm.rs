//! BatchNorm in training mode on the CPU, NCHW, f32: batch statistics, the normalization and
//! its backward pass, each one pass over the tensor per channel (burn's generic batch norm
//! swaps the batch and channel dimensions and copies the tensor several times).
//!
//! With `x̂ = (x − μ)/σ`, `σ = √(var + ε)` (biased batch variance, as burn) and `y = γ x̂ + β`
//! per channel over its `n = batch · h · w` values, the gradients are `dβ = Σ dy`,
//! `dγ = Σ dy · x̂` and `dx = γ/(n σ) · (n dy − dβ − x̂ dγ)`.

use rayon::prelude::*;

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

/// Mean and biased variance of each channel (sums in f64).
pub fn channel_stats(x: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let n = (d.batch * d.plane) as f64;
    (0..d.channels)
        .into_par_iter()
        .map(|c| {
            let mean = d
                .planes(x, c)
                .map(|p| p.iter().map(|&v| v as f64).sum::<f64>())
                .sum::<f64>()
                / n;
            let var = d
                .planes(x, c)
                .map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum::<f64>()
                / n;
            (mean as f32, var as f32)
        })
        .unzip()
}

/// `γ (x − μ)/√(var + ε) + β` per channel.
pub fn forward(
    x: &[f32],
    d: Dims,
    (mean, var): (&[f32], &[f32]),
    (gamma, beta): (&[f32], &[f32]),
    eps: f64,
) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(d.plane).enumerate().for_each(|(i, dst)| {
        let c = i % d.channels;
        let inv = (1.0 / (var[c] as f64 + eps).sqrt()) as f32;
        let (scale, shift) = (gamma[c] * inv, beta[c] - gamma[c] * inv * mean[c]);
        for (o, &v) in dst.iter_mut().zip(&x[i * d.plane..(i + 1) * d.plane]) {
            *o = v * scale + shift;
        }
    });
    y
}

/// `(dx, dγ, dβ)` given the output's gradient `gy`.
pub fn backward(
    x: &[f32],
    gy: &[f32],
    d: Dims,
    (mean, var): (&[f32], &[f32]),
    gamma: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let inv: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + eps).sqrt()).collect();
    let (dgamma, dbeta): (Vec<f64>, Vec<f64>) = (0..d.channels)
        .into_par_iter()
        .map(|c| {
            let (m, s) = (mean[c] as f64, inv[c]);
            d.planes(x, c)
                .zip(d.planes(gy, c))
                .fold((0f64, 0f64), |(dg, db), (xp, gp)| {
                    let (mut a, mut b) = (0f64, 0f64);
                    for (&xv, &g) in xp.iter().zip(gp) {
                        a += g as f64 * (xv as f64 - m) * s;
                        b += g as f64;
                    }
                    (dg + a, db + b)
                })
        })
        .unzip();
    let n = (d.batch * d.plane) as f64;
    let mut gx = vec![0f32; x.len()];
    gx.par_chunks_mut(d.plane).enumerate().for_each(|(i, dst)| {
        let c = i % d.channels;
        let (m, s) = (mean[c] as f64, inv[c]);
        let k = gamma[c] as f64 * s / n;
        let (xp, gp) = (&x[i * d.plane..][..d.plane], &gy[i * d.plane..][..d.plane]);
        for ((o, &xv), &g) in dst.iter_mut().zip(xp).zip(gp) {
            let xhat = (xv as f64 - m) * s;
            *o = (k * (n * g as f64 - dbeta[c] - xhat * dgamma[c])) as f32;
        }
    });
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    (gx, f(dgamma), f(dbeta))
}
