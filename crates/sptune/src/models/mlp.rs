//! Multi-layer perceptron for flat inputs: `fc1` -> ReLU -> ... -> `fcK`.
//!
//! Parameter names follow a PyTorch module with attributes `fc1..fcK` (`[out, in]` weights in
//! the checkpoint; burn stores `[in, out]` and [`crate::params`] transposes on I/O). With no
//! hidden layer the model is linear softmax regression.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::hook::{Hook, Plain};

/// The MLP; `layers[i]` is saved as `fc{i+1}`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Linear layers, input first; the last one is the head.
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// `inputs` -> hidden sizes -> `num_classes`.
    pub fn new(inputs: usize, hidden: &[usize], num_classes: usize, device: &Device) -> Self {
        let mut sizes = vec![inputs];
        sizes.extend_from_slice(hidden);
        sizes.push(num_classes);
        let layers = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Mlp { layers }
    }

    /// Logits for an image batch [b, c, h, w] (flattened).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, &mut Plain)
    }

    /// [`Mlp::forward`] with every layer applied through `h`.
    pub fn forward_with(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<2> {
        let mut x: Tensor<2> = x.flatten(1, 3);
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            x = h.linear(l, x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}
