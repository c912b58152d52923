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
