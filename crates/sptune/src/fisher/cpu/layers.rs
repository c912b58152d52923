//! The per-layer backward steps of the CPU engine on one example, for all its rows at once:
//! each adds the squares of its per-row parameter gradients to the sums and returns the input
//! gradient. Gradients are laid out `[channel][row][position]`.

use super::BLOCK;
use super::plan::{ConvLayer, LinearLayer, NormLayer};
use crate::kernels::depthwise_rows;
use crate::kernels::simd::simd;
use crate::kernels::window::{Window, col2im, gemm_into, im2col};

/// Per-thread Fisher sums, one vector per slot.
pub(super) type Sums = Vec<Vec<f32>>;

/// A convolution: adds `Σ_r (G_r Uᵀ)²` (and the bias's `Σ_r (Σ_pos G_r)²`) to the sums and
/// returns the input gradient `[cin][rows][h·w]` when `need_dx`.
pub(super) fn conv_step(
    l: &ConvLayer,
    x: &[f32],
    g: &[f32],
    rows: usize,
    need_dx: bool,
    sums: &mut Sums,
) -> Vec<f32> {
    let ([h, w], [ho, wo]) = (l.win.in_hw, l.win.out_hw);
    let (hw, po) = (h * w, ho * wo);
    let kk = l.win.taps_len();
    // group j: output channels j·og.., input channels j·cg.., weight rows of kg values
    let (cg, og) = (l.cin / l.groups, l.cout / l.groups);
    let kg = cg * kk;
    let pointwise = l.groups == 1
        && l.win.kernel == [1, 1]
        && l.win.stride == [1, 1]
        && l.win.pad == [(0, 0), (0, 0)]
        && l.win.in_hw == l.win.out_hw;
    if cg == 1 && og == 1 {
        return depthwise_step(l, x, g, rows, need_dx, sums);
    }
    let unfolded;
    let u: &[f32] = if pointwise {
        x
    } else {
        unfolded = im2col(&l.win, l.cin, x);
        &unfolded
    };
    // per-row weight gradients G Uᵀ, a block of output channels at a time
    let per = (BLOCK / (rows * kg).max(1)).clamp(1, og);
    let mut m = vec![0f32; per * rows * kg];
    let acc = &mut sums[l.w_slot];
    for j in 0..l.groups {
        let uj = &u[j * kg * po..(j + 1) * kg * po];
        for o0 in (j * og..(j + 1) * og).step_by(per) {
            let on = per.min((j + 1) * og - o0);
            let dst = &mut m[..on * rows * kg];
            let lhs = &g[o0 * rows * po..(o0 + on) * rows * po];
            gemm_into(
                dst,
                [kg, 1],
                lhs,
                [po, 1],
                uj,
                [1, po],
                [on * rows, po, kg],
                false,
                false,
            );
            for oo in 0..on {
                let a = &mut acc[(o0 + oo) * kg..(o0 + oo + 1) * kg];
                for r in 0..rows {
                    let v = &dst[(oo * rows + r) * kg..(oo * rows + r + 1) * kg];
                    for (a, v) in a.iter_mut().zip(v) {
                        *a += v * v;
                    }
                }
            }
        }
    }
    bias_sums(l, g, rows, po, sums);
    if !need_dx {
        return Vec::new();
    }
    // input gradient: Wᵀ G, folded back onto the input
    let mut dx = vec![0f32; l.cin * rows * hw];
    if pointwise {
        let n = rows * po;
        gemm_into(
            &mut dx,
            [n, 1],
            &l.w,
            [1, kg],
            g,
            [n, 1],
            [kg, l.cout, n],
            false,
            false,
        );
    } else {
        let mut cols = vec![0f32; kg * po];
        for r in 0..rows {
            for j in 0..l.groups {
                let wj = &l.w[j * og * kg..(j + 1) * og * kg]; // Wⱼᵀ[k][o] = Wⱼ[o][k]
                let gj = &g[(j * og * rows + r) * po..];
                gemm_into(
                    &mut cols,
                    [po, 1],
                    wj,
                    [1, kg],
                    gj,
                    [rows * po, 1],
                    [kg, og, po],
                    false,
                    false,
                );
                let dst = &mut dx[(j * cg * rows + r) * hw..];
                col2im(&l.win, cg, &cols, dst, rows * hw);
            }
        }
    }
    dx
}

/// A convolution's bias: adds `Σ_r (Σ_pos G_r)²`.
fn bias_sums(l: &ConvLayer, g: &[f32], rows: usize, po: usize, sums: &mut Sums) {
    if let Some(b) = l.b_slot {
        for o in 0..l.cout {
            for r in 0..rows {
                let s: f32 = g[(o * rows + r) * po..(o * rows + r + 1) * po].iter().sum();
                sums[b][o] += s * s;
            }
        }
    }
}

