//! ResNet-18/34/50/101 with torchvision's structure and parameter names.
//!
//! Field names match torchvision's `state_dict` keys: `conv1`, `bn1`, `layer1.0.conv1`,
//! `layer1.0.downsample.0` (conv) / `.1` (BatchNorm), `fc`. BatchNorm's `gamma`/`beta` are
//! renamed to `weight`/`bias` by [`crate::params`]. Options beyond torchvision: `width` (base
//! channel count, 64 in torchvision) and `small_stem` (3x3 stride-1 conv, no max-pool) for
//! 28-32 px inputs.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::hook::{Hook, Plain};

/// Block type and stage depths of the ResNet variants.
pub fn layout(depth: usize) -> Option<(bool, [usize; 4])> {
    // (bottleneck, blocks per stage)
    match depth {
        18 => Some((false, [2, 2, 2, 2])),
        34 => Some((false, [3, 4, 6, 3])),
        50 => Some((true, [3, 4, 6, 3])),
        101 => Some((true, [3, 4, 23, 3])),
        _ => None,
    }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = k / 2;
    let padding = PaddingConfig2d::Explicit(pad, pad, pad, pad);
    super::kaiming_conv([cin, cout], k, stride, 1, padding, device)
}

/// torchvision's BatchNorm momentum (PyTorch convention).
pub const BN_MOMENTUM: f64 = 0.1;

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c)
        .with_epsilon(1e-5)
        .with_momentum(BN_MOMENTUM)
        .init(device)
}

