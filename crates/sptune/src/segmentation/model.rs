//! A segmentation network: a ResNet backbone (the classification network without its pooling
//! and head) and torchvision's FCN or DeepLab-v3 head, logits upsampled to the input size.
//!
//! Names follow torchvision's segmentation models, so a torchvision `fcn_resnet*` or
//! `deeplabv3_resnet*` state dict loads as it is: `backbone.conv1`, `backbone.layer1.0.conv1`,
//! ... and the head's `classifier.*` ([`Head`]).
//!
//! **Dilation** ([`Backbone::dilate`]) replaces the stride of later stages by dilation as
//! torchvision's `replace_stride_with_dilation` does: in a dilated stage the first block's
//! strided convolution gets stride 1 and the dilation reached so far, its shortcut stride 1,
//! and every later 3x3 convolution the stage's doubled dilation (padding equal to the
//! dilation). `fcn_resnet50` dilates stages 3 and 4: output stride 8. torchvision refuses
//! dilation in basic blocks (ResNet-18/34); sptune applies the same rule to both of their 3x3
//! convolutions. The small stem (3x3 stride 1, no max-pool) already gives stride 8 after stage
//! 4 without dilation.
//!
//! The forward pass: backbone, head, then bilinear upsampling to the input's size with
//! half-pixel centres (PyTorch's `align_corners=False`), so any input size, odd ones included,
//! gives logits of that size.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, PaddingConfig2d, Relu};
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use crate::models::efficientnet::{EfficientNetLite, MbConv, STAGES, stage_of_block};
use crate::models::hook::Plain;
use crate::models::resnet::{BN_MOMENTUM, Block, ResNet};

/// A segmentation network's backbone: a classification network without its pooling and head,
/// under the classification network's own names (after `backbone.`).
// one backbone per network, built once: the variants' sizes do not matter
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    /// A ResNet (torchvision's names: `backbone.conv1`, `backbone.layer1.0.conv1`, ...).
    ResNet(ResNetBackbone),
    /// EfficientNet-Lite0 up to its 1x1 head convolution (1280 channels; the names of
    /// [`crate::models::efficientnet`]: `backbone._conv_stem`, `backbone._blocks.N.*`,
    /// `backbone._conv_head`, `backbone._bn1`).
    EfficientNet(LiteBackbone),
}

/// A ResNet without its average pooling and classification head.
#[derive(Module, Debug)]
pub struct ResNetBackbone {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: Option<MaxPool2d>,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
}

/// EfficientNet-Lite0 without its pooling and classifier.
#[derive(Module, Debug)]
pub struct LiteBackbone {
    _conv_stem: Conv2d,
    _bn0: BatchNorm,
    _blocks: Vec<MbConv>,
    _conv_head: Conv2d,
    _bn1: BatchNorm,
}

impl Backbone {
    /// The backbone of a classification ResNet (its weights kept, its head dropped).
    pub fn from_resnet(r: ResNet) -> Backbone {
        Backbone::ResNet(ResNetBackbone {
            conv1: r.conv1,
            bn1: r.bn1,
            maxpool: r.maxpool,
            layer1: r.layer1,
            layer2: r.layer2,
            layer3: r.layer3,
            layer4: r.layer4,
        })
    }

    /// The backbone of a classification EfficientNet-Lite0 (its weights kept, its pooling and
    /// `_fc` dropped).
    pub fn from_efficientnet(e: EfficientNetLite) -> Backbone {
        Backbone::EfficientNet(LiteBackbone {
            _conv_stem: e._conv_stem,
            _bn0: e._bn0,
            _blocks: e._blocks,
            _conv_head: e._conv_head,
            _bn1: e._bn1,
        })
    }

