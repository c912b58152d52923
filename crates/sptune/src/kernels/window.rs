//! Convolution geometry shared by the training kernels ([`super::conv`]) and the Fisher engine:
//! matrix products (the `gemm` crate), the sliding [`Window`] of a convolution or pooling layer
//! and its [`KernelTap`]s, and the unfolding of input patches (`im2col`) and its adjoint
//! (`col2im`).

/// The sliding window of a convolution or a pooling layer on its input.
pub(crate) struct Window {
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) dilation: [usize; 2],
    /// `((top, bottom), (left, right))`.
    pub(crate) pad: [(usize, usize); 2],
    pub(crate) in_hw: [usize; 2],
    pub(crate) out_hw: [usize; 2],
}

impl Window {
    pub(crate) fn new(
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        pad: [(usize, usize); 2],
        in_hw: [usize; 2],
    ) -> Self {
        let out_hw = [0, 1].map(|a| {
            let span = dilation[a] * (kernel[a] - 1) + 1;
            (in_hw[a] + pad[a].0 + pad[a].1 - span) / stride[a] + 1
        });
        Window {
            kernel,
            stride,
            dilation,
            pad,
            in_hw,
            out_hw,
        }
    }
}

/// One kernel tap of a [`Window`]: its index in the kernel, its offsets onto the (unpadded)
/// input, and the output rows and columns whose input position lies inside the image.
pub(crate) struct KernelTap {
    pub(crate) k: usize,
    pub(crate) off: [isize; 2],
    pub(crate) rows: std::ops::Range<usize>,
    pub(crate) cols: std::ops::Range<usize>,
}

impl Window {
    /// The kernel's taps, row-major (`k = ki·kw + kj`).
    pub(crate) fn taps(&self) -> Vec<KernelTap> {
        let mut v = Vec::with_capacity(self.taps_len());
        for ki in 0..self.kernel[0] {
            for kj in 0..self.kernel[1] {
                let off = [0, 1].map(|a| {
                    let k = if a == 0 { ki } else { kj };
                    (k * self.dilation[a]) as isize - self.pad[a].0 as isize
                });
                v.push(KernelTap {
                    k: ki * self.kernel[1] + kj,
                    off,
                    rows: valid(self.out_hw[0], self.stride[0], off[0], self.in_hw[0]),
                    cols: valid(self.out_hw[1], self.stride[1], off[1], self.in_hw[1]),
                });
            }
        }
        v
    }

