//! The Fisher engine's depthwise passes (`fisher/cpu`): one example's gradient rows (its
//! classes) per channel, laid out `[channel][row][position]`, and for every row the weight
//! gradient and the input gradient through the channel's own kernel.
//!
//! Every plane is laid out flat with the padded input's row pitch, so one kernel tap is one
//! shift of the whole plane: a tap's weight gradient is one long dot product and its input
//! gradient one long multiply-add, contiguous and vectorized, with no per-row loop and no
//! transpose (the training kernels' row and tile loops spent more time on short rows and
//! transposes than on arithmetic here, where every plane is one example's). A stride-`s`
//! convolution goes through the polyphase split: it reads `s·s` phases of the padded input
//! (rows `≡ a`, columns `≡ b` mod `s`), each at stride 1. The output columns past the
//! output width are computed too, against zeros on the gradient side (on 14-px planes with
//! 5x5 kernels a third more multiply-adds, all of them whole vectors).
//!
//! Sums: each tap's dot product runs in 4 x 16 f32 lanes over blocks of 1,024 positions and
//! the blocks add into f64 totals.

use rayon::prelude::*;

use super::simd::{Fused, Isa, Madd, Plain, isa, simd};
use super::window::Window;

const LANES: usize = 16;
/// Positions per block: a block of the gradient plane and the input span it meets stay in
/// the L1 cache across all the kernel's taps.
const BLOCK: usize = 1024;

/// The flat, phase-split layout of one window.
struct Flat {
    stride: [usize; 2],
    /// Phase columns: the row pitch of every flat plane.
    wq: usize,
    /// Floats per phase (zeros past the data, so every tap's shifted read stays inside).
    phase_len: usize,
    /// Flat output positions (`out_h · wq`, rounded up to whole vectors).
    len: usize,
    /// Per kernel tap: its phase and its offset into the phase.
    taps: Vec<(usize, usize)>,
    /// Where input row `ih` starts among the phases, and where column `iw` lies from there:
    /// input position `(ih, iw)` is at `rows[ih] + cols[iw]`.
    rows: Vec<usize>,
    cols: Vec<usize>,
}

impl Flat {
    fn new(l: &Window) -> Self {
        let s = l.stride;
        let hp = l.in_hw[0] + l.pad[0].0 + l.pad[0].1;
        let wp = l.in_hw[1] + l.pad[1].0 + l.pad[1].1;
        let (hq, wq) = (hp.div_ceil(s[0]), wp.div_ceil(s[1]));
        let taps: Vec<(usize, usize)> = (0..l.kernel[0])
            .flat_map(|ky| (0..l.kernel[1]).map(move |kx| (ky, kx)))
            .map(|(ky, kx)| {
                let (dy, dx) = (ky * l.dilation[0], kx * l.dilation[1]);
                ((dy % s[0]) * s[1] + dx % s[1], (dy / s[0]) * wq + dx / s[1])
            })
            .collect();
        let len = (l.out_hw[0] * wq).next_multiple_of(LANES);
        let reach = taps.iter().map(|t| t.1).max().unwrap_or(0) + len;
        let phase_len = (hq * wq).max(reach);
        let rows = (0..l.in_hw[0])
            .map(|ih| ih + l.pad[0].0)
            .map(|r| (r % s[0]) * s[1] * phase_len + (r / s[0]) * wq)
            .collect();
        let cols = (0..l.in_hw[1])
            .map(|iw| iw + l.pad[1].0)
            .map(|c| (c % s[1]) * phase_len + c / s[1])
            .collect();
        Flat {
            stride: s,
            wq,
            phase_len,
            len,
            taps,
            rows,
            cols,
        }
    }

    fn phases(&self) -> usize {
        self.stride[0] * self.stride[1]
    }

    /// Copies input plane `src` into its place among the phases `dst`.
    #[inline(always)]
    fn split(&self, src: &[f32], dst: &mut [f32]) {
        let wi = self.cols.len();
        for (row, &at) in src.chunks(wi).zip(&self.rows) {
            if self.stride[1] == 1 {
                dst[at + self.cols[0]..][..wi].copy_from_slice(row);
            } else {
                for (v, &c) in row.iter().zip(&self.cols) {
                    dst[at + c] = *v;
                }
            }
        }
    }

    /// The input plane `dst` from its place among the phases `src` ([`Self::split`]'s adjoint).
    #[inline(always)]
    fn merge(&self, src: &[f32], dst: &mut [f32]) {
        let wi = self.cols.len();
        for (row, &at) in dst.chunks_mut(wi).zip(&self.rows) {
            if self.stride[1] == 1 {
                row.copy_from_slice(&src[at + self.cols[0]..][..wi]);
            } else {
                for (v, &c) in row.iter_mut().zip(&self.cols) {
                    *v = src[at + c];
                }
            }
        }
    }
}

