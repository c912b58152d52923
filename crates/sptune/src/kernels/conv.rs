//! A 2-D convolution on the CPU, NCHW, f32: forward, input gradient and weight gradient.
//!
//! burn's Flex convolution runs one matrix product per image, so in the late layers of a
//! network (4x4 positions) the products are thin and the `gemm` crate falls back to its
//! narrow micro-kernels. Here the unfolded patches of a *chunk* of images sit side by side
//! (`[cin·kh·kw][images·positions]`), so each layer is a few wide products:
//!
//! - forward: `Y_g[out, N] = W_g[out, K] · U_g[K, N]`;
//! - weight gradient: `dW_g[out, K] += dY_g[out, N] · U_g[K, N]ᵀ`;
//! - input gradient: `dU_g[K, N] = W_g[out, K]ᵀ · dY_g[out, N]`, then `col2im`;
//!
//! with `K = cin/groups · kh · kw` and `N` = images in the chunk × output positions (chunks
//! keep `U` within [`CHUNK_FLOATS`]). Depthwise convolutions (one input channel per group)
//! have `K` of 9 or 25: their products would be too thin, and they run as direct loops
//! instead (`kernels::depthwise`: row by row, or in channel-lane tiles on small planes).
//! 3x3 stride-1 convolutions over enough tiles go through Winograd's transforms
//! (`kernels::winograd`), a quarter of the multiplies.

use rayon::prelude::*;

use super::scratch::Scratch;
use super::window::{Window, col2im_from, gemm_into, im2col_into};

/// Largest unfolded-patch buffer of one chunk, in floats (4 MiB: measured fastest of 1, 4, 16
/// and 64 MiB on ResNet-18's layers, `benches/conv_kernels.rs`).
pub const CHUNK_FLOATS: usize = 1 << 20;

/// The shapes of one convolution.
pub struct Conv {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Channel groups (`cin` and `cout` divisible by it).
    pub groups: usize,
    /// Kernel, stride, dilation, padding, input and output sizes.
    pub(crate) window: Window,
}

impl Conv {
    /// The convolution of an input `[batch, cin, h, w]` with a weight `[cout, cin/groups, kh,
    /// kw]`; `pad` is `((top, bottom), (left, right))`. `None` when the shapes do not fit
    /// together or the output would be empty.
    pub fn new(
        x: [usize; 4],
        w: [usize; 4],
        stride: [usize; 2],
        dilation: [usize; 2],
        pad: [(usize, usize); 2],
        groups: usize,
    ) -> Option<Conv> {
        let [batch, cin, h, wd] = x;
        let [cout, cg, kh, kw] = w;
        let fits = groups > 0
            && cin % groups == 0
            && cout % groups == 0
            && cg * groups == cin
            && stride.iter().all(|&s| s > 0)
            && dilation.iter().all(|&d| d > 0)
            && kh > 0
            && kw > 0;
        let span = |a: usize, k: usize, n: usize| n + pad[a].0 + pad[a].1 > dilation[a] * (k - 1);
        if !fits || !span(0, kh, h) || !span(1, kw, wd) || batch == 0 {
            return None;
        }
        Some(Conv {
            batch,
            cin,
            cout,
            groups,
            window: Window::new([kh, kw], stride, dilation, pad, [h, wd]),
        })
    }

    /// Whether it runs by Winograd's transforms (3x3, stride 1, one group, enough tiles; see
    /// [`super::set_winograd`]).
    pub fn uses_winograd(&self) -> bool {
        super::winograd::applies(&self.as_winograd())
    }

    /// The output shape `[batch, cout, ho, wo]`.
    pub fn out_shape(&self) -> [usize; 4] {
        let [ho, wo] = self.window.out_hw;
        [self.batch, self.cout, ho, wo]
    }

