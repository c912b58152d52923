//! Depthwise convolutions (one input channel per group: EfficientNet-Lite's 3x3 and 5x5 layers)
//! as direct loops, row by row: an output row and the few input rows it reads stay in the L1
//! cache across the kernel's taps, where a pass per tap over the whole plane would stream the
//! plane through memory kh·kw times. Stride-2 input rows are first split into their even and
//! odd columns, so every inner loop is a contiguous multiply-add (or dot product) that the
//! compiler vectorizes; the loops are compiled three times (AVX-512, AVX2 + FMA, baseline) and
//! the processor's best is chosen at run time. Small planes (output rows of 28 or fewer)
//! with channels in multiples of 16 go through channel-last tiles instead, one channel per
//! vector lane ([`tiled`]).
//!
//! Sums: the weight gradient adds per-row dot products (16 f32 lanes) into f64 totals.

use rayon::prelude::*;

use super::simd::{Fused, Isa, Madd, Plain, isa, simd};
use super::window::{KernelTap, Window};

/// The shapes of a depthwise convolution (the caller's `Conv` with one input channel per
/// group).
pub(super) struct Conv<'a> {
    pub(super) batch: usize,
    pub(super) cin: usize,
    pub(super) cout: usize,
    pub(super) window: &'a Window,
}

impl Conv<'_> {
    /// Output channels per input channel.
    fn og(&self) -> usize {
        self.cout / self.cin
    }
    fn kk(&self) -> usize {
        self.window.taps_len()
    }
    fn p_in(&self) -> usize {
        self.window.in_len()
    }
    fn p_out(&self) -> usize {
        self.window.out_len()
    }
}

/// `d += a·s` elementwise over the shorter length.
#[inline(always)]
fn axpy<M: Madd>(d: &mut [f32], a: f32, s: &[f32]) {
    for (d, s) in d.iter_mut().zip(s) {
        *d = M::madd(a, *s, *d);
    }
}

/// `Σ a·b` over the shorter length, in 16 independent lanes (vectorizable).
#[inline(always)]
fn dot<M: Madd>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for j in 0..16 {
            acc[j] = M::madd(x[j], y[j], acc[j]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail = M::madd(*x, *y, tail);
    }
    acc.iter().sum::<f32>() + tail
}

/// `row` split into `[even columns | odd columns]` in `out` (length `row.len()`).
#[inline(always)]
fn split_even_odd(row: &[f32], out: &mut [f32]) {
    let ne = row.len().div_ceil(2);
    let (ev, od) = out.split_at_mut(ne);
    for (j, e) in ev.iter_mut().enumerate() {
        *e = row[2 * j];
    }
    for (j, o) in od.iter_mut().enumerate() {
        *o = row[2 * j + 1];
    }
}

/// Where input column `col` lies in a row split by [`split_even_odd`] of width `w`.
#[inline(always)]
fn split_index(col: usize, w: usize) -> usize {
    if col.is_multiple_of(2) {
        col / 2
    } else {
        w.div_ceil(2) + col / 2
    }
}

/// The taps of one kernel row (all share the output rows they touch), for output row `oh`.
fn kernel_rows(taps: &[KernelTap], kw: usize, oh: usize) -> impl Iterator<Item = &[KernelTap]> {
    taps.chunks(kw).filter(move |r| r[0].rows.contains(&oh))
}

