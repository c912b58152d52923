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

/// The MLP as a registered architecture (`fc1..fcK`; `spec.hidden` gives the hidden sizes).
#[derive(Clone, Copy, Debug)]
pub struct MlpArch;

impl super::arch::Architecture for MlpArch {
    fn name(&self) -> &'static str {
        "mlp"
    }

    fn build(&self, spec: &super::ModelSpec, device: &Device) -> crate::Result<super::Net> {
        let [c, h, w] = spec.input;
        Ok(super::Net::Mlp(Mlp::new(
            c * h * w,
            &spec.hidden,
            spec.num_classes(),
            device,
        )))
    }

    /// Sizes from `fc1.weight`, `fc2.weight`, ...; the input from `fc1.weight`'s columns: a
    /// square gray image (`1 x s x s`), else a square color one (`3 x s x s`), with
    /// normalization left out (mean 0, std 1). Any other width is an error: sptune's batches
    /// are square images.
    fn infer_spec(
        &self,
        shapes: super::arch::Shapes,
        spec: &mut super::ModelSpec,
    ) -> std::result::Result<(), String> {
        let mut k = 1;
        let mut outs = vec![];
        let mut first_in = 0;
        while let Some(s) = shapes(&format!("fc{k}.weight")) {
            if k == 1 {
                first_in = s[1];
            }
            outs.push(s[0]);
            k += 1;
        }
        let classes = outs.pop().ok_or("fc1.weight")?;
        let square = |n: usize| (1..=n).take_while(|s| s * s <= n).find(|s| s * s == n);
        let channels = match (square(first_in), first_in % 3) {
            (Some(_), _) => 1,
            (None, 0) if square(first_in / 3).is_some() => 3,
            _ => {
                return Err(format!(
                    "fc1.weight takes {first_in} inputs, not the pixels of a square image \
                     with 1 or 3 channels"
                ));
            }
        };
        let side = square(first_in / channels).unwrap_or(1);
        spec.hidden = outs;
        spec.input = [channels, side, side];
        spec.mean = vec![0.0; channels];
        spec.std = vec![1.0; channels];
        spec.classes = (0..classes).map(|i| i.to_string()).collect();
        Ok(())
    }

    fn head_names(&self, spec: &super::ModelSpec) -> Vec<String> {
        let k = spec.hidden.len() + 1;
        vec![format!("fc{k}.weight"), format!("fc{k}.bias")]
    }

    /// `fcK` is stage K (no stem).
    fn stage_of(&self, _spec: &super::ModelSpec, name: &str) -> usize {
        let first = name.split('.').next().unwrap_or("");
        first
            .strip_prefix("fc")
            .and_then(|k| k.parse().ok())
            .unwrap_or(usize::MAX)
    }

    fn stages(&self, spec: &super::ModelSpec) -> usize {
        spec.hidden.len()
    }

    fn bn_momentum(&self) -> Option<f64> {
        None
    }

    /// Weights and biases of every layer.
    fn param_count(&self, spec: &super::ModelSpec) -> Option<u128> {
        let [c, h, w] = spec.input.map(|v| v as u128);
        let mut sizes = vec![c * h * w];
        sizes.extend(spec.hidden.iter().map(|&v| v as u128));
        sizes.push(spec.num_classes() as u128);
        Some(sizes.windows(2).map(|p| (p[0] + 1) * p[1]).sum())
    }
}