    fn cg(&self) -> usize {
        self.cin / self.groups
    }
    fn og(&self) -> usize {
        self.cout / self.groups
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
    /// Its shapes for the depthwise kernels.
    fn as_depthwise(&self) -> super::depthwise::Conv<'_> {
        super::depthwise::Conv {
            batch: self.batch,
            cin: self.cin,
            cout: self.cout,
            window: &self.window,
        }
    }
    /// Its shapes for Winograd's transforms.
    fn as_winograd(&self) -> super::winograd::Conv<'_> {
        super::winograd::Conv {
            batch: self.batch,
            cin: self.cin,
            cout: self.cout,
            groups: self.groups,
            window: &self.window,
        }
    }
    /// One input channel per group: direct loops, not products.
    fn depthwise(&self) -> bool {
        self.groups > 1 && self.cg() == 1
    }
    /// Images per chunk.
    fn chunk(&self) -> usize {
        let per_image = (self.cg() * self.kk() * self.p_out()).max(1);
        (CHUNK_FLOATS / per_image).clamp(1, self.batch)
    }
    /// The chunks `(first image, images)`.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (c, b) = (self.chunk(), self.batch);
        (0..b).step_by(c).map(move |b0| (b0, c.min(b - b0)))
    }

    /// Unfolds images `b0 .. b0+nb`, channels of group `g`, into `u` `[K][nb·p_out]`.
    fn unfold(&self, x: &[f32], g: usize, (b0, nb): (usize, usize), u: &mut [f32]) {
        let (cg, kk, p_in, p_out) = (self.cg(), self.kk(), self.p_in(), self.p_out());
        let n = nb * p_out;
        let taps = self.window.taps();
        u[..cg * kk * n]
            .par_chunks_mut(kk * n)
            .enumerate()
            .for_each(|(ci, rows)| {
                for b in 0..nb {
                    let c = g * cg + ci;
                    let xc = &x[((b0 + b) * self.cin + c) * p_in..][..p_in];
                    im2col_into(&self.window, &taps, 1, xc, rows, n, b * p_out);
                }
            });
    }

    /// `dY` of images `b0 .. b0+nb` as `[cout][nb·p_out]`.
    fn gather_out(&self, gy: &[f32], (b0, nb): (usize, usize), t: &mut [f32]) {
        let p = self.p_out();
        let n = nb * p;
        t[..self.cout * n]
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(o, row)| {
                for b in 0..nb {
                    row[b * p..(b + 1) * p]
                        .copy_from_slice(&gy[((b0 + b) * self.cout + o) * p..][..p]);
                }
            });
    }
}

/// The convolution of `x` `[batch, cin, h, w]` with `w` `[cout, cin/groups, kh, kw]`, no bias:
/// `[batch, cout, ho, wo]`.
pub fn forward(c: &Conv, x: &[f32], w: &[f32]) -> Vec<f32> {
    let [batch, cout, ho, wo] = c.out_shape();
    let p = ho * wo;
    let mut y = vec![0f32; batch * cout * p];
    if c.depthwise() {
        super::depthwise::forward(&c.as_depthwise(), x, w, &mut y);
        return y;
    }
    if c.uses_winograd() {
        super::winograd::forward(&c.as_winograd(), x, w, &mut y);
        return y;
    }
    let (og, kg) = (c.og(), c.cg() * c.kk());
    let cap = c.chunk() * p;
    // unfolded patches and the product before its scatter: every element written before read
    let mut u = Scratch::new(kg * cap);
    let mut t = Scratch::new(og * cap);
    for (b0, nb) in c.chunks() {
        let n = nb * p;
        for g in 0..c.groups {
            c.unfold(x, g, (b0, nb), &mut u);
            let wg = &w[g * og * kg..(g + 1) * og * kg];
            gemm_into(
                &mut t,
                [n, 1],
                wg,
                [kg, 1],
                &u,
                [n, 1],
                [og, kg, n],
                false,
                true,
            );
            // scatter [og][nb·p] into [nb][cout][p]
            let yb = &mut y[b0 * cout * p..(b0 + nb) * cout * p];
            yb.par_chunks_mut(p).enumerate().for_each(|(i, dst)| {
                let (b, o) = (i / cout, i % cout);
                if o / og == g {
                    dst.copy_from_slice(&t[(o % og) * n + b * p..][..p]);
                }
            });
        }
    }
    y
}