    /// The stage of a segmentation network's tensor, by name, as `--freeze` counts them: 0
    /// for the stem (`backbone.conv1`, `backbone.bn1`; `backbone._conv_stem`, `backbone._bn0`),
    /// `k` for `backbone.layerk.*` and for the blocks of EfficientNet's stage `k` (1-7), 8 for
    /// its head convolution; `None` outside the backbone (the head).
    pub fn stage_of(name: &str) -> Option<usize> {
        let rest = name.strip_prefix("backbone.")?;
        let first = rest.split('.').next()?;
        match first {
            "conv1" | "bn1" if rest.len() > first.len() => Some(0),
            "_conv_stem" | "_bn0" => Some(0),
            "_conv_head" | "_bn1" => Some(STAGES.len() + 1),
            "_blocks" => {
                let i: usize = rest.split('.').nth(1)?.parse().ok()?;
                Some(stage_of_block(i))
            }
            _ => {
                let k: usize = first.strip_prefix("layer")?.parse().ok()?;
                (1..=4).contains(&k).then_some(k)
            }
        }
    }

    /// How many stages `--freeze` can take: 4 for a ResNet, 8 for EfficientNet-Lite0 (its
    /// seven stages and the head convolution).
    pub fn stages(&self) -> usize {
        match self {
            Backbone::ResNet(_) => 4,
            Backbone::EfficientNet(_) => STAGES.len() + 1,
        }
    }

    /// Channels of the output.
    pub fn out_channels(&self) -> usize {
        match self {
            Backbone::ResNet(r) => {
                let last = r.layer4.last().expect("a ResNet stage has blocks");
                let conv = last.conv3.as_ref().unwrap_or(&last.conv2);
                conv.weight.dims()[0]
            }
            Backbone::EfficientNet(e) => e._conv_head.weight.dims()[0],
        }
    }

    /// The last three striding stages (`which[0..3]`; ResNet: stages 2, 3, 4; EfficientNet:
    /// stages 3, 4, 6) with their stride replaced by dilation. Stages must be dilated from the
    /// last backwards (`[false, true, true]` halves the output stride twice, `[false, false,
    /// true]` once).
    ///
    /// ResNet follows torchvision's `replace_stride_with_dilation`: in a dilated stage the
    /// first block's strided convolution gets stride 1 and the dilation reached so far, its
    /// shortcut stride 1, and every later 3x3 convolution the stage's doubled dilation
    /// (padding equal to the dilation). EfficientNet follows torchvision's dilated
    /// MobileNet-V3: every depthwise convolution from the first dilated stage on gets the
    /// dilation reached at its stage (doubled at each dilated stage), stride 1 in place of 2,
    /// and the symmetric padding `dilation · (k − 1) / 2` (TensorFlow's "SAME" at stride 1).
    pub fn dilate(self, which: [bool; 3]) -> Backbone {
        match self {
            Backbone::ResNet(r) => Backbone::ResNet(r.dilate(which)),
            Backbone::EfficientNet(e) => Backbone::EfficientNet(e.dilate(which)),
        }
    }

    /// EfficientNet: block `i`'s depthwise convolution as `(stride, dilation, padding)`, the
    /// padding when explicit and symmetric (`None`: TensorFlow's "SAME"); `None` for a ResNet
    /// or a block that does not exist. For checking the dilation rule.
    pub fn depthwise(&self, i: usize) -> Option<(usize, usize, Option<usize>)> {
        let Backbone::EfficientNet(e) = self else {
            return None;
        };
        let c = &e._blocks.get(i)?._depthwise_conv;
        let pad = match c.padding {
            PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => Some(t),
            _ => None,
        };
        Some((c.stride[0], c.dilation[0], pad))
    }

    /// The output `[batch, channels, h', w']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = &mut Plain;
        match self {
            Backbone::ResNet(r) => {
                let z = crate::kernels::conv2d(&r.conv1, x);
                let mut x = relu(crate::kernels::batch_norm(&r.bn1, z));
                if let Some(p) = &r.maxpool {
                    x = p.forward(x);
                }
                for stage in [&r.layer1, &r.layer2, &r.layer3, &r.layer4] {
                    for b in stage {
                        x = b.forward(x, h);
                    }
                }
                x
            }
            Backbone::EfficientNet(e) => {
                let z = crate::kernels::conv2d(&e._conv_stem, x);
                let mut x = crate::kernels::relu6(crate::kernels::batch_norm(&e._bn0, z));
                for b in &e._blocks {
                    x = b.forward(x, h);
                }
                let z = crate::kernels::conv2d(&e._conv_head, x);
                crate::kernels::relu6(crate::kernels::batch_norm(&e._bn1, z))
            }
        }
    }
}