/// One output plane `i` (image-major, then channel).
#[inline(always)]
fn forward_plane<M: Madd>(
    c: &Conv<'_>,
    taps: &[KernelTap],
    x: &[f32],
    w: &[f32],
    i: usize,
    dst: &mut [f32],
) {
    let l = &c.window;
    let ([_, wi], [ho, wo]) = (l.in_hw, l.out_hw);
    let (kk, og, p_in) = (c.kk(), c.og(), c.p_in());
    let (b, o) = (i / c.cout, i % c.cout);
    let xc = &x[(b * c.cin + o / og) * p_in..][..p_in];
    let wo_ = &w[o * kk..][..kk];
    let sw = l.stride[1];
    let mut split = vec![0f32; if sw == 2 { wi } else { 0 }];
    for oh in 0..ho {
        let d = &mut dst[oh * wo..(oh + 1) * wo];
        for kr in kernel_rows(taps, l.kernel[1], oh) {
            let src = &xc[l.input(0, oh, kr[0].off[0]) * wi..][..wi];
            if sw == 2 {
                split_even_odd(src, &mut split);
            }
            for t in kr.iter().filter(|t| !t.cols.is_empty()) {
                let s0 = l.input(1, t.cols.start, t.off[1]);
                match sw {
                    1 => axpy::<M>(&mut d[t.cols.clone()], wo_[t.k], &src[s0..]),
                    2 => axpy::<M>(
                        &mut d[t.cols.clone()],
                        wo_[t.k],
                        &split[split_index(s0, wi)..],
                    ),
                    _ => {
                        for ow in t.cols.clone() {
                            d[ow] = M::madd(wo_[t.k], src[l.input(1, ow, t.off[1])], d[ow]);
                        }
                    }
                }
            }
        }
    }
}

/// One input-gradient plane `i` (image-major, then input channel).
#[inline(always)]
fn input_grad_plane<M: Madd>(
    c: &Conv<'_>,
    taps: &[KernelTap],
    w: &[f32],
    gy: &[f32],
    i: usize,
    dst: &mut [f32],
) {
    let l = &c.window;
    let ([hi, wi], [ho, wo]) = (l.in_hw, l.out_hw);
    let (kk, og, p) = (c.kk(), c.og(), c.p_out());
    let (b, ci) = (i / c.cin, i % c.cin);
    let sw = l.stride[1];
    // stride 2: accumulate into rows split by column parity, interleaved at the end
    let mut split = vec![0f32; if sw == 2 { hi * wi } else { 0 }];
    for o in ci * og..(ci + 1) * og {
        let g = &gy[(b * c.cout + o) * p..][..p];
        let wo_ = &w[o * kk..][..kk];
        for oh in 0..ho {
            let grow = &g[oh * wo..(oh + 1) * wo];
            for kr in kernel_rows(taps, l.kernel[1], oh) {
                let ih = l.input(0, oh, kr[0].off[0]);
                for t in kr.iter().filter(|t| !t.cols.is_empty()) {
                    let s0 = l.input(1, t.cols.start, t.off[1]);
                    let src = &grow[t.cols.clone()];
                    match sw {
                        1 => axpy::<M>(&mut dst[ih * wi + s0..(ih + 1) * wi], wo_[t.k], src),
                        2 => {
                            let row = &mut split[ih * wi..(ih + 1) * wi];
                            axpy::<M>(&mut row[split_index(s0, wi)..], wo_[t.k], src)
                        }
                        _ => {
                            for ow in t.cols.clone() {
                                let at = ih * wi + l.input(1, ow, t.off[1]);
                                dst[at] = M::madd(wo_[t.k], grow[ow], dst[at]);
                            }
                        }
                    }
                }
            }
        }
    }
    if sw == 2 {
        let ne = wi.div_ceil(2);
        for (drow, srow) in dst.chunks_mut(wi).zip(split.chunks(wi)) {
            for (j, v) in drow.iter_mut().enumerate() {
                *v += srow[if j.is_multiple_of(2) {
                    j / 2
                } else {
                    ne + j / 2
                }];
            }
        }
    }
}

