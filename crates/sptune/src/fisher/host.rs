//! The CPU engine: one forward pass per batch, then every row of an example carried through one
//! hand-written backward pass.
//!
//! [`batched`](super::batched) runs a forward and a backward pass through burn's autodiff for
//! each class (burn cannot keep a graph for a second backward pass), at the speed of burn's
//! batched CPU kernels. In eval mode the backward pass of every sptune architecture (ResNet,
//! EfficientNet-Lite, MLP) is a chain of linear maps, so this engine runs burn's forward pass
//! once per batch, records each layer's input (and BatchNorm's output), and then computes, for
//! every example on the host:
//!
//! - the logit cotangents of all its rows at once, `√ω_r (e_{y_r} − p)` for `r = 1..R` (`exact`:
//!   the `C` classes with weight `p_c`; rows with the same label are merged, since
//!   `ω₁ g² + ω₂ g² = (ω₁ + ω₂) g²`, and rows of weight 0 dropped);
//! - the backward pass of those `R` cotangents together, in the layout
//!   `[channel][row][position]`, so that a convolution's data gradient `Wᵀ G` and its per-row
//!   weight gradients `G Uᵀ` (`U` the unfolded input patches, built once per example, not once
//!   per class) are each one matrix product (the `gemm` crate, which burn's CPU backend uses
//!   too);
//! - the squares of the per-row weight gradients, summed over the rows.
//!
//! In eval mode BatchNorm scales channel `c` by `γ_c/√(var_c+ε)`, ReLU (ReLU6) passes the
//! gradient where its output is positive (within [0, 6]), max-pooling routes it to the window's
//! maximum and global average pooling spreads it evenly. Examples run in parallel, one slice per
//! thread, each with its own sums; per batch the sums are added in f64. The tests compare this
//! engine with the batch-1 loop on ResNet-18, ResNet-50 (strided stem, max-pool, bottlenecks),
//! EfficientNet-Lite0 and MLPs, and each convolution kind with burn's autodiff.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::{Fisher, FisherOptions, conv_padding, resolve_padding};
use crate::data::Dataset;
use crate::models::resnet::{Block, ResNet};
use crate::models::{Hook, ModelSpec, Net};
use crate::{Error, Result};

/// Recorded floats per batch (every layer's input, all examples) the engine stays under when it
/// picks its batch size: 2^28 floats, 1 GiB.
const RECORD_BUDGET: usize = 1 << 28;

/// Floats of one layer's gradient for all the rows carried together (2^24, 64 MiB): an example
/// of a 1000-class model at 224 px runs its rows in groups rather than at once.
const ROW_BUDGET: usize = 1 << 24;

/// Largest block of per-row weight gradients materialized at once (floats): 256 KiB, so a block
/// is squared while it is still in the core's L2 cache.
const BLOCK: usize = 1 << 16;

/// Whether the engine handles `net` on `device`: every architecture of sptune (ResNet,
/// EfficientNet-Lite, MLP), on the CPU backend.
pub fn supports(net: &Net, device: &Device) -> bool {
    if device.clone().without_autodiff() != Device::flex() {
        return false;
    }
    match net {
        Net::Mlp(_) | Net::EfficientNet(_) => true,
        Net::ResNet(m) => m.maxpool.as_ref().is_none_or(|p| !p.ceil_mode),
    }
}

fn blocks(m: &ResNet) -> impl Iterator<Item = &Block> {
    [&m.layer1, &m.layer2, &m.layer3, &m.layer4]
        .into_iter()
        .flatten()
}

/// A block's main-branch (conv, BatchNorm) pairs in forward order (the third in bottlenecks).
fn main_branch(b: &Block) -> impl Iterator<Item = (&Conv2d, &BatchNorm)> {
    let third = b.conv3.as_ref().zip(b.bn3.as_ref());
    [(&b.conv1, &b.bn1), (&b.conv2, &b.bn2)]
        .into_iter()
        .chain(third)
}

// ---------------------------------------------------------------------------------------------
// Forward: record what the backward pass needs.

/// One hooked layer call: its input (and BatchNorm's output), all examples, on the host.
struct Record {
    id: ParamId,
    input: Vec<f32>,
    /// Input floats per example.
    in_len: usize,
    /// Spatial size of the input (`[1, 1]` for a linear layer).
    hw: [usize; 2],
    /// BatchNorm only: its output.
    output: Vec<f32>,
}

