//! The CPU engine's backward pass through a whole network for one example: its rows' logit
//! cotangents, then the layer steps in reverse order, through residual and skip connections.

use super::layers::{Sums, conv_step, linear_step, mask, norm_step, pool_back, spread};
use super::plan::{ConvLayer, NetPlan, NormLayer, ResNetPlan, ResidualBlock};
use super::record::Record;

pub(super) fn backward(
    plan: &NetPlan,
    recs: &[Record],
    i: usize,
    g: Vec<f32>,
    rows: usize,
    sums: &mut Sums,
) {
    match plan {
        NetPlan::Mlp(layers) => {
            let mut g = g;
            for (j, l) in layers.iter().enumerate().rev() {
                let a = recs[l.rec].input(i);
                let mut dx = linear_step(l, a, &g, rows, j > 0, sums);
                if j > 0 {
                    mask(&mut dx, rows, 1, |k| a[k] > 0.0);
                }
                g = dx;
            }
        }
        NetPlan::ResNet(net) => {
            let ResNetPlan {
                conv1,
                bn1,
                pool,
                blocks,
                fc,
            } = net.as_ref();
            let feats = linear_step(fc, recs[fc.rec].input(i), &g, rows, true, sums);
            // global average pooling
            let last = &blocks.last().expect("a ResNet has blocks").main;
            let hw = recs[last.last().expect("convolutions").1.rec].hw;
            let mut g = spread(&feats, hw[0] * hw[1]);
            for b in blocks.iter().rev() {
                g = block_back(b, recs, i, g, rows, sums);
            }
            let y = recs[bn1.rec].output(i);
            if let Some(pl) = pool {
                let relu: Vec<f32> = y.iter().map(|v| v.max(0.0)).collect();
                g = pool_back(pl, &relu, &g, rows);
            }
            let p = y.len() / bn1.mean.len();
            mask(&mut g, rows, p, |k| y[k] > 0.0);
            norm_step(bn1, recs[bn1.rec].input(i), &mut g, rows, sums);
            conv_step(conv1, recs[conv1.rec].input(i), &g, rows, false, sums);
        }
        NetPlan::EfficientNet(net) => {
            let fc = &net.fc;
            let feats = linear_step(fc, recs[fc.rec].input(i), &g, rows, true, sums);
            let (conv, norm) = &net.head;
            let mut g = spread(&feats, recs[norm.rec].hw[0] * recs[norm.rec].hw[1]);
            g = conv_norm_relu6_back(conv, norm, recs, i, g, rows, true, sums);
            for b in net.blocks.iter().rev() {
                let skip = b.skip.then(|| g.clone());
                let (conv, norm) = &b.project;
                norm_step(norm, recs[norm.rec].input(i), &mut g, rows, sums);
                g = conv_step(conv, recs[conv.rec].input(i), &g, rows, true, sums);
                let (conv, norm) = &b.depthwise;
                g = conv_norm_relu6_back(conv, norm, recs, i, g, rows, true, sums);
                if let Some((conv, norm)) = &b.expand {
                    g = conv_norm_relu6_back(conv, norm, recs, i, g, rows, true, sums);
                }
                if let Some(s) = skip {
                    for (a, s) in g.iter_mut().zip(&s) {
                        *a += s;
                    }
                }
            }
            let (conv, norm) = &net.stem;
            conv_norm_relu6_back(conv, norm, recs, i, g, rows, false, sums);
        }
    }
}

/// The backward pass of `relu6(norm(conv(x)))` from the gradient of its output.
#[allow(clippy::too_many_arguments)]
fn conv_norm_relu6_back(
    conv: &ConvLayer,
    norm: &NormLayer,
    recs: &[Record],
    i: usize,
    mut g: Vec<f32>,
    rows: usize,
    need_dx: bool,
    sums: &mut Sums,
) -> Vec<f32> {
    let y = recs[norm.rec].output(i);
    // the training path's ReLU6 (`kernels::relu6`, PyTorch's `hardtanh_backward`) passes the
    // gradient on (0, 6), ends excluded
    mask(&mut g, rows, y.len() / norm.mean.len(), |k| {
        y[k] > 0.0 && y[k] < 6.0
    });
    norm_step(norm, recs[norm.rec].input(i), &mut g, rows, sums);
    conv_step(conv, recs[conv.rec].input(i), &g, rows, need_dx, sums)
}

