//! The convolution of [`super::conv`] as an operation of burn: a backend extension with a Flex
//! implementation (the forward kernel) and an autodiff implementation whose backward pass calls
//! the two gradient kernels, for the inputs that need them only (a frozen layer's weight
//! gradient and the network input's gradient are never computed).

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::{AutodiffBackend, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::{DType, TensorData};

use super::conv::{self, Conv};
use super::norm;

/// Stride, dilation, padding `((top, bottom), (left, right))` and groups of a convolution.
#[derive(Clone, Debug)]
pub struct Geometry {
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Dilation (rows, columns).
    pub dilation: [usize; 2],
    /// Padding `((top, bottom), (left, right))`.
    pub pad: [(usize, usize); 2],
    /// Channel groups.
    pub groups: usize,
}

impl Geometry {
    /// The shapes of the convolution of `x` with `w`, when the kernels take them.
    pub fn conv(&self, x: [usize; 4], w: [usize; 4]) -> Option<Conv> {
        Conv::new(x, w, self.stride, self.dilation, self.pad, self.groups)
    }
}

/// Where a BatchNorm's statistics come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stats {
    /// The batch's own mean and biased variance (training mode).
    Batch,
    /// The running averages, constants of the step (eval mode, `--bn frozen`).
    Running,
}

#[backend_extension(Flex, Autodiff)]
pub trait CpuKernels: burn::backend::Backend {
    /// A bias-free 2-D convolution, NCHW, f32.
    fn sptune_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self>;

    /// `min(max(x, 0), 6)` elementwise, f32 (its gradient passes where `0 < x < 6`).
    fn sptune_relu6(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The mean (row 0) and biased variance (row 1) of each channel of `x` `[batch, channels,
    /// h, w]`: `[2, channels]`, outside the autodiff graph.
    fn sptune_channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// BatchNorm of `x` `[batch, channels, h, w]` with the statistics `mean`, `var`: the
    /// batch's, computed from `x` (`stats` = [`Stats::Batch`]: the gradient accounts for their
    /// dependence on `x`), or constants ([`Stats::Running`]).
    fn sptune_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        stats: Stats,
    ) -> FloatTensor<Self>;
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let d = t.layout().shape();
    [d[0], d[1], d[2], d[3]]
}

/// The f32 values of `t` in row-major order (a copy only when `t` is not contiguous).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("f32").to_vec()),
    }
}

/// `t`'s values to overwrite in place, when `t` is f32, contiguous from its buffer's start and
/// that buffer's only owner (an op's output no one else holds: evaluation, untracked layers).
fn exclusive(t: &mut FlexTensor) -> Option<&mut [f32]> {
    let n = t.layout().num_elements();
    if t.dtype() != DType::F32 || t.layout().contiguous_offsets() != Some((0, n)) {
        return None;
    }
    t.try_storage_mut::<f32>().map(|s| &mut s[..n])
}

fn tensor(v: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn shapes(x: &FlexTensor, w: &FlexTensor, g: &Geometry) -> Conv {
    debug_assert_eq!(x.dtype(), DType::F32);
    g.conv(dims4(x), dims4(w))
        .expect("sptune_conv2d called on shapes that super::conv2d checked")
}

impl CpuKernels for Flex {
    fn sptune_conv2d(x: FlexTensor, weight: FlexTensor, geometry: Geometry) -> FlexTensor {
        let c = shapes(&x, &weight, &geometry);
        let y = conv::forward(&c, &values(&x), &values(&weight));
        tensor(y, c.out_shape())
    }

    fn sptune_relu6(mut x: FlexTensor) -> FlexTensor {
        if let Some(v) = exclusive(&mut x) {
            super::elementwise::relu6_in_place(v);
            return x;
        }
        let shape = x.layout().shape().clone();
        let y = super::elementwise::relu6(&values(&x));
        FlexTensor::from_data(TensorData::new(y, shape))
    }

    fn sptune_channel_stats(x: FlexTensor) -> FlexTensor {
        let dims = dims4(&x);
        let (mut v, var) = norm::channel_stats(&values(&x), bn_dims(dims));
        v.extend(var);
        FlexTensor::from_data(TensorData::new(v, [2, dims[1]]))
    }

    fn sptune_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        eps: f64,
        stats: Stats,
    ) -> FlexTensor {
        let dims = dims4(&x);
        let (stats_of, affine) = (
            (&values(&mean)[..], &values(&var)[..]),
            (&values(&gamma)[..], &values(&beta)[..]),
        );
        let centered = stats == Stats::Running;
        let mut x = x;
        if let Some(v) = exclusive(&mut x) {
            norm::forward_in_place(v, bn_dims(dims), stats_of, affine, eps, centered);
            return x;
        }
        let y = norm::forward(&values(&x), bn_dims(dims), stats_of, affine, eps, centered);
        tensor(y, dims)
    }
}

