//! A plain stack of layers, for architectures registered outside sptune
//! ([`super::registry::register`]): convolutions, BatchNorm, ReLU, max-pooling, global average
//! pooling and linear layers, applied in order (the input is flattened before the first
//! linear layer). Parameters are named `seq.{i}.weight`, `seq.{i}.bias` (BatchNorm also
//! `running_mean` / `running_var`), `i` the layer's index. Every parametrized layer goes
//! through the [`Hook`], so the Fisher's probe path and the batch-1 loop work on it.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};

use super::hook::Hook;

/// How one layer is made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerSpec {
    /// `k`x`k` convolution, `[in, out]` channels, stride, padding `k / 2`, with bias.
    Conv {
        /// Input and output channels.
        channels: [usize; 2],
        /// Kernel side.
        k: usize,
        /// Stride.
        stride: usize,
    },
    /// BatchNorm over the channels, with the given momentum (PyTorch convention).
    Norm {
        /// Channels.
        channels: usize,
        /// Momentum of the running statistics.
        momentum: f64,
    },
    /// ReLU.
    Relu,
    /// `k`x`k` max-pooling with stride `k`.
    MaxPool {
        /// Window side.
        k: usize,
    },
    /// Global average pooling to 1x1.
    GlobalAvgPool,
    /// Linear layer `[in, out]` (the input is flattened first).
    Linear {
        /// Input and output features.
        features: [usize; 2],
    },
}

/// One layer of a [`Sequential`].
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Layer {
    /// A convolution.
    Conv(Conv2d),
    /// A BatchNorm.
    Norm(BatchNorm),
    /// A ReLU.
    Relu(Relu),
    /// A max-pooling.
    MaxPool(MaxPool2d),
    /// Global average pooling.
    GlobalAvgPool(AdaptiveAvgPool2d),
    /// A linear layer.
    Linear(Linear),
}

/// The stack.
#[derive(Module, Debug)]
pub struct Sequential {
    /// The layers, input first.
    pub seq: Vec<Layer>,
}

impl Sequential {
    /// Builds the layers on `device` (Kaiming initialization for convolutions, burn's
    /// defaults otherwise).
    pub fn new(layers: &[LayerSpec], device: &Device) -> Self {
        let seq = layers
            .iter()
            .map(|l| match *l {
                LayerSpec::Conv {
                    channels,
                    k,
                    stride,
                } => Layer::Conv(
                    Conv2dConfig::new(channels, [k, k])
                        .with_stride([stride, stride])
                        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                        .init(device),
                ),
                LayerSpec::Norm { channels, momentum } => Layer::Norm(
                    BatchNormConfig::new(channels)
                        .with_momentum(momentum)
                        .init(device),
                ),
                LayerSpec::Relu => Layer::Relu(Relu::new()),
                LayerSpec::MaxPool { k } => {
                    Layer::MaxPool(MaxPool2dConfig::new([k, k]).with_strides([k, k]).init())
                }
                LayerSpec::GlobalAvgPool => {
                    Layer::GlobalAvgPool(AdaptiveAvgPool2dConfig::new([1, 1]).init())
                }
                LayerSpec::Linear { features } => {
                    Layer::Linear(LinearConfig::new(features[0], features[1]).init(device))
                }
            })
            .collect();
        Sequential { seq }
    }

    /// Every BatchNorm, input first.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        self.seq
            .iter_mut()
            .filter_map(|l| match l {
                Layer::Norm(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// Logits for normalized images, every parametrized layer through `h`.
    pub fn forward_with(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<2> {
        let mut x4 = Some(x);
        let mut x2: Option<Tensor<2>> = None;
        for l in &self.seq {
            match l {
                Layer::Linear(m) => {
                    let flat = match (x4.take(), x2.take()) {
                        (Some(t), _) => t.flatten(1, 3),
                        (None, Some(t)) => t,
                        (None, None) => unreachable!("one of the two is set"),
                    };
                    x2 = Some(h.linear(m, flat));
                }
                Layer::Relu(m) => match (x4.take(), x2.take()) {
                    (Some(t), _) => x4 = Some(m.forward(t)),
                    (None, Some(t)) => x2 = Some(m.forward(t)),
                    (None, None) => unreachable!("one of the two is set"),
                },
                other => {
                    let t = x4
                        .take()
                        .expect("image layers come before the first linear layer");
                    x4 = Some(match other {
                        Layer::Conv(m) => h.conv2d(m, t),
                        Layer::Norm(m) => h.batch_norm(m, t),
                        Layer::MaxPool(m) => m.forward(t),
                        Layer::GlobalAvgPool(m) => m.forward(t),
                        _ => unreachable!("handled above"),
                    });
                }
            }
        }
        x2.unwrap_or_else(|| x4.expect("a layer output").flatten(1, 3))
    }
}
