//! A segmentation network: a ResNet backbone (the classification network without its pooling
//! and head) and torchvision's FCN head, logits upsampled to the input size.
//!
//! Names follow torchvision's segmentation models, so a torchvision `fcn_resnet*` state dict
//! loads as it is: `backbone.conv1`, `backbone.layer1.0.conv1`, ... and `classifier.0` (3x3
//! conv, no bias), `classifier.1` (BatchNorm), `classifier.4` (1x1 conv to the classes; 2 and 3
//! are the ReLU and the dropout, which hold nothing).
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
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, PaddingConfig2d, Relu};
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use crate::models::hook::Plain;
use crate::models::resnet::{BN_MOMENTUM, Block, ResNet};

/// A ResNet without its average pooling and classification head.
#[derive(Module, Debug)]
pub struct Backbone {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: Option<MaxPool2d>,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
}

impl Backbone {
    /// The backbone of a classification ResNet (its weights kept, its head dropped).
    pub fn from_resnet(r: ResNet) -> Backbone {
        Backbone {
            conv1: r.conv1,
            bn1: r.bn1,
            maxpool: r.maxpool,
            layer1: r.layer1,
            layer2: r.layer2,
            layer3: r.layer3,
            layer4: r.layer4,
        }
    }

    /// The stage of a segmentation network's tensor, by name, as `--freeze` counts them: 0
    /// for the stem (`backbone.conv1`, `backbone.bn1`), `k` for `backbone.layerk.*`; `None`
    /// outside the backbone (the head).
    pub fn stage_of(name: &str) -> Option<usize> {
        let rest = name.strip_prefix("backbone.")?;
        if rest.starts_with("conv1.") || rest.starts_with("bn1.") {
            return Some(0);
        }
        let stage = rest.strip_prefix("layer")?.split('.').next()?;
        stage.parse().ok().filter(|s| (1..=4).contains(s))
    }

    /// Channels of the last stage's output.
    pub fn out_channels(&self) -> usize {
        let last = self.layer4.last().expect("a ResNet stage has blocks");
        let conv = last.conv3.as_ref().unwrap_or(&last.conv2);
        conv.weight.dims()[0]
    }

    /// Stages 2, 3, 4 (`which[0..3]`) with their stride replaced by dilation (see the module's
    /// documentation). Stages must be dilated from the last backwards, as in torchvision
    /// (`[false, true, true]` for output stride 8, `[false, false, true]` for 16).
    pub fn dilate(mut self, which: [bool; 3]) -> Backbone {
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

    /// The last stage's output `[batch, channels, h', w']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = &mut Plain;
        let z = crate::kernels::conv2d(&self.conv1, x);
        let mut x = relu(crate::kernels::batch_norm(&self.bn1, z));
        if let Some(p) = &self.maxpool {
            x = p.forward(x);
        }
        for stage in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for b in stage {
                x = b.forward(x, h);
            }
        }
        x
    }
}

/// A 3x3 convolution given dilation `d` and the padding that keeps its size (`d`).
fn set_dilation(c: &mut Conv2d, d: usize) {
    c.dilation = [d, d];
    c.padding = PaddingConfig2d::Explicit(d, d, d, d);
}

/// A backbone and torchvision's FCN head.
#[derive(Module, Debug)]
pub struct SegNet {
    /// The shared part `S` of the -SP schemes: starts from the classification network.
    pub backbone: Backbone,
    /// The new part: `(3x3 conv, BatchNorm, ReLU, dropout 0.1, 1x1 conv)`, torchvision's
    /// `FCNHead` (names `classifier.0`, `.1`, `.4`).
    pub classifier: (Conv2d, BatchNorm, Relu, Dropout, Conv2d),
}

impl SegNet {
    /// `backbone` with a freshly initialized FCN head for `classes` classes: a 3x3
    /// convolution to a quarter of the backbone's channels, BatchNorm, ReLU, dropout 0.1, a 1x1
    /// convolution (with bias) to the classes.
    pub fn fcn(backbone: Backbone, classes: usize, device: &Device) -> SegNet {
        let cin = backbone.out_channels();
        let mid = (cin / 4).max(1);
        let pad = PaddingConfig2d::Explicit(1, 1, 1, 1);
        let conv = crate::models::kaiming_conv([cin, mid], 3, 1, 1, pad, device);
        let bn = BatchNormConfig::new(mid)
            .with_epsilon(1e-5)
            .with_momentum(BN_MOMENTUM)
            .init(device);
        let out = burn::nn::conv::Conv2dConfig::new([mid, classes], [1, 1])
            .with_bias(true)
            .init(device);
        SegNet {
            backbone,
            classifier: (conv, bn, Relu::new(), DropoutConfig::new(0.1).init(), out),
        }
    }

    /// Logits `[batch, classes, h, w]` for images `[batch, channels, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let f = self.backbone.forward(x);
        let (conv, bn, act, drop, out) = &self.classifier;
        let z = crate::kernels::conv2d(conv, f);
        let z = act.forward(crate::kernels::batch_norm(bn, z));
        let z = crate::kernels::conv2d(out, drop.forward(z));
        let options = InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([h, w]);
        interpolate(z, options)
    }
}