fn bn_dims([b, c, h, w]: [usize; 4]) -> norm::Dims {
    norm::Dims {
        batch: b,
        channels: c,
        plane: h * w,
    }
}

fn tensor1(v: Vec<f32>) -> FlexTensor {
    let n = v.len();
    FlexTensor::from_data(TensorData::new(v, [n]))
}

#[derive(Debug)]
struct BatchNormBackward;

/// `x`, `γ`, mean, variance, ε, where the statistics come from.
type BnState = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f64, Stats);

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BnState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_g, node_b] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (x, gamma, mean, var, eps, stats) = ops.state;
        let dims = dims4(&x);
        let (x, gy, mean, var, gamma) = (
            values(&x),
            values(&gy),
            values(&mean),
            values(&var),
            values(&gamma),
        );
        let stats_of = (&mean[..], &var[..]);
        let (gx, affine) = match stats {
            Stats::Batch => {
                let (gx, dg, db) = norm::backward(&x, &gy, bn_dims(dims), stats_of, &gamma, eps);
                (gx, Some((dg, db)))
            }
            Stats::Running => {
                let affine = node_g.is_some() || node_b.is_some();
                norm::backward_running(&x, &gy, bn_dims(dims), stats_of, &gamma, eps, affine)
            }
        };
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(gx, dims));
        }
        if let Some((dgamma, dbeta)) = affine {
            if let Some(node) = node_g {
                grads.register::<Flex>(node.id, tensor1(dgamma));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, tensor1(dbeta));
            }
        }
    }
}

#[derive(Debug)]
struct Relu6Backward;

impl Backward<Flex, 1> for Relu6Backward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            let x = ops.state;
            let shape = x.layout().shape().clone();
            let gx = super::elementwise::relu6_grad(&values(&x), &values(&gy));
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(gx, shape)));
        }
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (FlexTensor, FlexTensor, Geometry);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (x, w, geometry) = ops.state;
        let c = shapes(&x, &w, &geometry);
        let gy = values(&gy);
        if let Some(node) = node_x {
            let gx = conv::input_grad(&c, &values(&w), &gy);
            grads.register::<Flex>(node.id, tensor(gx, dims4(&x)));
        }
        if let Some(node) = node_w {
            let gw = conv::weight_grad(&c, &values(&x), &gy);
            grads.register::<Flex>(node.id, tensor(gw, dims4(&w)));
        }
    }
}

impl<C: CheckpointStrategy> CpuKernels for Autodiff<Flex, C> {
    fn sptune_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        geometry: Geometry,
    ) -> FloatTensor<Self> {
        match ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
                let y = Flex::sptune_conv2d(xp.clone(), wp.clone(), geometry.clone());
                prep.finish((xp, wp, geometry), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::sptune_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                geometry,
            )),
        }
    }

    fn sptune_relu6(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match Relu6Backward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let xp = x.primitive().clone();
                let y = Flex::sptune_relu6(xp.clone());
                prep.finish(xp, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::sptune_relu6(x.into_primitive())),
        }
    }

    fn sptune_channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(Flex::sptune_channel_stats(x.into_primitive()))
    }

    fn sptune_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        stats: Stats,
    ) -> FloatTensor<Self> {
        let (mean, var) = (mean.into_primitive(), var.into_primitive());
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, gp) = (x.primitive().clone(), gamma.primitive().clone());
                let y = Flex::sptune_batch_norm(
                    xp.clone(),
                    gp.clone(),
                    beta.into_primitive(),
                    mean.clone(),
                    var.clone(),
                    eps,
                    stats,
                );
                prep.finish((xp, gp, mean, var, eps, stats), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::sptune_batch_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                mean,
                var,
                eps,
                stats,
            )),
        }
    }
}
