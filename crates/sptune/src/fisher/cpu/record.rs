//! The forward record of the CPU engine: burn's forward pass through a hook that keeps, for
//! every hooked layer, its input (and BatchNorm's output) for all the examples of a batch.

use burn::module::ParamId;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use burn::tensor::Tensor;

use crate::models::Hook;

/// One hooked layer call: its input (and BatchNorm's output), all examples, on the host.
pub(super) struct Record {
    pub(super) id: ParamId,
    pub(super) input: Vec<f32>,
    /// Input floats per example.
    pub(super) in_len: usize,
    /// Spatial size of the input (`[1, 1]` for a linear layer).
    pub(super) hw: [usize; 2],
    /// BatchNorm only: its output.
    pub(super) output: Vec<f32>,
}

impl Record {
    pub(super) fn input(&self, i: usize) -> &[f32] {
        &self.input[i * self.in_len..(i + 1) * self.in_len]
    }
    pub(super) fn output(&self, i: usize) -> &[f32] {
        &self.output[i * self.in_len..(i + 1) * self.in_len]
    }
}

/// Host values of a tensor as f32.
pub(super) fn host_f32<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 activations")
}

/// The recording hook: burn's forward pass, each hooked layer's call recorded.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) records: Vec<Record>,
}

impl Hook for Recorder {
    fn conv2d(&mut self, m: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        let [_, c, h, w] = x.dims();
        self.records.push(Record {
            id: m.weight.id,
            input: host_f32(&x),
            in_len: c * h * w,
            hw: [h, w],
            output: Vec::new(),
        });
        crate::kernels::conv2d(m, x)
    }

    fn batch_norm(&mut self, m: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
        let [_, c, h, w] = x.dims();
        let y = crate::kernels::batch_norm(m, x.clone());
        self.records.push(Record {
            id: m.gamma.id,
            input: host_f32(&x),
            in_len: c * h * w,
            hw: [h, w],
            output: host_f32(&y),
        });
        y
    }

    fn linear(&mut self, m: &Linear, x: Tensor<2>) -> Tensor<2> {
        let [_, f] = x.dims();
        self.records.push(Record {
            id: m.weight.id,
            input: host_f32(&x),
            in_len: f,
            hw: [1, 1],
            output: Vec::new(),
        });
        m.forward(x)
    }
}