impl Record {
    fn input(&self, i: usize) -> &[f32] {
        &self.input[i * self.in_len..(i + 1) * self.in_len]
    }
    fn output(&self, i: usize) -> &[f32] {
        &self.output[i * self.in_len..(i + 1) * self.in_len]
    }
}

fn host<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 activations")
}

#[derive(Default)]
struct Recorder {
    records: Vec<Record>,
}

impl Hook for Recorder {
    fn conv2d(&mut self, m: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        let [_, c, h, w] = x.dims();
        self.records.push(Record {
            id: m.weight.id,
            input: host(&x),
            in_len: c * h * w,
            hw: [h, w],
            output: Vec::new(),
        });
        m.forward(x)
    }

    fn batch_norm(&mut self, m: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
        let [_, c, h, w] = x.dims();
        let y = m.forward(x.clone());
        self.records.push(Record {
            id: m.gamma.id,
            input: host(&x),
            in_len: c * h * w,
            hw: [h, w],
            output: host(&y),
        });
        y
    }

    fn linear(&mut self, m: &Linear, x: Tensor<2>) -> Tensor<2> {
        let [_, f] = x.dims();
        self.records.push(Record {
            id: m.weight.id,
            input: host(&x),
            in_len: f,
            hw: [1, 1],
            output: Vec::new(),
        });
        m.forward(x)
    }
}

// ---------------------------------------------------------------------------------------------
// The plan: each layer's host weights, its record and the slots of its Fisher sums.

struct ConvL {
    rec: usize,
    w: Vec<f32>,
    w_slot: usize,
    b_slot: Option<usize>,
    cin: usize,
    cout: usize,
    groups: usize,
    win: Window,
}

struct NormL {
    rec: usize,
    g_slot: usize,
    b_slot: usize,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// `γ/√(var+ε)`: the backward pass's per-channel factor.
    scale: Vec<f32>,
}

struct LinL {
    rec: usize,
    /// burn's layout `[in, out]`.
    w: Vec<f32>,
    w_slot: usize,
    b_slot: Option<usize>,
    fin: usize,
    fout: usize,
}

/// The sliding window of a convolution or a pooling layer on its input.
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// `((top, bottom), (left, right))`.
    pad: [(usize, usize); 2],
    in_hw: [usize; 2],
    out_hw: [usize; 2],
}