/// A depthwise convolution (one input channel per group): the rows' weight gradients and
/// input gradients through [`crate::kernels::depthwise_rows`].
fn depthwise_step(
    l: &ConvLayer,
    x: &[f32],
    g: &[f32],
    rows: usize,
    need_dx: bool,
    sums: &mut Sums,
) -> Vec<f32> {
    let po = l.win.out_len();
    let kk = l.win.taps_len();
    let (gw, gx) = depthwise_rows::per_row_grads(&l.win, l.cin, rows, x, &l.w, g, need_dx);
    let acc = &mut sums[l.w_slot];
    for (c, a) in acc.chunks_mut(kk).enumerate().take(l.cin) {
        for v in gw[c * rows * kk..(c + 1) * rows * kk].chunks(kk) {
            for (a, v) in a.iter_mut().zip(v) {
                *a += v * v;
            }
        }
    }
    bias_sums(l, g, rows, po, sums);
    gx
}

/// An eval-mode BatchNorm: adds `γ`'s `Σ_r (Σ_pos g x̂)²` and `β`'s `Σ_r (Σ_pos g)²`, then
/// scales `g` in place to the input gradient.
pub(super) fn norm_step(l: &NormLayer, x: &[f32], g: &mut [f32], rows: usize, sums: &mut Sums) {
    simd(
        #[inline(always)]
        || norm_rows(l, x, g, rows, sums),
    )
}

#[inline(always)]
fn norm_rows(l: &NormLayer, x: &[f32], g: &mut [f32], rows: usize, sums: &mut Sums) {
    let c = l.mean.len();
    let p = x.len() / c;
    let mut xhat = vec![0f32; p];
    for ch in 0..c {
        for (d, v) in xhat.iter_mut().zip(&x[ch * p..(ch + 1) * p]) {
            *d = (v - l.mean[ch]) * l.inv_std[ch];
        }
        for r in 0..rows {
            let gr = &mut g[(ch * rows + r) * p..(ch * rows + r + 1) * p];
            // 16 independent lanes, so the sums vectorize (one running float was a chain of
            // dependent additions: 10 % of EfficientNet-Lite0's Fisher)
            let (mut ag, mut ab) = ([0f32; 16], [0f32; 16]);
            let (mut cg, mut cx) = (gr.chunks_exact(16), xhat.chunks_exact(16));
            for (gv, xv) in (&mut cg).zip(&mut cx) {
                for j in 0..16 {
                    ag[j] += gv[j] * xv[j];
                    ab[j] += gv[j];
                }
            }
            let (mut sg, mut sb) = (ag.iter().sum::<f32>(), ab.iter().sum::<f32>());
            for (gv, xv) in cg.remainder().iter().zip(cx.remainder()) {
                sg += gv * xv;
                sb += gv;
            }
            sums[l.g_slot][ch] += sg * sg;
            sums[l.b_slot][ch] += sb * sb;
            for gv in gr.iter_mut() {
                *gv *= l.scale[ch];
            }
        }
    }
}

/// ReLU's backward pass: keeps `g` where `on(channel, position)` holds.
pub(super) fn mask(g: &mut [f32], rows: usize, p: usize, on: impl Fn(usize) -> bool) {
    // the predicate once per position (not once per row), then a select per row that
    // vectorizes
    let keep: Vec<bool> = (0..g.len() / rows).map(on).collect();
    simd(
        #[inline(always)]
        || {
            for (k, chunk) in g.chunks_mut(p).enumerate() {
                let base = (k / rows) * p;
                for (v, &on) in chunk.iter_mut().zip(&keep[base..base + p]) {
                    *v = if on { *v } else { 0.0 };
                }
            }
        },
    )
}

/// A linear layer: adds `Σ_r g_ro² a_k²` (and the bias's `Σ_r g_ro²`); returns the input
/// gradient `[in][rows]` when `need_dx`.
pub(super) fn linear_step(
    l: &LinearLayer,
    a: &[f32],
    g: &[f32],
    rows: usize,
    need_dx: bool,
    sums: &mut Sums,
) -> Vec<f32> {
    let a2: Vec<f32> = a.iter().map(|v| v * v).collect();
    for o in 0..l.fout {
        let s: f32 = g[o * rows..(o + 1) * rows].iter().map(|v| v * v).sum();
        if let Some(b) = l.b_slot {
            sums[b][o] += s;
        }
        let acc = &mut sums[l.w_slot][o * l.fin..(o + 1) * l.fin];
        for (acc, v) in acc.iter_mut().zip(&a2) {
            *acc += s * v;
        }
    }
    if !need_dx {
        return Vec::new();
    }
    let mut dx = vec![0f32; l.fin * rows];
    gemm_into(
        &mut dx,
        [rows, 1],
        &l.w,
        [l.fout, 1],
        g,
        [rows, 1],
        [l.fin, l.fout, rows],
        false,
        false,
    );
    dx
}