/// The weight gradient of output channel `o` (its `kh·kw` taps).
#[inline(always)]
fn weight_grad_channel<M: Madd>(
    c: &Conv<'_>,
    taps: &[KernelTap],
    x: &[f32],
    gy: &[f32],
    o: usize,
    dw: &mut [f32],
) {
    let l = &c.window;
    let ([_, wi], [ho, wo]) = (l.in_hw, l.out_hw);
    let (og, p, p_in) = (c.og(), c.p_out(), c.p_in());
    let sw = l.stride[1];
    let mut split = vec![0f32; if sw == 2 { wi } else { 0 }];
    let mut total = vec![0f64; dw.len()];
    for b in 0..c.batch {
        let xc = &x[(b * c.cin + o / og) * p_in..][..p_in];
        let g = &gy[(b * c.cout + o) * p..][..p];
        for oh in 0..ho {
            let grow = &g[oh * wo..(oh + 1) * wo];
            for kr in kernel_rows(taps, l.kernel[1], oh) {
                let src = &xc[l.input(0, oh, kr[0].off[0]) * wi..][..wi];
                if sw == 2 {
                    split_even_odd(src, &mut split);
                }
                for t in kr.iter().filter(|t| !t.cols.is_empty()) {
                    let s0 = l.input(1, t.cols.start, t.off[1]);
                    let gr = &grow[t.cols.clone()];
                    let v = match sw {
                        1 => dot::<M>(gr, &src[s0..]),
                        2 => dot::<M>(gr, &split[split_index(s0, wi)..]),
                        _ => t
                            .cols
                            .clone()
                            .map(|ow| grow[ow] * src[l.input(1, ow, t.off[1])])
                            .sum(),
                    };
                    total[t.k] += v as f64;
                }
            }
        }
    }
    for (d, t) in dw.iter_mut().zip(total) {
        *d += t as f32;
    }
}

/// Channels per tile of the small-plane path: one vector lane per channel.
const LANES: usize = 16;
type Lane = [f32; LANES];

/// Small planes (rows of a few floats, where per-row loops are mostly overhead) go through
/// tiles of 16 channels laid out channel-last, one channel per vector lane: the convolution's
/// multiply-adds become whole-vector operations. Used when every output channel reads its own
/// input channel and the channels come in multiples of 16.
fn tiled(c: &Conv<'_>) -> bool {
    c.og() == 1 && tiled_weight_grad(c)
}

/// The weight gradient's tiles also take a channel multiplier (several output channels per
/// input channel): lane `j` reads the input plane of its own output channel.
fn tiled_weight_grad(c: &Conv<'_>) -> bool {
    c.cout.is_multiple_of(LANES) && c.window.out_hw[1] <= 28
}

#[inline(always)]
fn lane_madd<M: Madd>(acc: &mut Lane, a: &Lane, b: &Lane) {
    for j in 0..LANES {
        acc[j] = M::madd(a[j], b[j], acc[j]);
    }
}

/// `planes[j]` (each `h·w`) -> `tile[h·w]` of lanes.
#[inline(always)]
fn gather(src: &[f32], first: usize, plane: usize, tile: &mut [Lane]) {
    gather_shared(src, first, 1, plane, tile)
}

/// As [`gather`], lane `j` reading plane `(first + j) / share` (planes shared by `share`
/// consecutive lanes: an input channel under a channel multiplier).
#[inline(always)]
fn gather_shared(src: &[f32], first: usize, share: usize, plane: usize, tile: &mut [Lane]) {
    for j in 0..LANES {
        let p = &src[(first + j) / share * plane..][..plane];
        for (t, v) in tile.iter_mut().zip(p) {
            t[j] = *v;
        }
    }
}

/// The weights of channels `first..first+16` as one lane vector per tap.
#[inline(always)]
fn weight_lanes(w: &[f32], kk: usize, first: usize) -> Vec<Lane> {
    (0..kk)
        .map(|k| std::array::from_fn(|j| w[(first + j) * kk + k]))
        .collect()
}

