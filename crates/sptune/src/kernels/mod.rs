//! Own CPU kernels under burn. On the CPU (Flex) backend every model's convolutions,
//! BatchNorms (training mode and running statistics) and ReLU6 run here, forward and backward:
//! [`conv`] (with `depthwise` and `winograd`), [`norm`] and [`elementwise`] hold the arithmetic
//! on slices, `ext` makes them burn operations (a backend extension) with their backward
//! passes, [`host`] hands whole CPU tensors to code that updates them in place (the fused SGD
//! update). Other devices and dtypes, shapes the kernels do not take, and any thread holding a
//! [`BurnOps`], use burn's own ops. `window` holds the convolution geometry shared with the
//! Fisher engine, `depthwise_rows` the engine's depthwise passes. Each training kernel is
//! checked against burn's op in `tests/kernels.rs`; `depthwise_rows` against the convolution's
//! direct definition (its unit test) and burn's autodiff (`fisher::cpu::layers`' test).

pub mod conv;
pub(crate) mod depthwise;
pub(crate) mod depthwise_rows;
pub mod elementwise;
mod ext;
pub mod host;
pub mod norm;
pub(crate) mod scratch;
pub(crate) mod simd;
pub(crate) mod window;
pub(crate) mod winograd;

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

use ext::CpuKernels;
pub use ext::{Geometry, Stats};

/// Whether 3x3 stride-1 convolutions with enough tiles may run by Winograd's transforms
/// (`winograd`; on by default). Off, they run as matrix products over unfolded patches like
/// every other convolution: for comparing the two (`benches/conv_kernels.rs`) or ruling the
/// transforms out when chasing a numerical difference.
pub fn set_winograd(on: bool) {
    winograd::enable(on);
}

/// While held, convolutions called from this thread run as products over unfolded patches,
/// never through Winograd's transforms, whatever [`set_winograd`] says. The Fisher holds one:
/// the transforms' float32 error (2e-6 to 1e-5 of a layer's largest value) is harmless to
/// training but, squared into per-example gradients, moved ResNet-18's Fisher by 3.6e-4 of a
/// tensor's largest entry against the batch-1 loop (which never has the tiles for them); direct,
/// 4.5e-7. Other threads are not affected.
#[must_use = "the transforms come back when it is dropped"]
pub struct DirectConvolutions {
    before: bool,
}

impl DirectConvolutions {
    /// Suspends the transforms on this thread until the value is dropped.
    pub fn hold() -> Self {
        DirectConvolutions {
            before: winograd::SUSPENDED.replace(true),
        }
    }
}

impl Drop for DirectConvolutions {
    fn drop(&mut self) {
        winograd::SUSPENDED.set(self.before);
    }
}

thread_local! {
    /// Set on this thread while a [`BurnOps`] is held.
    static BURN_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While held, this thread's convolutions, BatchNorms and ReLU6 run as burn's own ops, as on
/// devices the kernels do not serve, and so does SGD's update ([`crate::train::sgd`]): the kernels' off switch, for measuring what they gain
/// (`sptune bench --burn-ops`, `sptune bench-fisher --burn-loop`) and for ruling them out
/// when chasing a difference. Autodiff records which op ran, so a backward pass follows its
/// forward pass whether or not the hold is still there. Other threads are not affected.
#[must_use = "the own kernels come back when it is dropped"]
pub struct BurnOps {
    before: bool,
}

impl BurnOps {
    /// Routes this thread's layers to burn's ops until the value is dropped.
    pub fn hold() -> Self {
        BurnOps {
            before: BURN_OPS.replace(true),
        }
    }
}

impl Drop for BurnOps {
    fn drop(&mut self) {
        BURN_OPS.set(self.before);
    }
}

/// `m` applied to `x` `[batch, channels, h, w]`, through the own kernels where they apply.
pub fn conv2d(m: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let pad = window::conv_padding(m, h, w);
    let options = ConvOptions::new_with_padding(m.stride, pad, m.dilation, m.groups);
    conv2d_with(x, m.weight.val(), m.bias.as_ref().map(|b| b.val()), options)
}

/// burn's `conv2d` signature, through the own kernels where they apply: on the CPU (Flex)
/// device, f32, shapes that fit.
pub fn conv2d_with(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let g = Geometry {
        stride: options.stride,
        dilation: options.dilation,
        pad: options.padding,
        groups: options.groups,
    };
    let fits = g.conv(x.dims(), weight.dims()).is_some();
    if !(own(&x) && fits && weight.dtype() == DType::F32) {
        return burn_conv2d(x, weight, bias, options);
    }
    let y = Tensor::<4>::from_dispatch(<Dispatch as CpuKernels>::sptune_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        g,
    ));
    match bias {
        Some(b) => {
            let n = b.dims()[0];
            y + b.reshape([1, n, 1, 1])
        }
        None => y,
    }
}

/// `min(max(x, 0), 6)`, through the own kernel on the CPU (Flex) device for f32, else burn's
/// `clamp`.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !own(&x) {
        return x.clamp(0.0, 6.0);
    }
    Tensor::<D>::from_dispatch(<Dispatch as CpuKernels>::sptune_relu6(x.into_dispatch()))
}

/// Whether a [`BurnOps`] is held on this thread.
pub(crate) fn burn_ops_held() -> bool {
    BURN_OPS.get()
}

/// Whether `x`'s op runs through the own kernels: f32 on the CPU (Flex) device, no
/// [`BurnOps`] held.
fn own<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
        && x.dtype() == DType::F32
        && !BURN_OPS.get()
}

/// `m` applied to `x` `[batch, channels, h, w]` as burn's `m.forward` (training mode on an
/// autodiff device with training enabled, else the running statistics), through the own
/// kernels on the CPU (Flex) device: in training mode with burn's update of the running
/// statistics (`momentum` weight on the batch's mean and biased variance).
pub fn batch_norm(m: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !own(&x) {
        return m.forward(x);
    }
    let train = x.device().is_autodiff() && m.training.is_enabled();
    if !train {
        let device = x.device();
        return Tensor::<4>::from_dispatch(<Dispatch as CpuKernels>::sptune_batch_norm(
            x.into_dispatch(),
            m.gamma.val().into_dispatch(),
            m.beta.val().into_dispatch(),
            m.running_mean.value().to_device(&device).into_dispatch(),
            m.running_var.value().to_device(&device).into_dispatch(),
            m.epsilon,
            Stats::Running,
        ));
    }
    let device = x.device();
    let c = x.dims()[1];
    // the batch statistics, read from x where it lies (no copy), outside the graph
    let stats = Tensor::<2>::from_dispatch(<Dispatch as CpuKernels>::sptune_channel_stats(
        x.clone().into_dispatch(),
    ));
    let mean = stats.clone().slice([0..1, 0..c]).reshape([c]);
    let var = stats.slice([1..2, 0..c]).reshape([c]);
    let y = Tensor::<4>::from_dispatch(<Dispatch as CpuKernels>::sptune_batch_norm(
        x.into_dispatch(),
        m.gamma.val().into_dispatch(),
        m.beta.val().into_dispatch(),
        mean.clone().into_dispatch(),
        var.clone().into_dispatch(),
        m.epsilon,
        Stats::Batch,
    ));
    let update = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - m.momentum)
            .add(batch.mul_scalar(m.momentum))
            .detach()
    };
    m.running_mean
        .update(update(m.running_mean.value_sync(), mean));
    m.running_var
        .update(update(m.running_var.value_sync(), var));
    y
}

/// A small deterministic generator (xorshift) for the kernels' test vectors in [-1, 1).
#[cfg(test)]
pub(crate) fn test_numbers(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