impl Window {
    fn new(
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
struct Tap {
    k: usize,
    off: [isize; 2],
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

impl Window {
    /// The kernel's taps, row-major (`k = ki·kw + kj`).
    fn taps(&self) -> Vec<Tap> {
        let mut v = Vec::with_capacity(self.kernel[0] * self.kernel[1]);
        for ki in 0..self.kernel[0] {
            for kj in 0..self.kernel[1] {
                let off = [0, 1].map(|a| {
                    let k = if a == 0 { ki } else { kj };
                    (k * self.dilation[a]) as isize - self.pad[a].0 as isize
                });
                v.push(Tap {
                    k: ki * self.kernel[1] + kj,
                    off,
                    rows: valid(self.out_hw[0], self.stride[0], off[0], self.in_hw[0]),
                    cols: valid(self.out_hw[1], self.stride[1], off[1], self.in_hw[1]),
                });
            }
        }
        v
    }

    /// The input row (`axis` 0) or column (1) that output position `o` reads at offset `off`.
    fn input(&self, axis: usize, o: usize, off: isize) -> usize {
        ((o * self.stride[axis]) as isize + off) as usize
    }
}

struct BlockL {
    downsample: Option<(ConvL, NormL)>,
    /// The main branch's (conv, BatchNorm) pairs; ReLU between them, none after the last.
    main: Vec<(ConvL, NormL)>,
}

struct ResNetL {
    conv1: ConvL,
    bn1: NormL,
    pool: Option<Window>,
    blocks: Vec<BlockL>,
    fc: LinL,
}

/// An MBConv block: expansion (1x1, absent at ratio 1), depthwise, projection; ReLU6 after the
/// first two; the input added to the output when `skip`.
struct MbConvL {
    expand: Option<(ConvL, NormL)>,
    depthwise: (ConvL, NormL),
    project: (ConvL, NormL),
    skip: bool,
}

struct EfficientNetL {
    stem: (ConvL, NormL),
    blocks: Vec<MbConvL>,
    head: (ConvL, NormL),
    fc: LinL,
}

enum Plan {
    ResNet(Box<ResNetL>),
    EfficientNet(Box<EfficientNetL>),
    Mlp(Vec<LinL>),
}

/// Walks the network in forward order, matching each layer with its record.
struct Builder<'a> {
    records: &'a [Record],
    next: usize,
    /// Slot -> (parameter, number of values).
    slots: Vec<(ParamId, usize)>,
}

impl Builder<'_> {
    fn record(&mut self, id: ParamId, what: &str) -> Result<usize> {
        let i = self.next;
        match self.records.get(i) {
            Some(r) if r.id == id => {
                self.next += 1;
                Ok(i)
            }
            _ => Err(Error::Other(format!(
                "Fisher engine: layer {i} of the forward pass is not the expected {what}"
            ))),
        }
    }

    fn slot(&mut self, id: ParamId, len: usize) -> usize {
        self.slots.push((id, len));
        self.slots.len() - 1
    }

    fn conv(&mut self, m: &Conv2d) -> Result<ConvL> {
        let rec = self.record(m.weight.id, "convolution")?;
        let [cout, cg, kh, kw] = m.weight.dims();
        let cin = cg * m.groups;
        let in_hw = self.records[rec].hw;
        let pad = conv_padding(m, in_hw[0], in_hw[1]);
        Ok(ConvL {
            rec,
            w: host(&m.weight.val()),
            w_slot: self.slot(m.weight.id, cout * cg * kh * kw),
            b_slot: m.bias.as_ref().map(|b| self.slot(b.id, cout)),
            cin,
            cout,
            groups: m.groups,
            win: Window::new(m.kernel_size, m.stride, m.dilation, pad, in_hw),
        })
    }

    fn norm(&mut self, m: &BatchNorm) -> Result<NormL> {
        let rec = self.record(m.gamma.id, "BatchNorm")?;
        let c = m.gamma.dims()[0];
        let var = host(&m.running_var.value());
        let inv_std: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + m.epsilon as f32).sqrt())
            .collect();
        let gamma = host(&m.gamma.val());
        Ok(NormL {
            rec,
            g_slot: self.slot(m.gamma.id, c),
            b_slot: self.slot(m.beta.id, c),
            mean: host(&m.running_mean.value()),
            scale: gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect(),
            inv_std,
        })
    }

    fn linear(&mut self, m: &Linear) -> Result<LinL> {
        let rec = self.record(m.weight.id, "linear layer")?;
        let [fin, fout] = m.weight.dims();
        Ok(LinL {
            rec,
            w: host(&m.weight.val()),
            w_slot: self.slot(m.weight.id, fin * fout),
            b_slot: m.bias.as_ref().map(|b| self.slot(b.id, fout)),
            fin,
            fout,
        })
    }
}

fn pool(p: &MaxPool2d, in_hw: [usize; 2]) -> Window {
    let pad = resolve_padding(&p.padding, p.kernel_size, p.stride, in_hw[0], in_hw[1]);
    Window::new(p.kernel_size, p.stride, p.dilation, pad, in_hw)
}