/// `Σ a·b` in 16 f32 lanes (four independent chains), `a.len()` a multiple of 16.
#[inline(always)]
fn dot_lanes<M: Madd>(a: &[f32], b: &[f32]) -> [f32; LANES] {
    let mut acc = [[0f32; LANES]; 4];
    let (ca, cb) = (a.chunks_exact(4 * LANES), b.chunks_exact(4 * LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for u in 0..4 {
            for j in 0..LANES {
                acc[u][j] = M::madd(x[u * LANES + j], y[u * LANES + j], acc[u][j]);
            }
        }
    }
    for (x, y) in ra.chunks_exact(LANES).zip(rb.chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[0][j] = M::madd(x[j], y[j], acc[0][j]);
        }
    }
    std::array::from_fn(|j| (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]))
}

/// `d += a·s` elementwise.
#[inline(always)]
fn axpy<M: Madd>(d: &mut [f32], a: f32, s: &[f32]) {
    for (d, s) in d.iter_mut().zip(s) {
        *d = M::madd(a, *s, *d);
    }
}

/// One channel: its input plane `x`, its kernel `w`, its rows' output gradients `g`; writes
/// the rows' weight gradients into `gw` (`[row][kh·kw]`) and, when `gx` is not empty, their
/// input gradients into `gx` (`[row][h·w]`, zeroed).
#[inline(always)]
fn channel<M: Madd>(
    l: &Window,
    f: &Flat,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    gw: &mut [f32],
    gx: &mut [f32],
) {
    let ([hi, wi], [ho, wo]) = (l.in_hw, l.out_hw);
    let (kk, po, pi) = (f.taps.len(), ho * wo, hi * wi);
    let mut xp = vec![0f32; f.phases() * f.phase_len];
    f.split(x, &mut xp);
    let mut gflat = vec![0f32; f.len];
    let mut dp = vec![0f32; if gx.is_empty() { 0 } else { xp.len() }];
    let mut totals = vec![[0f64; LANES]; kk];
    for (r, gw) in gw.chunks_mut(kk).enumerate() {
        for (oh, grow) in g[r * po..(r + 1) * po].chunks(wo).enumerate() {
            gflat[oh * f.wq..oh * f.wq + wo].copy_from_slice(grow);
        }
        totals.iter_mut().for_each(|t| *t = [0.0; LANES]);
        dp.fill(0.0);
        for j0 in (0..f.len).step_by(BLOCK) {
            let gb = &gflat[j0..f.len.min(j0 + BLOCK)];
            for (k, &(ph, off)) in f.taps.iter().enumerate() {
                let at = ph * f.phase_len + off + j0;
                let part = dot_lanes::<M>(gb, &xp[at..at + gb.len()]);
                for (t, p) in totals[k].iter_mut().zip(part) {
                    *t += p as f64;
                }
                if !dp.is_empty() {
                    axpy::<M>(&mut dp[at..at + gb.len()], w[k], gb);
                }
            }
        }
        for (d, t) in gw.iter_mut().zip(&totals) {
            *d = t.iter().sum::<f64>() as f32;
        }
        if !gx.is_empty() {
            f.merge(&dp, &mut gx[r * pi..(r + 1) * pi]);
        }
    }
}