/// Max-pooling's backward pass: each output's gradient goes to its window's (first) maximum.
pub(super) fn pool_back(l: &Window, x: &[f32], g: &[f32], rows: usize) -> Vec<f32> {
    let ([h, w], [ho, wo]) = (l.in_hw, l.out_hw);
    let c = x.len() / (h * w);
    let taps = l.taps();
    let mut dx = vec![0f32; c * rows * h * w];
    let mut best = vec![(f32::NEG_INFINITY, usize::MAX); ho * wo];
    for ch in 0..c {
        let xc = &x[ch * h * w..(ch + 1) * h * w];
        best.fill((f32::NEG_INFINITY, usize::MAX));
        // taps in kernel order, so ties go to the first position of the window
        for t in &taps {
            for oh in t.rows.clone() {
                for ow in t.cols.clone() {
                    let j = l.input(0, oh, t.off[0]) * w + l.input(1, ow, t.off[1]);
                    let b = &mut best[oh * wo + ow];
                    if xc[j] > b.0 {
                        *b = (xc[j], j);
                    }
                }
            }
        }
        for (o, &(_, j)) in best.iter().enumerate().filter(|(_, b)| b.1 != usize::MAX) {
            for r in 0..rows {
                dx[(ch * rows + r) * h * w + j] += g[(ch * rows + r) * ho * wo + o];
            }
        }
    }
    dx
}

/// Global average pooling's backward pass: `[channels][rows]` to `[channels][rows][p]`.
pub(super) fn spread(feats: &[f32], p: usize) -> Vec<f32> {
    let mut g = Vec::with_capacity(feats.len() * p);
    for v in feats {
        g.extend(std::iter::repeat_n(v / p as f32, p));
    }
    g
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution, Tensor};

    use super::super::record::host_f32;
    use super::*;

    /// `conv_step` on one example with two rows against burn's autodiff: for each row `r`,
    /// backward of `Σ g_r · conv(x)` gives the weight, bias and input gradients; the engine must
    /// return `Σ_r` of their squares and the input gradients in `[cin][rows][h·w]`.
    fn check(groups: usize, [cin, cout]: [usize; 2], k: usize, stride: usize, pad: usize) {
        let dev = Device::flex().autodiff();
        dev.seed(7);
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_groups(groups)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .init(&dev);
        let (h, w) = (7, 6);
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([1, cin, h, w], normal, &dev).require_grad();
        let out = conv.forward(x.clone()).dims();
        let rows = 2;
        let gs: Vec<Tensor<4>> = (0..rows)
            .map(|_| Tensor::<4>::random(out, normal, &dev))
            .collect();
        let (mut w2, mut b2, mut dxs) = (None::<Tensor<4>>, None::<Tensor<1>>, Vec::new());
        for g in &gs {
            let grads = (conv.forward(x.clone()) * g.clone()).sum().backward();
            let gw = conv.weight.val().grad(&grads).unwrap().square();
            let gb = conv
                .bias
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .unwrap()
                .square();
            w2 = Some(w2.map_or(gw.clone(), |t| t + gw));
            b2 = Some(b2.map_or(gb.clone(), |t| t + gb));
            dxs.push(host_f32(&x.grad(&grads).unwrap().reshape([cin, h * w])));
        }
        // the engine's layouts
        let [_, _, ho, wo] = out;
        let po = ho * wo;
        let gv: Vec<Vec<f32>> = gs.iter().map(host_f32).collect();
        let mut g = vec![0f32; cout * rows * po];
        for o in 0..cout {
            for r in 0..rows {
                g[(o * rows + r) * po..(o * rows + r + 1) * po]
                    .copy_from_slice(&gv[r][o * po..(o + 1) * po]);
            }
        }
        let pad = [(pad, pad), (pad, pad)];
        let l = ConvLayer {
            rec: 0,
            w: host_f32(&conv.weight.val()),
            w_slot: 0,
            b_slot: Some(1),
            cin,
            cout,
            groups,
            win: Window::new([k, k], [stride, stride], [1, 1], pad, [h, w]),
        };
        assert_eq!(l.win.out_hw, [ho, wo]);
        let mut sums: Sums = vec![vec![0f32; l.w.len()], vec![0f32; cout]];
        let dx = conv_step(&l, &host_f32(&x), &g, rows, true, &mut sums);
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (j, (u, v)) in a.iter().zip(b).enumerate() {
                assert!((u - v).abs() <= 1e-5 * m, "{what}[{j}]: {u} vs {v}");
            }
        };
        close(&sums[0], &host_f32(&w2.unwrap()), "weight squares");
        close(&sums[1], &host_f32(&b2.unwrap()), "bias squares");
        for (r, want) in dxs.iter().enumerate() {
            let got: Vec<f32> = (0..cin)
                .flat_map(|c| dx[(c * rows + r) * h * w..(c * rows + r + 1) * h * w].to_vec())
                .collect();
            close(&got, want, "input gradient");
        }
    }

    #[test]
    fn conv_step_matches_autodiff() {
        check(1, [3, 4], 3, 1, 1); // im2col + col2im
        check(1, [3, 4], 1, 1, 0); // pointwise
        check(1, [3, 5], 1, 2, 0); // strided 1x1 (downsample)
        check(2, [4, 6], 3, 2, 1); // grouped
        check(5, [5, 5], 3, 2, 1); // depthwise
        check(5, [5, 5], 5, 1, 2); // depthwise 5x5
    }
}
