//! Forward hooks: every parametrized layer of a network is applied through a [`Hook`].
//!
//! The plain forward pass uses [`Plain`], which just calls the layer. The Fisher computation
//! ([`crate::fisher`]) uses a hook that records each layer's input and adds a zero "probe"
//! tensor to its output, so that one backward pass yields every example's output gradient.
//! Routing all layers through one trait keeps a single definition of each architecture.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::Tensor;

/// Applies a parametrized layer; may observe its input or alter its output.
pub trait Hook {
    /// A 2-D convolution.
    fn conv2d(&mut self, m: &Conv2d, x: Tensor<4>) -> Tensor<4>;
    /// A BatchNorm over `[batch, channels, h, w]`.
    fn batch_norm(&mut self, m: &BatchNorm, x: Tensor<4>) -> Tensor<4>;
    /// A linear layer over `[batch, features]`.
    fn linear(&mut self, m: &Linear, x: Tensor<2>) -> Tensor<2>;
}

/// The plain forward pass.
pub struct Plain;

impl Hook for Plain {
    fn conv2d(&mut self, m: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        crate::kernels::conv2d(m, x)
    }
    fn batch_norm(&mut self, m: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
        crate::kernels::batch_norm(m, x)
    }
    fn linear(&mut self, m: &Linear, x: Tensor<2>) -> Tensor<2> {
        m.forward(x)
    }
}