impl ResNetBackbone {
    fn dilate(mut self, which: [bool; 3]) -> ResNetBackbone {
        let mut dilation = 1;
        for (stage, on) in [&mut self.layer2, &mut self.layer3, &mut self.layer4]
            .into_iter()
            .zip(which)
        {
            let previous = dilation;
            if on {
                dilation *= 2;
            }
            for (i, b) in stage.iter_mut().enumerate() {
                let bottleneck = b.conv3.is_some();
                if i == 0 && on {
                    // the strided convolution of the first block, and its shortcut
                    let strided = if bottleneck {
                        &mut b.conv2
                    } else {
                        &mut b.conv1
                    };
                    set_dilation(strided, previous);
                    strided.stride = [1, 1];
                    if let Some((c, _)) = b.downsample.as_mut() {
                        c.stride = [1, 1];
                    }
                    if !bottleneck {
                        set_dilation(&mut b.conv2, dilation);
                    }
                } else if dilation > 1 {
                    if bottleneck {
                        set_dilation(&mut b.conv2, dilation);
                    } else {
                        set_dilation(&mut b.conv1, dilation);
                        set_dilation(&mut b.conv2, dilation);
                    }
                }
            }
        }
        self
    }
}

impl LiteBackbone {
    fn dilate(mut self, which: [bool; 3]) -> LiteBackbone {
        // the stages that stride after the stem, and which of the last three are dilated
        let striding: Vec<usize> = (1..=STAGES.len())
            .filter(|&s| STAGES[s - 1].2 == 2)
            .collect();
        let last3 = &striding[striding.len() - 3..];
        // the dilation each stage ends up with (index 0: the stem)
        let mut dilation = 1;
        let stage_dilation: Vec<usize> = (0..=STAGES.len())
            .map(|s| {
                if last3.iter().position(|&t| t == s).is_some_and(|j| which[j]) {
                    dilation *= 2;
                }
                dilation
            })
            .collect();
        for (i, b) in self._blocks.iter_mut().enumerate() {
            let d = stage_dilation[stage_of_block(i)];
            if d > 1 {
                let c = &mut b._depthwise_conv;
                let k = c.kernel_size[0];
                c.stride = [1, 1];
                c.dilation = [d, d];
                let p = d * (k - 1) / 2;
                c.padding = PaddingConfig2d::Explicit(p, p, p, p);
            }
        }
        self
    }
}

/// A 3x3 convolution given dilation `d` and the padding that keeps its size (`d`).
fn set_dilation(c: &mut Conv2d, d: usize) {
    c.dilation = [d, d];
    c.padding = PaddingConfig2d::Explicit(d, d, d, d);
}

/// `(conv, BatchNorm, ReLU)`: torchvision's `nn.Sequential` of ASPP's branches (`ASPPConv`
/// and the 1x1 branch), names `.0` and `.1`.
pub type ConvBnRelu = (Conv2d, BatchNorm, Relu);

/// torchvision's `ASPP`: four parallel branches on the backbone's output (a 1x1 convolution
/// and three 3x3 convolutions dilated by the rates) and a fifth on its global average
/// (`ASPPPooling`: pool, 1x1 convolution, BatchNorm, ReLU, spread back over the map), each to
/// `channels`; their concatenation projected to `channels` (1x1, BatchNorm, ReLU, dropout 0.5).
/// Names `convs.0`..`convs.4` (the pooling branch's convolution is `convs.4.1`) and `project`.
#[derive(Module, Debug)]
pub struct Aspp {
    convs: (
        ConvBnRelu,
        ConvBnRelu,
        ConvBnRelu,
        ConvBnRelu,
        (AdaptiveAvgPool2d, Conv2d, BatchNorm, Relu),
    ),
    project: (Conv2d, BatchNorm, Relu, Dropout),
}