fn plan(net: &Net, records: &[Record]) -> Result<(Plan, Vec<(ParamId, usize)>)> {
    let mut b = Builder {
        records,
        next: 0,
        slots: Vec::new(),
    };
    let plan = match net {
        Net::ResNet(m) => {
            let conv1 = b.conv(&m.conv1)?;
            let bn1 = b.norm(&m.bn1)?;
            let pool = m.maxpool.as_ref().map(|p| pool(p, conv1.win.out_hw));
            let mut layers = Vec::new();
            for block in blocks(m) {
                let downsample = match &block.downsample {
                    Some((c, n)) => Some((b.conv(c)?, b.norm(n)?)),
                    None => None,
                };
                let mut main = Vec::new();
                for (c, n) in main_branch(block) {
                    main.push((b.conv(c)?, b.norm(n)?));
                }
                layers.push(BlockL { downsample, main });
            }
            let fc = b.linear(&m.fc)?;
            Plan::ResNet(Box::new(ResNetL {
                conv1,
                bn1,
                pool,
                blocks: layers,
                fc,
            }))
        }
        Net::Mlp(m) => Plan::Mlp(
            m.layers
                .iter()
                .map(|l| b.linear(l))
                .collect::<Result<_>>()?,
        ),
        Net::EfficientNet(m) => {
            let stem = (b.conv(&m._conv_stem)?, b.norm(&m._bn0)?);
            let mut blocks = Vec::new();
            for k in &m._blocks {
                let expand = match (&k._expand_conv, &k._bn0) {
                    (Some(c), Some(n)) => Some((b.conv(c)?, b.norm(n)?)),
                    _ => None,
                };
                let depthwise = (b.conv(&k._depthwise_conv)?, b.norm(&k._bn1)?);
                let project = (b.conv(&k._project_conv)?, b.norm(&k._bn2)?);
                blocks.push(MbConvL {
                    expand,
                    depthwise,
                    project,
                    skip: k.skip,
                });
            }
            let head = (b.conv(&m._conv_head)?, b.norm(&m._bn1)?);
            let fc = b.linear(&m._fc)?;
            Plan::EfficientNet(Box::new(EfficientNetL {
                stem,
                blocks,
                head,
                fc,
            }))
        }
    };
    if b.next != records.len() {
        return Err(Error::Other(format!(
            "Fisher engine: the forward pass ran {} layers, the plan has {}",
            records.len(),
            b.next
        )));
    }
    Ok((plan, b.slots))
}

// ---------------------------------------------------------------------------------------------
// Kernels on one example. Gradients are `[channel][row][position]`.

/// `dst[m×n] = lhs[m×k] · rhs[k×n]` with explicit (row, column) strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_strides: [usize; 2],
    rhs: &[f32],
    rhs_strides: [usize; 2],
    [m, k, n]: [usize; 3],
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |s: [usize; 2], r: usize, c: usize| (r - 1) * s[0] + (c - 1) * s[1];
    assert!(k == 0 || last(lhs_strides, m, k) < lhs.len());
    assert!(k == 0 || last(rhs_strides, k, n) < rhs.len());
    assert!(last([dst_rs, 1], m, n) < dst.len());
    // SAFETY: the asserts above keep every element gemm touches inside the slices; `dst` is
    // exclusively borrowed and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs.as_ptr(),
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
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
fn im2col(l: &Window, cin: usize, x: &[f32]) -> Vec<f32> {
    let ([h, w], [ho, wo]) = (l.in_hw, l.out_hw);
    let kk = l.kernel[0] * l.kernel[1];
    let taps = l.taps();
    let mut u = vec![0f32; cin * kk * ho * wo];
    for ci in 0..cin {
        let xc = &x[ci * h * w..(ci + 1) * h * w];
        for t in &taps {
            let row = &mut u[(ci * kk + t.k) * ho * wo..][..ho * wo];
            for oh in t.rows.clone() {
                let src = &xc[l.input(0, oh, t.off[0]) * w..][..w];
                let dst = &mut row[oh * wo..(oh + 1) * wo];
                for ow in t.cols.clone() {
                    dst[ow] = src[l.input(1, ow, t.off[1])];
                }
            }
        }
    }
    u
}