/// A residual block's backward pass: `g` is the gradient of the block's output.
fn block_back(
    b: &ResidualBlock,
    recs: &[Record],
    i: usize,
    mut g: Vec<f32>,
    rows: usize,
    sums: &mut Sums,
) -> Vec<f32> {
    let (first, _) = &b.main[0];
    let x = recs[first.rec].input(i);
    let (_, last) = b.main.last().expect("convolutions");
    let y = recs[last.rec].output(i);
    let identity = match &b.downsample {
        Some((_, n)) => recs[n.rec].output(i),
        None => x,
    };
    let p = y.len() / last.mean.len();
    mask(&mut g, rows, p, |k| y[k] + identity[k] > 0.0);
    let skip = match &b.downsample {
        Some((c, n)) => {
            let mut h = g.clone();
            norm_step(n, recs[n.rec].input(i), &mut h, rows, sums);
            conv_step(c, x, &h, rows, true, sums)
        }
        None => g.clone(),
    };
    for (j, (c, n)) in b.main.iter().enumerate().rev() {
        norm_step(n, recs[n.rec].input(i), &mut g, rows, sums);
        g = conv_step(c, recs[c.rec].input(i), &g, rows, true, sums);
        if j > 0 {
            let prev = recs[b.main[j - 1].1.rec].output(i);
            let p = prev.len() / b.main[j - 1].1.mean.len();
            mask(&mut g, rows, p, |k| prev[k] > 0.0);
        }
    }
    for (a, s) in g.iter_mut().zip(&skip) {
        *a += s;
    }
    g
}

/// One example's rows with the same label merged (`ω₁ g² + ω₂ g² = (ω₁ + ω₂) g²`) and rows of
/// weight 0 dropped.
pub(super) fn merge_rows(rows: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let mut merged: Vec<(usize, f64)> = Vec::new();
    for &(y, w) in rows {
        match merged.iter_mut().find(|(m, _)| *m == y) {
            Some((_, acc)) => *acc += w,
            None => merged.push((y, w)),
        }
    }
    merged.retain(|&(_, w)| w > 0.0);
    merged
}

/// The logit cotangents of one example's rows, one vector of `classes` values per row:
/// `√ω (e_y − p)` per `(y, ω)`.
pub(super) fn cotangent_rows(p: &[f32], rows: &[(usize, f64)]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|&(y, w)| {
            let s = w.sqrt() as f32;
            p.iter()
                .enumerate()
                .map(|(o, &po)| s * (if o == y { 1.0 } else { 0.0 } - po))
                .collect()
        })
        .collect()
}

/// The `exact` estimator's logit cotangents of one example: one row fewer than the classes,
/// with the same Fisher.
///
/// The exact Fisher sums `J_cᵀ J_c` over the class rows `u_c = √p_c (e_c − p)` (`J` the logits'
/// Jacobian), that is `Jᵀ H J` with `H = Σ_c u_c u_cᵀ = diag(p) − p pᵀ`, and any rows `b_k`
/// with `Σ_k b_k b_kᵀ = H` give the same sum of squared gradients. The `u_c` are dependent
/// (`Σ_c √p_c u_c = p − p·Σ_c p_c = 0`), so with `m` the most likely class
/// `u_m = −Σ_{c≠m} √(p_c/p_m) u_c`, and `H = A (I + a aᵀ/p_m) Aᵀ` with `A` the other rows as
/// columns and `a_c = √p_c`. The square root of `I + a aᵀ/p_m` is `I + γ a aᵀ` with
/// `(1 + γ‖a‖²)² = 1 + ‖a‖²/p_m = 1/p_m` (as `‖a‖² = 1 − p_m`), so
/// `γ = 1/(√p_m (1 + √p_m))` and the `C − 1` rows are
/// `b_k = u_k + γ √p_k (Σ_{c≠m} √p_c u_c) = √p_k [(e_k − p) − √p_m/(1 + √p_m) (e_m − p)]`, `k ≠ m`.
/// One backward row less per example: a tenth of the work with 10 classes, half with 2. Rows of
/// a class with `p_k = 0` are 0 and dropped. In f64, returned as f32.
pub(super) fn exact_rows(p: &[f32]) -> Vec<Vec<f32>> {
    let m = (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0);
    let pm = (p[m] as f64).sqrt();
    let c = pm / (1.0 + pm);
    let d: Vec<f64> = (0..p.len())
        .map(|o| if o == m { 1.0 } else { 0.0 } - p[o] as f64)
        .collect();
    (0..p.len())
        .filter(|&k| k != m && p[k] > 0.0)
        .map(|k| {
            let s = (p[k] as f64).sqrt();
            (0..p.len())
                .map(|o| {
                    let e = if o == k { 1.0 } else { 0.0 } - p[o] as f64;
                    (s * (e - c * d[o])) as f32
                })
                .collect()
        })
        .collect()
}