impl Aspp {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let branch = |(conv, bn, act): &ConvBnRelu, x: Tensor<4>| {
            act.forward(crate::kernels::batch_norm(
                bn,
                crate::kernels::conv2d(conv, x),
            ))
        };
        let (b0, b1, b2, b3, (pool, conv, bn, act)) = &self.convs;
        let pooled = act.forward(crate::kernels::batch_norm(
            bn,
            crate::kernels::conv2d(conv, pool.forward(x.clone())),
        ));
        let parts = vec![
            branch(b0, x.clone()),
            branch(b1, x.clone()),
            branch(b2, x.clone()),
            branch(b3, x),
            upsample(pooled, [h, w]),
        ];
        let (conv, bn, act, drop) = &self.project;
        let z = crate::kernels::batch_norm(bn, crate::kernels::conv2d(conv, Tensor::cat(parts, 1)));
        drop.forward(act.forward(z))
    }
}

/// Which head a [`SegNet`] gets, and its shape: what a saved network records to be rebuilt.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadConfig {
    /// torchvision's `FCNHead` ([`SegNet::fcn`]).
    Fcn,
    /// torchvision's `DeepLabHead` ([`SegNet::deeplab`]).
    #[serde(rename = "deeplabv3")]
    DeepLab {
        /// ASPP's three dilation rates (torchvision: 12, 24, 36).
        rates: [usize; 3],
        /// Channels of every ASPP branch and of the projection (torchvision: 256).
        channels: usize,
    },
}

impl HeadConfig {
    /// torchvision's DeepLab-v3 head: rates 12, 24, 36 and 256 channels.
    pub const DEEPLAB: HeadConfig = HeadConfig::DeepLab {
        rates: [12, 24, 36],
        channels: 256,
    };

    /// The network: `backbone` with this head, freshly initialized, for `classes` classes.
    pub fn build(&self, backbone: Backbone, classes: usize, device: &Device) -> SegNet {
        match self {
            HeadConfig::Fcn => SegNet::fcn(backbone, classes, device),
            HeadConfig::DeepLab { rates, channels } => {
                SegNet::deeplab(backbone, classes, *rates, *channels, device)
            }
        }
    }

    /// `fcn` or `deeplabv3`, the `arch` of a saved network.
    pub fn name(&self) -> &'static str {
        match self {
            HeadConfig::Fcn => "fcn",
            HeadConfig::DeepLab { .. } => "deeplabv3",
        }
    }
}

/// The segmentation head: what `classifier.*` holds.
// one head per network, built once: the variants' sizes do not matter
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head {
    /// torchvision's `FCNHead`: `(3x3 conv, BatchNorm, ReLU, dropout 0.1, 1x1 conv)`, names
    /// `classifier.0`, `.1`, `.4` (2 and 3, the ReLU and the dropout, hold nothing).
    Fcn((Conv2d, BatchNorm, Relu, Dropout, Conv2d)),
    /// torchvision's `DeepLabHead`: `(ASPP, 3x3 conv, BatchNorm, ReLU, 1x1 conv)`, names
    /// `classifier.0.convs.*`, `classifier.0.project.*`, `classifier.1`, `.2`, `.4`.
    DeepLab((Aspp, Conv2d, BatchNorm, Relu, Conv2d)),
}

impl Head {
    /// The head's name in checkpoints' metadata: `fcn` or `deeplabv3`.
    pub fn kind(&self) -> &'static str {
        match self {
            Head::Fcn(_) => "fcn",
            Head::DeepLab(_) => "deeplabv3",
        }
    }

    fn forward(&self, f: Tensor<4>) -> Tensor<4> {
        match self {
            Head::Fcn((conv, bn, act, drop, out)) => {
                let z = crate::kernels::conv2d(conv, f);
                let z = act.forward(crate::kernels::batch_norm(bn, z));
                crate::kernels::conv2d(out, drop.forward(z))
            }
            Head::DeepLab((aspp, conv, bn, act, out)) => {
                let z = crate::kernels::conv2d(conv, aspp.forward(f));
                let z = act.forward(crate::kernels::batch_norm(bn, z));
                crate::kernels::conv2d(out, z)
            }
        }
    }
}