/// For each output row tap `t` touches: where its first output column lies in the output
/// plane and where the input it reads starts in the input plane. The tap's `cols.len()`
/// outputs of a row read every `stride[1]`-th input from there on.
#[inline(always)]
fn tap_rows(l: &Window, t: &KernelTap) -> impl Iterator<Item = (usize, usize)> {
    let ([_, wi], [_, wo]) = (l.in_hw, l.out_hw);
    let (c0, iw0) = (t.cols.start, l.input(1, t.cols.start, t.off[1]));
    t.rows
        .clone()
        .map(move |oh| (oh * wo + c0, l.input(0, oh, t.off[0]) * wi + iw0))
}

/// `tile` (positions of 16 lanes) -> 16 planes of `plane` values in `dst`.
#[inline(always)]
fn scatter(tile: &[Lane], plane: usize, dst: &mut [f32]) {
    for (j, p) in dst.chunks_mut(plane).enumerate() {
        for (d, t) in p.iter_mut().zip(tile) {
            *d = t[j];
        }
    }
}

/// Forward of tile `i` (image-major, then channel group): 16 output planes in `dst`.
#[inline(always)]
fn forward_tile<M: Madd>(
    c: &Conv<'_>,
    taps: &[KernelTap],
    x: &[f32],
    w: &[f32],
    i: usize,
    dst: &mut [f32],
) {
    let (kk, p, p_in) = (c.kk(), c.p_out(), c.p_in());
    let groups = c.cout / LANES;
    let (b, first) = (i / groups, (i % groups) * LANES);
    let mut xt = vec![[0f32; LANES]; p_in];
    gather(&x[b * c.cin * p_in..], first, p_in, &mut xt);
    let wl = weight_lanes(w, kk, first);
    let mut yt = vec![[0f32; LANES]; p];
    let s = c.window.stride[1];
    for t in taps.iter().filter(|t| !t.cols.is_empty()) {
        let n = t.cols.len();
        for (o0, i0) in tap_rows(c.window, t) {
            for (y, x) in yt[o0..o0 + n].iter_mut().zip(xt[i0..].iter().step_by(s)) {
                lane_madd::<M>(y, &wl[t.k], x);
            }
        }
    }
    scatter(&yt, p, dst);
}

/// Input gradient of tile `i`: 16 input planes in `dst`.
#[inline(always)]
fn input_grad_tile<M: Madd>(
    c: &Conv<'_>,
    taps: &[KernelTap],
    w: &[f32],
    gy: &[f32],
    i: usize,
    dst: &mut [f32],
) {
    let (kk, p, p_in) = (c.kk(), c.p_out(), c.p_in());
    let groups = c.cin / LANES;
    let (b, first) = (i / groups, (i % groups) * LANES);
    let mut gt = vec![[0f32; LANES]; p];
    gather(&gy[b * c.cout * p..], first, p, &mut gt);
    let wl = weight_lanes(w, kk, first);
    let mut xt = vec![[0f32; LANES]; p_in];
    let s = c.window.stride[1];
    for t in taps.iter().filter(|t| !t.cols.is_empty()) {
        let n = t.cols.len();
        for (o0, i0) in tap_rows(c.window, t) {
            for (x, g) in xt[i0..].iter_mut().step_by(s).zip(&gt[o0..o0 + n]) {
                lane_madd::<M>(x, &wl[t.k], g);
            }
        }
    }
    scatter(&xt, p_in, dst);
}

