//! Network architectures and their checkpoints.
//!
//! [`ModelSpec`] is the model's config: it is stored in every checkpoint's `__metadata__` and is
//! enough to rebuild the network for inference ([`ModelSpec::init`]).

pub mod arch;
pub mod checkpoint;
mod dtype;
pub mod efficientnet;
pub mod hook;
pub mod mlp;
pub mod pytorch;
pub mod resnet;

use crate::{Error, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use efficientnet::EfficientNetLite;
pub use hook::{Hook, Plain};
pub use mlp::Mlp;
pub use resnet::ResNet;

/// A bias-free convolution initialized as torchvision does (`kaiming_normal_`, fan-out, ReLU
/// gain), shared by the architectures.
pub(crate) fn kaiming_conv(
    channels: [usize; 2],
    k: usize,
    stride: usize,
    groups: usize,
    padding: burn::nn::PaddingConfig2d,
    device: &Device,
) -> burn::nn::conv::Conv2d {
    burn::nn::conv::Conv2dConfig::new(channels, [k, k])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(padding)
        .with_bias(false)
        .with_initializer(burn::nn::Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// Everything needed to rebuild a network: architecture, sizes, classes and input normalization.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelSpec {
    /// `resnet18`, `resnet34`, `resnet50`, `resnet101`, `efficientnet-lite0` or `mlp`.
    pub arch: String,
    /// Names of the output classes; the head's output i is `classes[i]`.
    pub classes: Vec<String>,
    /// Input (channels, height, width).
    pub input: [usize; 3],
    /// ResNet base channel count (torchvision: 64).
    #[serde(default = "default_width")]
    pub width: usize,
    /// ResNet small-image stem (3x3 stride-1 conv, no max-pool).
    #[serde(default)]
    pub small_stem: bool,
    /// MLP hidden sizes.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Per-channel input mean (inputs in [0,1] are normalized by it).
    pub mean: Vec<f32>,
    /// Per-channel input standard deviation.
    pub std: Vec<f32>,
}

fn default_width() -> usize {
    64
}

/// The known architecture names.
pub const ARCHS: &[&str] = &[
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "efficientnet-lite0",
    "mlp",
];

impl ModelSpec {
    /// Checks the spec for consistency (known arch, sizes, normalization lengths).
    pub fn validate(&self) -> Result<()> {
        if !ARCHS.contains(&self.arch.as_str()) {
            return Err(Error::invalid(
                "--arch",
                format!(
                    "unknown architecture {:?}; known: {}",
                    self.arch,
                    ARCHS.join(", ")
                ),
            ));
        }
        if self.classes.is_empty() {
            return Err(Error::invalid(
                "classes",
                "a model needs at least one class",
            ));
        }
        let c = self.input[0];
        if c == 0 || self.input[1] == 0 || self.input[2] == 0 {
            return Err(Error::invalid(
                "input",
                format!("{:?} has a zero size", self.input),
            ));
        }
        if self.mean.len() != c || self.std.len() != c {
            return Err(Error::invalid(
                "mean/std",
                format!(
                    "need {c} values each, got {} and {}",
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid(
                "std",
                format!("{s} is not a positive number"),
            ));
        }
        if self.arch.starts_with("resnet") && self.width == 0 {
            return Err(Error::invalid("--width", "must be positive"));
        }
        Ok(())
    }

    /// The BatchNorm momentum of the architecture (PyTorch convention), if it has BatchNorm.
    pub fn bn_momentum(&self) -> Option<f64> {
        match self.arch.as_str() {
            "mlp" => None,
            a if a.starts_with("efficientnet") => Some(efficientnet::BN_MOMENTUM),
            _ => Some(resnet::BN_MOMENTUM),
        }
    }

    /// How batches for this model are made: its input size and normalization, with random
    /// crop (padding 2) and horizontal flip when `augment`.
    pub fn batch_options(&self, augment: bool) -> crate::data::BatchOptions {
        crate::data::BatchOptions {
            channels: self.input[0],
            size: self.input[1],
            normalize: crate::data::Normalize {
                mean: self.mean.clone(),
                std: self.std.clone(),
            },
            random_crop: augment,
            pad: if augment { 2 } else { 0 },
            hflip: augment,
        }
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// A freshly initialized network for this spec.
    pub fn init(&self, device: &Device) -> Result<Net> {
        self.validate()?;
        let [c, h, w] = self.input;
        Ok(match self.arch.as_str() {
            "mlp" => Net::Mlp(Mlp::new(
                c * h * w,
                &self.hidden,
                self.num_classes(),
                device,
            )),
            "efficientnet-lite0" => {
                Net::EfficientNet(EfficientNetLite::new(c, self.num_classes(), device))
            }
            a => {
                let depth: usize = a.trim_start_matches("resnet").parse().unwrap_or(0);
                let net = ResNet::new(
                    depth,
                    c,
                    self.num_classes(),
                    self.width,
                    self.small_stem,
                    device,
                )
                .ok_or_else(|| Error::invalid("--arch", format!("unknown ResNet depth in {a}")))?;
                Net::ResNet(net)
            }
        })
    }

    /// Checkpoint names of the head (the part replaced when the classes change).
    pub fn head_names(&self) -> Vec<String> {
        if self.arch == "mlp" {
            let k = self.hidden.len() + 1;
            vec![format!("fc{k}.weight"), format!("fc{k}.bias")]
        } else if self.arch.starts_with("efficientnet") {
            vec!["_fc.weight".into(), "_fc.bias".into()]
        } else {
            vec!["fc.weight".into(), "fc.bias".into()]
        }
    }

    /// The stage a checkpoint name belongs to, for `--freeze K`: the stem is 0, ResNet
    /// `layerK` is K, the head is `usize::MAX`. For an MLP, `fcK` is stage K (no stem). For
    /// EfficientNet-Lite0 the blocks of stage K (see [`efficientnet::STAGES`]) are K and the
    /// final 1x1 conv with its BatchNorm is 8.
    pub fn stage_of(&self, name: &str) -> usize {
        let first = name.split('.').next().unwrap_or("");
        if self.head_names().iter().any(|h| h == name) {
            return usize::MAX;
        }
        if self.arch.starts_with("efficientnet") {
            return match first {
                "_blocks" => name
                    .split('.')
                    .nth(1)
                    .and_then(|i| i.parse().ok())
                    .map(efficientnet::stage_of_block)
                    .unwrap_or(usize::MAX),
                "_conv_head" | "_bn1" => efficientnet::STAGES.len() + 1,
                _ => 0,
            };
        }
        if let Some(k) = first.strip_prefix("layer") {
            return k.parse().unwrap_or(usize::MAX);
        }
        if let Some(k) = first.strip_prefix("fc").filter(|_| self.arch == "mlp") {
            return k.parse().unwrap_or(usize::MAX);
        }
        0
    }
}

/// Any of the supported networks.
// One network per process, moved by value through training: the size difference is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    /// A torchvision-style ResNet.
    ResNet(ResNet),
    /// A multi-layer perceptron.
    Mlp(Mlp),
    /// EfficientNet-Lite0.
    EfficientNet(EfficientNetLite),
}

impl Net {
    /// Logits [batch, classes] for normalized images [batch, c, h, w].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Net::ResNet(m) => m.forward(x),
            Net::Mlp(m) => m.forward(x),
            Net::EfficientNet(m) => m.forward(x),
        }
    }

    /// Every BatchNorm of the network, stem first (none for an MLP).
    pub fn batch_norms_mut(&mut self) -> Vec<&mut burn::nn::BatchNorm> {
        match self {
            Net::ResNet(m) => m.batch_norms_mut(),
            Net::Mlp(_) => Vec::new(),
            Net::EfficientNet(m) => m.batch_norms_mut(),
        }
    }

    /// [`Net::forward`] with every parametrized layer applied through `h`.
    pub fn forward_with(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<2> {
        match self {
            Net::ResNet(m) => m.forward_with(x, h),
            Net::Mlp(m) => m.forward_with(x, h),
            Net::EfficientNet(m) => m.forward_with(x, h),
        }
    }
}