    /// Taps of the kernel (`kh·kw`).
    pub(crate) fn taps_len(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Positions of one input plane (`h·w`).
    pub(crate) fn in_len(&self) -> usize {
        self.in_hw[0] * self.in_hw[1]
    }

    /// Positions of one output plane.
    pub(crate) fn out_len(&self) -> usize {
        self.out_hw[0] * self.out_hw[1]
    }

    /// The input row (`axis` 0) or column (1) that output position `o` reads at offset `off`.
    pub(crate) fn input(&self, axis: usize, o: usize, off: isize) -> usize {
        ((o * self.stride[axis]) as isize + off) as usize
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` with explicit (row, column) strides: added to `dst`
/// when `accumulate`, on rayon's threads when `parallel`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into(
    dst: &mut [f32],
    dst_strides: [usize; 2],
    lhs: &[f32],
    lhs_strides: [usize; 2],
    rhs: &[f32],
    rhs_strides: [usize; 2],
    [m, k, n]: [usize; 3],
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |s: [usize; 2], r: usize, c: usize| (r - 1) * s[0] + (c - 1) * s[1];
    assert!(k == 0 || last(lhs_strides, m, k) < lhs.len());
    assert!(k == 0 || last(rhs_strides, k, n) < rhs.len());
    assert!(last(dst_strides, m, n) < dst.len());
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element gemm touches inside the slices; `dst` is
    // exclusively borrowed and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides[1] as isize,
            dst_strides[0] as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs.as_ptr(),
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The output positions `o` with `0 <= o·s + off < n`, for `o < out`.
fn valid(out: usize, s: usize, off: isize, n: usize) -> std::ops::Range<usize> {
    let s = s as isize;
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    let hi = ((n as isize - off + s - 1) / s).clamp(0, out as isize);
    (lo.min(hi) as usize)..(hi as usize)
}

/// Unfolded patches `[cin·kh·kw][positions]` of one example's input.
pub(crate) fn im2col(l: &Window, cin: usize, x: &[f32]) -> Vec<f32> {
    let [ho, wo] = l.out_hw;
    let mut u = vec![0f32; cin * l.taps_len() * ho * wo];
    im2col_into(l, &l.taps(), cin, x, &mut u, ho * wo, 0);
    u
}

/// Writes one example's unfolded patches into `u`: row `ci·kh·kw + k` (row stride `ld`),
/// columns `col0 .. col0 + positions`; positions that fall on the padding get 0. `taps` are
/// `l.taps()`.
pub(crate) fn im2col_into(
    l: &Window,
    taps: &[KernelTap],
    cin: usize,
    x: &[f32],
    u: &mut [f32],
    ld: usize,
    col0: usize,
) {
    let ([h, w], [ho, wo]) = (l.in_hw, l.out_hw);
    let kk = l.taps_len();
    for ci in 0..cin {
        let xc = &x[ci * h * w..(ci + 1) * h * w];
        for t in taps {
            let row = &mut u[(ci * kk + t.k) * ld + col0..][..ho * wo];
            for oh in 0..ho {
                let dst = &mut row[oh * wo..(oh + 1) * wo];
                if !t.rows.contains(&oh) || t.cols.is_empty() {
                    dst.fill(0.0);
                    continue;
                }
                let src = &xc[l.input(0, oh, t.off[0]) * w..][..w];
                dst[..t.cols.start].fill(0.0);
                dst[t.cols.end..].fill(0.0);
                if l.stride[1] == 1 {
                    let s0 = l.input(1, t.cols.start, t.off[1]);
                    dst[t.cols.clone()].copy_from_slice(&src[s0..s0 + t.cols.len()]);
                } else {
                    for ow in t.cols.clone() {
                        dst[ow] = src[l.input(1, ow, t.off[1])];
                    }
                }
            }
        }
    }
}

/// Adds unfolded patches `cols` `[cin·kh·kw][positions]` back onto an input-shaped `dx`
/// (one row's `[cin][h·w]`, channel stride `cstride`).
pub(crate) fn col2im(l: &Window, cin: usize, cols: &[f32], dx: &mut [f32], cstride: usize) {
    let [ho, wo] = l.out_hw;
    col2im_from(l, &l.taps(), cin, cols, ho * wo, 0, dx, cstride);
}

/// [`col2im`] reading the patches of one example from columns `col0 ..` of `cols` (row stride
/// `ld`); `taps` are `l.taps()`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn col2im_from(
    l: &Window,
    taps: &[KernelTap],
    cin: usize,
    cols: &[f32],
    ld: usize,
    col0: usize,
    dx: &mut [f32],
    cstride: usize,
) {
    let ([h, w], [ho, wo]) = (l.in_hw, l.out_hw);
    let kk = l.taps_len();
    for ci in 0..cin {
        let xc = &mut dx[ci * cstride..ci * cstride + h * w];
        for t in taps.iter().filter(|t| !t.cols.is_empty()) {
            let row = &cols[(ci * kk + t.k) * ld + col0..][..ho * wo];
            for oh in t.rows.clone() {
                let dst = &mut xc[l.input(0, oh, t.off[0]) * w..][..w];
                let src = &row[oh * wo..(oh + 1) * wo];
                if l.stride[1] == 1 {
                    let start = l.input(1, t.cols.start, t.off[1]);
                    let dst = &mut dst[start..start + t.cols.len()];
                    for (d, s) in dst.iter_mut().zip(&src[t.cols.clone()]) {
                        *d += s;
                    }
                } else {
                    for ow in t.cols.clone() {
                        dst[l.input(1, ow, t.off[1])] += src[ow];
                    }
                }
            }
        }
    }
}

/// `((top, bottom), (left, right))` padding of a convolution, as burn's `Conv2d` computes it.
pub(crate) fn conv_padding(m: &burn::nn::conv::Conv2d, h: usize, w: usize) -> [(usize, usize); 2] {
    resolve_padding(&m.padding, m.kernel_size, m.stride, h, w)
}

/// `((top, bottom), (left, right))` of a padding configuration (burn's rules).
pub(crate) fn resolve_padding(
    padding: &burn::nn::PaddingConfig2d,
    kernel: [usize; 2],
    stride: [usize; 2],
    h: usize,
    w: usize,
) -> [(usize, usize); 2] {
    let same = |k: usize, s: usize, n: usize| {
        let out = n.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(n);
        (total / 2, total - total / 2)
    };
    match padding {
        burn::nn::PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        burn::nn::PaddingConfig2d::Same => {
            [same(kernel[0], stride[0], h), same(kernel[1], stride[1], w)]
        }
        // burn's order: (top, left, bottom, right)
        burn::nn::PaddingConfig2d::Explicit(t, l, b, r) => [(*t, *b), (*l, *r)],
    }
}