/// The gradient of the loss with respect to `x`, given `gy` (the gradient with respect to the
/// output): `[batch, cin, h, w]`.
pub fn input_grad(c: &Conv, w: &[f32], gy: &[f32]) -> Vec<f32> {
    let (p, p_in) = (c.p_out(), c.p_in());
    let mut gx = vec![0f32; c.batch * c.cin * p_in];
    if c.depthwise() {
        super::depthwise::input_grad(&c.as_depthwise(), w, gy, &mut gx);
        return gx;
    }
    if c.uses_winograd() {
        super::winograd::input_grad(&c.as_winograd(), w, gy, &mut gx);
        return gx;
    }
    let (cg, og, kk) = (c.cg(), c.og(), c.kk());
    let kg = cg * kk;
    let cap = c.chunk() * p;
    // gathered dY and the product before col2im: every element written before read
    let mut gyt = Scratch::new(c.cout * cap);
    let mut du = Scratch::new(kg * cap);
    for (b0, nb) in c.chunks() {
        let n = nb * p;
        c.gather_out(gy, (b0, nb), &mut gyt);
        for g in 0..c.groups {
            let wg = &w[g * og * kg..(g + 1) * og * kg];
            let gg = &gyt[g * og * n..(g + 1) * og * n];
            // dU[kg, n] = W_gᵀ · dY_g
            gemm_into(
                &mut du,
                [n, 1],
                wg,
                [1, kg],
                gg,
                [n, 1],
                [kg, og, n],
                false,
                true,
            );
            let gxb = &mut gx[b0 * c.cin * p_in..(b0 + nb) * c.cin * p_in];
            let taps = c.window.taps();
            gxb.par_chunks_mut(p_in).enumerate().for_each(|(i, dst)| {
                let (b, ci) = (i / c.cin, i % c.cin);
                if ci / cg == g {
                    let rows = &du[(ci % cg) * kk * n..];
                    col2im_from(&c.window, &taps, 1, rows, n, b * p, dst, p_in);
                }
            });
        }
    }
    gx
}

/// The gradient of the loss with respect to `w`, given `x` and `gy`: `[cout, cin/groups, kh,
/// kw]`.
pub fn weight_grad(c: &Conv, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (cg, og, kk, p) = (c.cg(), c.og(), c.kk(), c.p_out());
    let kg = cg * kk;
    let mut gw = vec![0f32; c.cout * kg];
    if c.depthwise() {
        super::depthwise::weight_grad(&c.as_depthwise(), x, gy, &mut gw);
        return gw;
    }
    if c.uses_winograd() {
        super::winograd::weight_grad(&c.as_winograd(), x, gy, &mut gw);
        return gw;
    }
    let cap = c.chunk() * p;
    // gathered dY and unfolded patches: every element written before read
    let mut gyt = Scratch::new(c.cout * cap);
    let mut u = Scratch::new(kg * cap);
    // dW_g[og, kg] (+)= dY_g[og, n] · Uᵀ[n, kg]. The gemm crate runs the wide shapes (kg at
    // least twice og, og up to 256: ResNet's 3x3 layers but the last stage) about twice as
    // fast into a column-major dW_g, transposed at the end; the others faster row-major
    // (measured per ResNet-18 layer with `benches/conv_kernels.rs`).
    let column_major = og <= 256 && kg >= 2 * og;
    let mut gwt = if column_major {
        vec![0f32; c.cout * kg]
    } else {
        vec![]
    };
    for (i, (b0, nb)) in c.chunks().enumerate() {
        let n = nb * p;
        c.gather_out(gy, (b0, nb), &mut gyt);
        for g in 0..c.groups {
            c.unfold(x, g, (b0, nb), &mut u);
            let gg = &gyt[g * og * n..(g + 1) * og * n];
            let (dst, strides) = if column_major {
                (&mut gwt[g * og * kg..(g + 1) * og * kg], [1, og])
            } else {
                (&mut gw[g * og * kg..(g + 1) * og * kg], [kg, 1])
            };
            gemm_into(
                dst,
                strides,
                gg,
                [n, 1],
                &u,
                [1, n],
                [og, n, kg],
                i > 0,
                true,
            );
        }
    }
    if column_major {
        for (dst, src) in gw.chunks_mut(og * kg).zip(gwt.chunks(og * kg)) {
            transpose(src, kg, og, dst);
        }
    }
    gw
}

/// `dst[c][r] = src[r][c]` for a row-major `rows × cols` `src`, in cache-sized blocks.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}