/// Rows (one vector of `classes` values each) in the engine's layout `[classes][rows]`.
pub(super) fn by_class(rows: &[Vec<f32>]) -> Vec<f32> {
    let (r, classes) = (rows.len(), rows.first().map_or(0, Vec::len));
    let mut g = vec![0f32; classes * r];
    for (k, row) in rows.iter().enumerate() {
        for (o, v) in row.iter().enumerate() {
            g[o * r + k] = *v;
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Σ_k b_k b_kᵀ` against `diag(p) − p pᵀ`, the largest difference (worked in f64).
    fn gap(p: &[f32], rows: &[Vec<f32>]) -> f64 {
        let c = p.len();
        let mut worst = 0f64;
        for i in 0..c {
            for j in 0..c {
                let got: f64 = rows.iter().map(|b| b[i] as f64 * b[j] as f64).sum();
                let want = if i == j { p[i] as f64 } else { 0.0 } - p[i] as f64 * p[j] as f64;
                worst = worst.max((got - want).abs());
            }
        }
        worst
    }

    fn softmax(z: &[f64]) -> Vec<f32> {
        let top = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| (v / s) as f32).collect()
    }

    #[test]
    fn exact_rows_factor_the_log_softmax_curvature() {
        // logits of several spreads and class counts, a tie for the most likely class, a
        // near-certain model, and a class of probability exactly 0
        let cases: Vec<Vec<f32>> = vec![
            softmax(&[0.3, -1.2]),
            softmax(&[2.0, 0.5, -0.7, 1.1, 0.0, -2.5, 3.1, 0.2, -0.4, 1.7]),
            softmax(&[1.0, 1.0, 0.0]),
            softmax(&[12.0, 0.0, -3.0, 1.0]),
            vec![0.5, 0.0, 0.25, 0.25],
            softmax(
                &(0..100)
                    .map(|i| ((i * 37 % 101) as f64 / 20.0).sin() * 4.0)
                    .collect::<Vec<_>>(),
            ),
        ];
        for p in &cases {
            let rows = exact_rows(p);
            let zeros = p.iter().filter(|&&v| v == 0.0).count();
            assert_eq!(rows.len(), p.len() - 1 - zeros, "{p:?}");
            // float32 rows: the products carry about 1e-7 of each entry
            assert!(gap(p, &rows) < 1e-6, "{p:?}: {}", gap(p, &rows));
            // the class rows √p_c (e_c − p) factor the same matrix (the check is not vacuous)
            let class: Vec<(usize, f64)> = (0..p.len()).map(|c| (c, p[c] as f64)).collect();
            assert!(gap(p, &cotangent_rows(p, &class)) < 1e-6);
        }
        // a planted error: the coefficient of the most likely class's row off by its square
        let p = &cases[1];
        let m = 6;
        let pm = p[m] as f64;
        let wrong: Vec<Vec<f32>> = (0..p.len())
            .filter(|&k| k != m)
            .map(|k| {
                let s = (p[k] as f64).sqrt();
                (0..p.len())
                    .map(|o| {
                        let e = if o == k { 1.0 } else { 0.0 } - p[o] as f64;
                        let d = if o == m { 1.0 } else { 0.0 } - p[o] as f64;
                        (s * (e - pm / (1.0 + pm) * d)) as f32
                    })
                    .collect()
            })
            .collect();
        assert!(gap(p, &wrong) > 1e-3, "{}", gap(p, &wrong));
    }
}