/// Weight gradient of channel group `g` (16 channels, all images): `dst` is their `16·kk`
/// weights.
#[inline(always)]
fn weight_grad_tile<M: Madd>(
    c: &Conv<'_>,
    taps: &[KernelTap],
    x: &[f32],
    gy: &[f32],
    g: usize,
    dst: &mut [f32],
) {
    let (kk, p, p_in) = (c.kk(), c.p_out(), c.p_in());
    let first = g * LANES;
    let mut xt = vec![[0f32; LANES]; p_in];
    let mut gt = vec![[0f32; LANES]; p];
    let mut total = vec![[0f64; LANES]; kk];
    for b in 0..c.batch {
        gather_shared(&x[b * c.cin * p_in..], first, c.og(), p_in, &mut xt);
        gather(&gy[b * c.cout * p..], first, p, &mut gt);
        for t in taps.iter().filter(|t| !t.cols.is_empty()) {
            let (mut acc, n, s) = ([0f32; LANES], t.cols.len(), c.window.stride[1]);
            for (o0, i0) in tap_rows(c.window, t) {
                for (g, x) in gt[o0..o0 + n].iter().zip(xt[i0..].iter().step_by(s)) {
                    lane_madd::<M>(&mut acc, g, x);
                }
            }
            for (tot, a) in total[t.k].iter_mut().zip(acc) {
                *tot += a as f64;
            }
        }
    }
    for (j, dw) in dst.chunks_mut(kk).enumerate() {
        for (k, d) in dw.iter_mut().enumerate() {
            *d += total[k][j] as f32;
        }
    }
}

/// Declares `$name(c, taps, a, b, i, dst)` running `$body::<M>` compiled for the processor's
/// best instruction set ([`simd`]; [`Plain`] multiply-adds on the baseline).
macro_rules! dispatched {
    ($name:ident, $body:ident) => {
        fn $name(
            c: &Conv<'_>,
            taps: &[KernelTap],
            a: &[f32],
            b: &[f32],
            i: usize,
            dst: &mut [f32],
        ) {
            match isa() {
                Isa::Base => $body::<Plain>(c, taps, a, b, i, dst),
                _ => simd(
                    #[inline(always)]
                    || $body::<Fused>(c, taps, a, b, i, dst),
                ),
            }
        }
    };
}

dispatched!(forward_dispatch, forward_plane);
dispatched!(input_grad_dispatch, input_grad_plane);
dispatched!(weight_grad_dispatch, weight_grad_channel);
dispatched!(forward_tile_dispatch, forward_tile);
dispatched!(input_grad_tile_dispatch, input_grad_tile);
dispatched!(weight_grad_tile_dispatch, weight_grad_tile);

/// `y = conv(x, w)` for a depthwise `c` (`y` zeroed, `cout` planes per image).
pub(super) fn forward(c: &Conv<'_>, x: &[f32], w: &[f32], y: &mut [f32]) {
    let taps = c.window.taps();
    if tiled(c) {
        return y
            .par_chunks_mut(c.p_out() * LANES)
            .enumerate()
            .for_each(|(i, dst)| forward_tile_dispatch(c, &taps, x, w, i, dst));
    }
    y.par_chunks_mut(c.p_out())
        .enumerate()
        .for_each(|(i, dst)| forward_dispatch(c, &taps, x, w, i, dst));
}

/// `gx = convᵀ(gy, w)` (`gx` zeroed).
pub(super) fn input_grad(c: &Conv<'_>, w: &[f32], gy: &[f32], gx: &mut [f32]) {
    let taps = c.window.taps();
    if tiled(c) {
        return gx
            .par_chunks_mut(c.p_in() * LANES)
            .enumerate()
            .for_each(|(i, dst)| input_grad_tile_dispatch(c, &taps, w, gy, i, dst));
    }
    gx.par_chunks_mut(c.p_in())
        .enumerate()
        .for_each(|(i, dst)| input_grad_dispatch(c, &taps, w, gy, i, dst));
}

/// `gw += Σ_b x ⋆ gy` per output channel.
pub(super) fn weight_grad(c: &Conv<'_>, x: &[f32], gy: &[f32], gw: &mut [f32]) {
    let taps = c.window.taps();
    if tiled_weight_grad(c) {
        return gw
            .par_chunks_mut(c.kk() * LANES)
            .enumerate()
            .for_each(|(g, dst)| weight_grad_tile_dispatch(c, &taps, x, gy, g, dst));
    }
    gw.par_chunks_mut(c.kk())
        .enumerate()
        .for_each(|(o, dw)| weight_grad_dispatch(c, &taps, x, gy, o, dw));
}