/// One example of a depthwise convolution (`window`, `channels` channels, kernels `w`
/// `[channel][kh·kw]`), its input `x` (`[channel][h·w]`) and `rows` output-gradient rows per
/// channel `g` (`[channel][row][out_h·out_w]`): every row's weight gradient
/// (`[channel][row][kh·kw]`) and, when `need_dx`, every row's input gradient
/// (`[channel][row][h·w]`; empty otherwise).
pub(crate) fn per_row_grads(
    window: &Window,
    channels: usize,
    rows: usize,
    x: &[f32],
    w: &[f32],
    g: &[f32],
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>) {
    let f = Flat::new(window);
    let (kk, pi, po) = (f.taps.len(), window.in_len(), window.out_len());
    let mut gw = vec![0f32; channels * rows * kk];
    let mut gx = vec![0f32; if need_dx { channels * rows * pi } else { 0 }];
    let one = |c: usize, gw: &mut [f32], gx: &mut [f32]| {
        let x = &x[c * pi..(c + 1) * pi];
        let (w, g) = (
            &w[c * kk..(c + 1) * kk],
            &g[c * rows * po..(c + 1) * rows * po],
        );
        match isa() {
            Isa::Base => channel::<Plain>(window, &f, x, w, g, gw, gx),
            _ => simd(
                #[inline(always)]
                || channel::<Fused>(window, &f, x, w, g, gw, gx),
            ),
        }
    };
    if need_dx {
        gw.par_chunks_mut(rows * kk)
            .zip(gx.par_chunks_mut(rows * pi))
            .enumerate()
            .for_each(|(c, (gw, gx))| one(c, gw, gx));
    } else {
        gw.par_chunks_mut(rows * kk)
            .enumerate()
            .for_each(|(c, gw)| one(c, gw, &mut []));
    }
    (gw, gx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_numbers;

    /// The direct definition, one multiply-add at a time in f64: `y[o] = Σ_k w[k] x[o·s + k·d
    /// − pad]`, so `∂/∂w[k] = Σ_o g[o] x[...]` and `∂/∂x[...] += g[o] w[k]`.
    fn reference(l: &Window, x: &[f32], w: &[f32], g: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let ([hi, wi], [ho, wo]) = (l.in_hw, l.out_hw);
        let kk = l.kernel[0] * l.kernel[1];
        let (mut gw, mut gx) = (vec![0f64; kk], vec![0f64; hi * wi]);
        for oh in 0..ho {
            for ow in 0..wo {
                for ky in 0..l.kernel[0] {
                    for kx in 0..l.kernel[1] {
                        let ih =
                            (oh * l.stride[0] + ky * l.dilation[0]) as isize - l.pad[0].0 as isize;
                        let iw =
                            (ow * l.stride[1] + kx * l.dilation[1]) as isize - l.pad[1].0 as isize;
                        if ih < 0 || iw < 0 || ih >= hi as isize || iw >= wi as isize {
                            continue;
                        }
                        let (i, k) = (ih as usize * wi + iw as usize, ky * l.kernel[1] + kx);
                        let go = g[oh * wo + ow] as f64;
                        gw[k] += go * x[i] as f64;
                        gx[i] += go * w[k] as f64;
                    }
                }
            }
        }
        (gw, gx)
    }

    /// `(kernel, stride, dilation, ((top, bottom), (left, right)), input)`.
    type Case = (
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [(usize, usize); 2],
        [usize; 2],
    );

    #[test]
    fn rows_match_the_direct_definition() {
        // (kernel, stride, dilation, ((top, bottom), (left, right)), input): Lite0's 3x3 and
        // 5x5 at strides 1 and 2 with TensorFlow's asymmetric "SAME" padding, a dilated
        // kernel, a stride of 3, no padding, a rectangular kernel on a rectangular plane
        let cases: [Case; 8] = [
            ([3, 3], [1, 1], [1, 1], [(1, 1), (1, 1)], [14, 14]),
            ([3, 3], [2, 2], [1, 1], [(0, 1), (0, 1)], [14, 14]),
            ([5, 5], [2, 2], [1, 1], [(1, 2), (1, 2)], [13, 11]),
            ([5, 5], [1, 1], [1, 1], [(2, 2), (2, 2)], [7, 7]),
            ([3, 3], [1, 1], [2, 2], [(2, 2), (2, 2)], [9, 10]),
            ([3, 3], [3, 3], [1, 1], [(1, 1), (0, 2)], [10, 8]),
            ([3, 3], [1, 1], [1, 1], [(0, 0), (0, 0)], [5, 6]),
            ([1, 3], [2, 1], [1, 1], [(0, 0), (1, 1)], [40, 37]),
        ];
        for (n, &(kernel, stride, dilation, pad, hw)) in cases.iter().enumerate() {
            let l = Window::new(kernel, stride, dilation, pad, hw);
            let (channels, rows) = (3, 4);
            let (kk, pi, po) = (l.taps_len(), l.in_len(), l.out_len());
            let x = test_numbers(n as u64 + 1, channels * pi);
            let w = test_numbers(n as u64 + 100, channels * kk);
            let g = test_numbers(n as u64 + 200, channels * rows * po);
            let (gw, gx) = per_row_grads(&l, channels, rows, &x, &w, &g, true);
            let (gw_only, none) = per_row_grads(&l, channels, rows, &x, &w, &g, false);
            assert!(none.is_empty());
            assert_eq!(gw, gw_only, "case {n}");
            for c in 0..channels {
                for r in 0..rows {
                    let (ew, ex) = reference(
                        &l,
                        &x[c * pi..(c + 1) * pi],
                        &w[c * kk..(c + 1) * kk],
                        &g[(c * rows + r) * po..(c * rows + r + 1) * po],
                    );
                    let got_w = &gw[(c * rows + r) * kk..][..kk];
                    let got_x = &gx[(c * rows + r) * pi..][..pi];
                    for (i, (a, e)) in got_w.iter().zip(&ew).enumerate() {
                        assert!(
                            (*a as f64 - e).abs() <= 1e-5 * (1.0 + e.abs()),
                            "case {n} c{c} r{r} w{i}: {a} vs {e}"
                        );
                    }
                    for (i, (a, e)) in got_x.iter().zip(&ex).enumerate() {
                        assert!(
                            (*a as f64 - e).abs() <= 1e-5 * (1.0 + e.abs()),
                            "case {n} c{c} r{r} x{i}: {a} vs {e}"
                        );
                    }
                }
            }
        }
    }
}
