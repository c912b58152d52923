//! Own CPU kernels under burn: the convolution of every model runs here on the CPU (Flex)
//! backend, forward and backward ([`conv`] for the arithmetic, `ext` for burn's operation and
//! its backward pass); other devices, dtypes and shapes the kernels do not take use burn's own
//! `conv2d`. [`window`] holds the geometry shared with the Fisher engine.

pub mod conv;
pub mod elementwise;
mod ext;
pub(crate) mod window;

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::conv::Conv2d;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};

use ext::ConvBackend;
pub use ext::Geometry;

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
    if !(on_cpu(&x) && fits && x.dtype() == DType::F32 && weight.dtype() == DType::F32) {
        return burn_conv2d(x, weight, bias, options);
    }
    let y = Tensor::<4>::from_dispatch(<Dispatch as ConvBackend>::sptune_conv2d(
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
    if !(on_cpu(&x) && x.dtype() == DType::F32) {
        return x.clamp(0.0, 6.0);
    }
    Tensor::<D>::from_dispatch(<Dispatch as ConvBackend>::sptune_relu6(x.into_dispatch()))
}

fn on_cpu<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}