/// A residual block: basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1; stride on the 3x3
/// as in torchvision's "ResNet v1.5").
#[derive(Module, Debug)]
pub struct Block {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) conv3: Option<Conv2d>,
    pub(crate) bn3: Option<BatchNorm>,
    pub(crate) downsample: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self.bn1, &mut self.bn2];
        v.extend(self.bn3.as_mut());
        v.extend(self.downsample.as_mut().map(|(_, b)| b));
        v
    }

    fn new(cin: usize, planes: usize, stride: usize, bottleneck: bool, device: &Device) -> Self {
        let expansion = if bottleneck { 4 } else { 1 };
        let cout = planes * expansion;
        let downsample = (stride != 1 || cin != cout)
            .then(|| (conv(cin, cout, 1, stride, device), bn(cout, device)));
        if bottleneck {
            Block {
                conv1: conv(cin, planes, 1, 1, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, stride, device),
                bn2: bn(planes, device),
                conv3: Some(conv(planes, cout, 1, 1, device)),
                bn3: Some(bn(cout, device)),
                downsample,
            }
        } else {
            Block {
                conv1: conv(cin, planes, 3, stride, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, 1, device),
                bn2: bn(planes, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<4> {
        let identity = match &self.downsample {
            Some((c, b)) => {
                let z = h.conv2d(c, x.clone());
                h.batch_norm(b, z)
            }
            None => x.clone(),
        };
        let z = h.conv2d(&self.conv1, x);
        let mut y = relu(h.batch_norm(&self.bn1, z));
        let z = h.conv2d(&self.conv2, y);
        y = h.batch_norm(&self.bn2, z);
        if let (Some(c3), Some(b3)) = (&self.conv3, &self.bn3) {
            let z = h.conv2d(c3, relu(y));
            y = h.batch_norm(b3, z);
        }
        relu(y + identity)
    }
}

/// torchvision-compatible ResNet.
#[derive(Module, Debug)]
pub struct ResNet {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) maxpool: Option<MaxPool2d>,
    pub(crate) layer1: Vec<Block>,
    pub(crate) layer2: Vec<Block>,
    pub(crate) layer3: Vec<Block>,
    pub(crate) layer4: Vec<Block>,
    avgpool: AdaptiveAvgPool2d,
    /// The classification head (`fc.weight`, `fc.bias`).
    pub fc: Linear,
}

impl ResNet {
    /// Every BatchNorm, stem first.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self.bn1];
        for stage in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ] {
            for b in stage.iter_mut() {
                v.extend(b.batch_norms_mut());
            }
        }
        v
    }

    /// Builds a freshly initialized ResNet of the given depth (18, 34, 50, 101).
    pub fn new(
        depth: usize,
        in_channels: usize,
        num_classes: usize,
        width: usize,
        small_stem: bool,
        device: &Device,
    ) -> Option<Self> {
        let (bottleneck, blocks) = layout(depth)?;
        Some(Self::with_layout(
            bottleneck,
            blocks,
            in_channels,
            num_classes,
            width,
            small_stem,
            device,
        ))
    }

    /// A ResNet of any block type and stage depths (`new`'s variants are `layout`'s).
    pub fn with_layout(
        bottleneck: bool,
        blocks: [usize; 4],
        in_channels: usize,
        num_classes: usize,
        width: usize,
        small_stem: bool,
        device: &Device,
    ) -> Self {
        let expansion = if bottleneck { 4 } else { 1 };
        let (conv1, maxpool) = if small_stem {
            (conv(in_channels, width, 3, 1, device), None)
        } else {
            let pool = torchvision_max_pool();
            (conv(in_channels, width, 7, 2, device), Some(pool))
        };
        let mut cin = width;
        let mut stage = |planes: usize, n: usize, stride: usize| {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let s = if i == 0 { stride } else { 1 };
                v.push(Block::new(cin, planes, s, bottleneck, device));
                cin = planes * expansion;
            }
            v
        };
        let layer1 = stage(width, blocks[0], 1);
        let layer2 = stage(width * 2, blocks[1], 2);
        let layer3 = stage(width * 4, blocks[2], 2);
        let layer4 = stage(width * 8, blocks[3], 2);
        ResNet {
            conv1,
            bn1: bn(width, device),
            maxpool,
            layer1,
            layer2,
            layer3,
            layer4,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(width * 8 * expansion, num_classes).init(device),
        }
    }

    /// Features before the head: [batch, channels].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        self.features_with(x, &mut Plain)
    }

    /// [`ResNet::features`] with every layer applied through `h`.
    pub fn features_with(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<2> {
        let x = self.prefix_with(x, 0, h);
        self.features_after(x, 0, h)
    }

    fn stages(&self) -> [&Vec<Block>; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// The stem and stages `1..=k`: what `--freeze k` freezes.
    pub fn prefix_with(&self, x: Tensor<4>, k: usize, h: &mut dyn Hook) -> Tensor<4> {
        let z = h.conv2d(&self.conv1, x);
        let mut x = relu(h.batch_norm(&self.bn1, z));
        if let Some(p) = &self.maxpool {
            x = p.forward(x);
        }
        for stage in &self.stages()[..k.min(4)] {
            for b in stage.iter() {
                x = b.forward(x, h);
            }
        }
        x
    }

    /// Features from the output of [`ResNet::prefix_with`]`(.., k, ..)`.
    fn features_after(&self, mut x: Tensor<4>, k: usize, h: &mut dyn Hook) -> Tensor<2> {
        for stage in &self.stages()[k.min(4)..] {
            for b in stage.iter() {
                x = b.forward(x, h);
            }
        }
        self.avgpool.forward(x).flatten(1, 3)
    }

    /// Logits from the output of [`ResNet::prefix_with`]`(.., k, ..)`.
    pub fn suffix_with(&self, x: Tensor<4>, k: usize, h: &mut dyn Hook) -> Tensor<2> {
        let f = self.features_after(x, k, h);
        h.linear(&self.fc, f)
    }

    /// Logits: [batch, classes].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, &mut Plain)
    }

    /// [`ResNet::forward`] with every layer applied through `h`.
    pub fn forward_with(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<2> {
        let f = self.features_with(x, h);
        h.linear(&self.fc, f)
    }
}

/// torchvision's stem pooling: 3x3, stride 2, padding 1.
fn torchvision_max_pool() -> MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init()
}

/// A torchvision ResNet of one depth, as a registered architecture.
#[derive(Clone, Copy, Debug)]
pub struct ResNetArch {
    /// `resnet18`, ...
    pub name: &'static str,
    /// 18, 34, 50 or 101.
    pub depth: usize,
}