/// Adds unfolded patches `cols` `[cin·kh·kw][positions]` back onto an input-shaped `dx`
/// (one row's `[cin][h·w]`, channel stride `cstride`).
fn col2im(l: &Window, cin: usize, cols: &[f32], dx: &mut [f32], cstride: usize) {
    let ([h, w], [ho, wo]) = (l.in_hw, l.out_hw);
    let kk = l.kernel[0] * l.kernel[1];
    let taps = l.taps();
    for ci in 0..cin {
        let xc = &mut dx[ci * cstride..ci * cstride + h * w];
        for t in &taps {
            let row = &cols[(ci * kk + t.k) * ho * wo..][..ho * wo];
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

/// Per-thread Fisher sums, one vector per slot.
type Sums = Vec<Vec<f32>>;

/// A convolution: adds `Σ_r (G_r Uᵀ)²` (and the bias's `Σ_r (Σ_pos G_r)²`) to the sums and
/// returns the input gradient `[cin][rows][h·w]` when `need_dx`.
fn conv_step(
    l: &ConvL,
    x: &[f32],
    g: &[f32],
    rows: usize,
    need_dx: bool,
    sums: &mut Sums,
) -> Vec<f32> {
    let ([h, w], [ho, wo]) = (l.win.in_hw, l.win.out_hw);
    let (hw, po) = (h * w, ho * wo);
    let kk = l.win.kernel[0] * l.win.kernel[1];
    // group j: output channels j·og.., input channels j·cg.., weight rows of kg values
    let (cg, og) = (l.cin / l.groups, l.cout / l.groups);
    let kg = cg * kk;
    let pointwise = l.groups == 1
        && l.win.kernel == [1, 1]
        && l.win.stride == [1, 1]
        && l.win.pad == [(0, 0), (0, 0)]
        && l.win.in_hw == l.win.out_hw;
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
            matmul(dst, kg, lhs, [po, 1], uj, [1, po], [on * rows, po, kg]);
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
    if let Some(b) = l.b_slot {
        for o in 0..l.cout {
            for r in 0..rows {
                let s: f32 = g[(o * rows + r) * po..(o * rows + r + 1) * po].iter().sum();
                sums[b][o] += s * s;
            }
        }
    }
    if !need_dx {
        return Vec::new();
    }
    // input gradient: Wᵀ G, folded back onto the input
    let mut dx = vec![0f32; l.cin * rows * hw];
    if pointwise {
        let n = rows * po;
        matmul(&mut dx, n, &l.w, [1, kg], g, [n, 1], [kg, l.cout, n]);
    } else if cg == 1 && og == 1 {
        depthwise_dx(l, g, rows, &mut dx);
    } else {
        let mut cols = vec![0f32; kg * po];
        for r in 0..rows {
            for j in 0..l.groups {
                let wj = &l.w[j * og * kg..(j + 1) * og * kg]; // Wⱼᵀ[k][o] = Wⱼ[o][k]
                let gj = &g[(j * og * rows + r) * po..];
                matmul(&mut cols, po, wj, [1, kg], gj, [rows * po, 1], [kg, og, po]);
                let dst = &mut dx[(j * cg * rows + r) * hw..];
                col2im(&l.win, cg, &cols, dst, rows * hw);
            }
        }
    }
    dx
}

/// A depthwise convolution's input gradient, directly: every output position adds its
/// gradient times the channel's kernel onto its input window.
fn depthwise_dx(l: &ConvL, g: &[f32], rows: usize, dx: &mut [f32]) {
    let win = &l.win;
    let ([h, w], [ho, wo]) = (win.in_hw, win.out_hw);
    let kk = win.kernel[0] * win.kernel[1];
    let taps = win.taps();
    for c in 0..l.cin {
        let kernel = &l.w[c * kk..(c + 1) * kk];
        for r in 0..rows {
            let src = &g[(c * rows + r) * ho * wo..(c * rows + r + 1) * ho * wo];
            let dst = &mut dx[(c * rows + r) * h * w..(c * rows + r + 1) * h * w];
            for t in &taps {
                let k = kernel[t.k];
                for oh in t.rows.clone() {
                    let d = &mut dst[win.input(0, oh, t.off[0]) * w..][..w];
                    for ow in t.cols.clone() {
                        d[win.input(1, ow, t.off[1])] += k * src[oh * wo + ow];
                    }
                }
            }
        }
    }
}

/// An eval-mode BatchNorm: adds `γ`'s `Σ_r (Σ_pos g x̂)²` and `β`'s `Σ_r (Σ_pos g)²`, then
/// scales `g` in place to the input gradient.
fn norm_step(l: &NormL, x: &[f32], g: &mut [f32], rows: usize, sums: &mut Sums) {
    let c = l.mean.len();
    let p = x.len() / c;
    let mut xhat = vec![0f32; p];
    for ch in 0..c {
        for (d, v) in xhat.iter_mut().zip(&x[ch * p..(ch + 1) * p]) {
            *d = (v - l.mean[ch]) * l.inv_std[ch];
        }
        for r in 0..rows {
            let gr = &mut g[(ch * rows + r) * p..(ch * rows + r + 1) * p];
            let (mut sg, mut sb) = (0f32, 0f32);
            for (gv, xv) in gr.iter().zip(&xhat) {
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
fn mask(g: &mut [f32], rows: usize, p: usize, on: impl Fn(usize) -> bool) {
    for (k, chunk) in g.chunks_mut(p).enumerate() {
        let base = (k / rows) * p;
        for (j, v) in chunk.iter_mut().enumerate() {
            if !on(base + j) {
                *v = 0.0;
            }
        }
    }
}

/// A linear layer: adds `Σ_r g_ro² a_k²` (and the bias's `Σ_r g_ro²`); returns the input
/// gradient `[in][rows]` when `need_dx`.
fn linear_step(
    l: &LinL,
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
    matmul(
        &mut dx,
        rows,
        &l.w,
        [l.fout, 1],
        g,
        [rows, 1],
        [l.fin, l.fout, rows],
    );
    dx
}

/// Max-pooling's backward pass: each output's gradient goes to its window's (first) maximum.
fn pool_back(l: &Window, x: &[f32], g: &[f32], rows: usize) -> Vec<f32> {
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

// ---------------------------------------------------------------------------------------------
// One example's backward pass through a whole network.

fn backward(plan: &Plan, recs: &[Record], i: usize, g: Vec<f32>, rows: usize, sums: &mut Sums) {
    match plan {
        Plan::Mlp(layers) => {
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
        Plan::ResNet(net) => {
            let ResNetL {
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
        Plan::EfficientNet(net) => {
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

/// Global average pooling's backward pass: `[channels][rows]` to `[channels][rows][p]`.
fn spread(feats: &[f32], p: usize) -> Vec<f32> {
    let mut g = Vec::with_capacity(feats.len() * p);
    for v in feats {
        g.extend(std::iter::repeat_n(v / p as f32, p));
    }
    g
}

/// The backward pass of `relu6(norm(conv(x)))` from the gradient of its output.
#[allow(clippy::too_many_arguments)]
fn conv_norm_relu6_back(
    conv: &ConvL,
    norm: &NormL,
    recs: &[Record],
    i: usize,
    mut g: Vec<f32>,
    rows: usize,
    need_dx: bool,
    sums: &mut Sums,
) -> Vec<f32> {
    let y = recs[norm.rec].output(i);
    // burn's clamp passes the gradient on [0, 6], ends included
    mask(&mut g, rows, y.len() / norm.mean.len(), |k| {
        (0.0..=6.0).contains(&y[k])
    });
    norm_step(norm, recs[norm.rec].input(i), &mut g, rows, sums);
    conv_step(conv, recs[conv.rec].input(i), &g, rows, need_dx, sums)
}

/// A residual block's backward pass: `g` is the gradient of the block's output.
fn block_back(
    b: &BlockL,
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
fn merge_rows(rows: &[(usize, f64)]) -> Vec<(usize, f64)> {
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

/// The logit cotangents `[classes][rows]` of one example: `√ω (e_y − p)` per row.
fn cotangents(p: &[f32], rows: &[(usize, f64)]) -> Vec<f32> {
    let r = rows.len();
    let mut g = vec![0f32; p.len() * r];
    for (k, &(y, w)) in rows.iter().enumerate() {
        let s = w.sqrt() as f32;
        for (o, &po) in p.iter().enumerate() {
            let e = if o == y { 1.0 } else { 0.0 };
            g[o * r + k] = s * (e - po);
        }
    }
    g
}

/// The Fisher diagonal of `net` on the examples of `ds` by the CPU engine (see the module
/// documentation); [`supports`] says which networks and devices it takes. `progress(k)` is
/// called after each batch with the number of examples done.
pub fn compute(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    opts: &FisherOptions,
    device: &Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Fisher> {
    compute_in_groups(net, spec, ds, opts, device, usize::MAX, progress)
}

/// [`compute`] carrying at most `max_rows` rows of an example through each backward pass (the
/// engine caps them by memory, see `ROW_BUDGET`); for the tests of that grouping.
#[doc(hidden)]
pub fn compute_in_groups(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    opts: &FisherOptions,
    device: &Device,
    max_rows: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Fisher> {
    opts.validate()?;
    super::check_inputs(spec, ds)?;
    if !supports(net, device) {
        return Err(Error::Other(
            "the CPU Fisher engine runs on the CPU device only".into(),
        ));
    }
    let ad = device.clone().autodiff();
    let net = super::eval_mode(net, &ad, false);
    let classes = spec.num_classes();
    let mut rng = super::draw_rng(opts);
    // one example's records fix the plan and the batch size
    let (x, _) = super::batch(ds, spec, &[0], &ad)?;
    let mut rec = Recorder::default();
    net.forward_with(x, &mut rec);
    let per_example: usize = rec
        .records
        .iter()
        .map(|r| r.in_len * if r.output.is_empty() { 1 } else { 2 })
        .sum();
    let (plan, slots) = plan(&net, &rec.records)?;
    let batch = (RECORD_BUDGET / per_example.max(1)).clamp(1, opts.batch_size);
    // rows carried together: their gradient of the largest layer stays within ROW_BUDGET
    let largest = rec.records.iter().map(|r| r.in_len).max().unwrap_or(1);
    let row_cap = (ROW_BUDGET / largest.max(1)).clamp(1, max_rows.max(1));
    let threads = rayon::current_num_threads().max(1);
    let mut partial: Vec<Sums> = (0..threads)
        .map(|_| slots.iter().map(|&(_, n)| vec![0f32; n]).collect())
        .collect();
    let mut totals: Vec<Vec<f64>> = slots.iter().map(|&(_, n)| vec![0f64; n]).collect();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let mut done = 0;
    for chunk in idx.chunks(batch) {
        let (x, labels) = super::batch(ds, spec, chunk, &ad)?;
        let mut rec = Recorder::default();
        let logits = net.forward_with(x, &mut rec);
        let probs = super::softmax_rows(logits);
        super::check_probs(&probs)?;
        let rows = super::batch_rows(opts, &probs, classes, &labels, &mut rng);
        let n = chunk.len();
        let share = n.div_ceil(threads);
        let recs = &rec.records;
        let plan = &plan;
        partial.par_iter_mut().enumerate().for_each(|(t, sums)| {
            for i in (t * share)..((t + 1) * share).min(n) {
                let p = &probs[i * classes..(i + 1) * classes];
                for group in merge_rows(&rows[i]).chunks(row_cap) {
                    backward(plan, recs, i, cotangents(p, group), group.len(), sums);
                }
            }
        });
        for sums in &mut partial {
            for (tot, s) in totals.iter_mut().zip(sums.iter_mut()) {
                for (t, v) in tot.iter_mut().zip(s.iter_mut()) {
                    *t += *v as f64;
                    *v = 0.0;
                }
            }
        }
        done += n;
        progress(done);
    }
    let sums: HashMap<ParamId, Vec<f64>> = slots.iter().map(|&(id, _)| id).zip(totals).collect();
    Fisher::from_sums(&net, sums, ds.len(), opts)
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, Tensor};

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
            dxs.push(host(&x.grad(&grads).unwrap().reshape([cin, h * w])));
        }
        // the engine's layouts
        let [_, _, ho, wo] = out;
        let po = ho * wo;
        let gv: Vec<Vec<f32>> = gs.iter().map(host).collect();
        let mut g = vec![0f32; cout * rows * po];
        for o in 0..cout {
            for r in 0..rows {
                g[(o * rows + r) * po..(o * rows + r + 1) * po]
                    .copy_from_slice(&gv[r][o * po..(o + 1) * po]);
            }
        }
        let pad = [(pad, pad), (pad, pad)];
        let l = ConvL {
            rec: 0,
            w: host(&conv.weight.val()),
            w_slot: 0,
            b_slot: Some(1),
            cin,
            cout,
            groups,
            win: Window::new([k, k], [stride, stride], [1, 1], pad, [h, w]),
        };
        assert_eq!(l.win.out_hw, [ho, wo]);
        let mut sums: Sums = vec![vec![0f32; l.w.len()], vec![0f32; cout]];
        let dx = conv_step(&l, &host(&x), &g, rows, true, &mut sums);
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            let m = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (j, (u, v)) in a.iter().zip(b).enumerate() {
                assert!((u - v).abs() <= 1e-5 * m, "{what}[{j}]: {u} vs {v}");
            }
        };
        close(&sums[0], &host(&w2.unwrap()), "weight squares");
        close(&sums[1], &host(&b2.unwrap()), "bias squares");
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