/// A backbone and a segmentation head.
#[derive(Module, Debug)]
pub struct SegNet {
    /// The shared part `S` of the -SP schemes: starts from the classification network.
    pub backbone: Backbone,
    /// The new part `S̄`.
    pub classifier: Head,
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(1e-5)
        .with_momentum(BN_MOMENTUM)
        .init(device)
}

/// A convolution without bias, Kaiming-initialized, padding `pad` and dilation `dilation`.
fn conv([cin, cout]: [usize; 2], k: usize, pad: usize, dilation: usize, device: &Device) -> Conv2d {
    let p = PaddingConfig2d::Explicit(pad, pad, pad, pad);
    let mut c = crate::models::kaiming_conv([cin, cout], k, 1, 1, p, device);
    c.dilation = [dilation, dilation];
    c
}

/// The heads' last layer: a 1x1 convolution with bias to the classes (burn's default
/// initialization).
fn to_classes(cin: usize, classes: usize, device: &Device) -> Conv2d {
    burn::nn::conv::Conv2dConfig::new([cin, classes], [1, 1])
        .with_bias(true)
        .init(device)
}

/// Bilinear resizing to `[h, w]` with half-pixel centres (PyTorch's `align_corners=False`).
fn upsample(z: Tensor<4>, [h, w]: [usize; 2]) -> Tensor<4> {
    let options = InterpolateOptions::new(InterpolateMode::Bilinear)
        .with_align_corners(false)
        .with_output_size([h, w]);
    interpolate(z, options)
}

impl SegNet {
    /// `backbone` with a freshly initialized FCN head for `classes` classes: a 3x3
    /// convolution to a quarter of the backbone's channels, BatchNorm, ReLU, dropout 0.1, a 1x1
    /// convolution (with bias) to the classes.
    pub fn fcn(backbone: Backbone, classes: usize, device: &Device) -> SegNet {
        let cin = backbone.out_channels();
        let mid = (cin / 4).max(1);
        let out = to_classes(mid, classes, device);
        SegNet {
            backbone,
            classifier: Head::Fcn((
                conv([cin, mid], 3, 1, 1, device),
                bn(mid, device),
                Relu::new(),
                DropoutConfig::new(0.1).init(),
                out,
            )),
        }
    }

    /// `backbone` with a freshly initialized DeepLab-v3 head for `classes` classes: ASPP with
    /// `rates` (torchvision: 12, 24, 36 at output stride 8; DeepLab-v3 halves them at 16) and
    /// `channels` per branch (torchvision: 256), a 3x3 convolution, BatchNorm, ReLU, a 1x1
    /// convolution (with bias) to the classes.
    pub fn deeplab(
        backbone: Backbone,
        classes: usize,
        rates: [usize; 3],
        channels: usize,
        device: &Device,
    ) -> SegNet {
        let cin = backbone.out_channels();
        let c = channels;
        let branch = |k: usize, d: usize| -> ConvBnRelu {
            let pad = if k == 3 { d } else { 0 };
            (
                conv([cin, c], k, pad, d, device),
                bn(c, device),
                Relu::new(),
            )
        };
        let aspp = Aspp {
            convs: (
                branch(1, 1),
                branch(3, rates[0]),
                branch(3, rates[1]),
                branch(3, rates[2]),
                (
                    AdaptiveAvgPool2dConfig::new([1, 1]).init(),
                    conv([cin, c], 1, 0, 1, device),
                    bn(c, device),
                    Relu::new(),
                ),
            ),
            project: (
                conv([5 * c, c], 1, 0, 1, device),
                bn(c, device),
                Relu::new(),
                DropoutConfig::new(0.5).init(),
            ),
        };
        let out = to_classes(c, classes, device);
        SegNet {
            backbone,
            classifier: Head::DeepLab((
                aspp,
                conv([c, c], 3, 1, 1, device),
                bn(c, device),
                Relu::new(),
                out,
            )),
        }
    }

    /// Logits `[batch, classes, h, w]` for images `[batch, channels, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let z = self.classifier.forward(self.backbone.forward(x));
        upsample(z, [h, w])
    }
}