/// The registered ResNets.
pub const ARCHS: [ResNetArch; 4] = [
    ResNetArch {
        name: "resnet18",
        depth: 18,
    },
    ResNetArch {
        name: "resnet34",
        depth: 34,
    },
    ResNetArch {
        name: "resnet50",
        depth: 50,
    },
    ResNetArch {
        name: "resnet101",
        depth: 101,
    },
];

impl super::arch::Architecture for ResNetArch {
    fn name(&self) -> &'static str {
        self.name
    }

    fn build(&self, spec: &super::ModelSpec, device: &Device) -> crate::Result<super::Net> {
        let net = ResNet::new(
            self.depth,
            spec.input[0],
            spec.num_classes(),
            spec.width,
            spec.small_stem,
            device,
        )
        .ok_or_else(|| {
            crate::Error::invalid("--arch", format!("no ResNet of depth {}", self.depth))
        })?;
        Ok(super::Net::ResNet(net))
    }

    /// Width from `conv1.weight`, stem from its kernel size, classes from `fc.weight`.
    fn infer_spec(
        &self,
        shapes: super::arch::Shapes,
        spec: &mut super::ModelSpec,
    ) -> std::result::Result<(), String> {
        let c1 = shapes("conv1.weight").ok_or("conv1.weight")?;
        let fc = shapes("fc.weight").ok_or("fc.weight")?;
        spec.width = c1[0];
        spec.small_stem = c1[2] == 3;
        spec.input[0] = c1[1];
        if c1[1] == 1 {
            spec.mean = vec![0.5];
            spec.std = vec![0.5];
        }
        spec.classes = (0..fc[0]).map(|i| i.to_string()).collect();
        Ok(())
    }

    fn head_names(&self, _spec: &super::ModelSpec) -> Vec<String> {
        vec!["fc.weight".into(), "fc.bias".into()]
    }

    /// The stem is 0, `layerK` is K.
    fn stage_of(&self, _spec: &super::ModelSpec, name: &str) -> usize {
        let first = name.split('.').next().unwrap_or("");
        match first.strip_prefix("layer") {
            Some(k) => k.parse().unwrap_or(usize::MAX),
            None => 0,
        }
    }

    fn stages(&self, _spec: &super::ModelSpec) -> usize {
        4
    }

    fn bn_momentum(&self) -> Option<f64> {
        Some(BN_MOMENTUM)
    }

    fn validate(&self, spec: &super::ModelSpec) -> crate::Result<()> {
        if spec.width == 0 {
            return Err(crate::Error::invalid("--width", "must be positive"));
        }
        Ok(())
    }

    fn param_count(&self, spec: &super::ModelSpec) -> Option<u128> {
        param_count(
            self.depth,
            spec.input[0],
            spec.num_classes(),
            spec.width,
            spec.small_stem,
        )
    }
}

/// The values (parameters and BatchNorm buffers) of [`ResNet::new`]'s network, counted from
/// its structure without building it.
pub fn param_count(
    depth: usize,
    in_channels: usize,
    num_classes: usize,
    width: usize,
    small_stem: bool,
) -> Option<u128> {
    let (bottleneck, blocks) = layout(depth)?;
    let [cin0, classes, w] = [in_channels, num_classes, width].map(|v| v as u128);
    let expansion = if bottleneck { 4 } else { 1 };
    // weight, bias, running mean and variance, plus num_batches_tracked
    let bn = |c: u128| 4 * c + 1;
    let k = if small_stem { 3 } else { 7 };
    let mut n = cin0 * w * k * k + bn(w);
    let mut cin = w;
    for (i, &blocks) in blocks.iter().enumerate() {
        let planes = w << i;
        let cout = planes * expansion;
        for b in 0..blocks {
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            n += if bottleneck {
                cin * planes + planes * planes * 9 + planes * cout + 2 * bn(planes) + bn(cout)
            } else {
                cin * planes * 9 + planes * planes * 9 + 2 * bn(planes)
            };
            if stride != 1 || cin != cout {
                n += cin * cout + bn(cout);
            }
            cin = cout;
        }
    }
    Some(n + cin * classes + classes)
}
