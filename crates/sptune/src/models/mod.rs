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
pub mod registry;
pub mod resnet;
pub mod sequential;

use crate::{Error, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use efficientnet::EfficientNetLite;
pub use hook::{Hook, Plain};
pub use mlp::Mlp;
pub use resnet::ResNet;
pub use sequential::Sequential;

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
    /// A registered architecture ([`registry::names`]): `resnet18`, ..., `efficientnet-lite0`, `mlp`.
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

/// Most input channels a spec may have.
pub const MAX_INPUT_CHANNELS: usize = 64;
/// Largest input height and width (a flat input `[c, 1, w]`, as an MLP's, may be wider, within
/// [`MAX_INPUT_VALUES`]).
pub const MAX_INPUT_SIDE: usize = 4096;
/// Most values in one input image (c x h x w): 2^24, e.g. 1x4096x4096 or 3x2048x2048.
pub const MAX_INPUT_VALUES: usize = 1 << 24;
/// Most output classes.
pub const MAX_CLASSES: usize = 1 << 20;
/// Largest MLP hidden size.
pub const MAX_HIDDEN: usize = 1 << 20;
/// Most hidden layers of an MLP.
pub const MAX_HIDDEN_LAYERS: usize = 1024;
/// Largest ResNet base width (torchvision: 64).
pub const MAX_WIDTH: usize = 4096;
/// Most values (parameters and buffers) a spec's network may hold: 2^31 (8 GiB as f32).
pub const MAX_PARAMS: u128 = 1 << 31;

impl ModelSpec {
    /// Checks the spec for consistency (known arch, sizes, normalization lengths) and its
    /// sizes against fixed bounds, before anything is allocated for it (a spec comes from a
    /// checkpoint's metadata, which can say anything): at most [`MAX_INPUT_CHANNELS`] input
    /// channels, [`MAX_INPUT_SIDE`] pixels of height and width, [`MAX_INPUT_VALUES`] values per
    /// input, [`MAX_CLASSES`] classes, [`MAX_HIDDEN_LAYERS`] hidden layers of at most
    /// [`MAX_HIDDEN`], width [`MAX_WIDTH`], and [`MAX_PARAMS`] values in the network. Each error
    /// names the field.
    pub fn validate(&self) -> Result<()> {
        let arch = registry::get(&self.arch)?;
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
        self.check_sizes()?;
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
        arch.validate(self)?;
        if let Some(n) = arch.param_count(self)
            && n > MAX_PARAMS
        {
            return Err(Error::invalid(
                "spec",
                format!(
                    "the {} network would hold {n} values, over the limit of {MAX_PARAMS}",
                    self.arch
                ),
            ));
        }
        Ok(())
    }

    /// The fixed bounds of [`ModelSpec::validate`] on each size.
    fn check_sizes(&self) -> Result<()> {
        let over = |what: &str, v: usize, max: usize| {
            Error::invalid(what, format!("{v} is over the limit of {max}"))
        };
        let [c, h, w] = self.input;
        if c > MAX_INPUT_CHANNELS {
            return Err(Error::invalid(
                "input",
                format!(
                    "{c} channels in {:?}, over the limit of {MAX_INPUT_CHANNELS}",
                    self.input
                ),
            ));
        }
        let flat = h == 1;
        if h > MAX_INPUT_SIDE || (w > MAX_INPUT_SIDE && !flat) {
            return Err(Error::invalid(
                "input",
                format!(
                    "{:?} is over the limit of {MAX_INPUT_SIDE} pixels of height and width",
                    self.input
                ),
            ));
        }
        let values = c as u128 * h as u128 * w as u128;
        if values > MAX_INPUT_VALUES as u128 {
            return Err(Error::invalid(
                "input",
                format!(
                    "{:?} is {values} values per image, over the limit of {MAX_INPUT_VALUES}",
                    self.input
                ),
            ));
        }
        if self.classes.len() > MAX_CLASSES {
            return Err(over("classes", self.classes.len(), MAX_CLASSES));
        }
        if self.hidden.len() > MAX_HIDDEN_LAYERS {
            return Err(Error::invalid(
                "hidden",
                format!(
                    "{} layers, over the limit of {MAX_HIDDEN_LAYERS}",
                    self.hidden.len()
                ),
            ));
        }
        if let Some(&v) = self.hidden.iter().find(|&&v| v == 0 || v > MAX_HIDDEN) {
            return Err(Error::invalid(
                "hidden",
                format!("size {v} is not between 1 and {MAX_HIDDEN}"),
            ));
        }
        if self.width > MAX_WIDTH {
            return Err(over("width", self.width, MAX_WIDTH));
        }
        Ok(())
    }

    /// The spec's architecture from the registry.
    pub fn architecture(&self) -> Result<std::sync::Arc<dyn arch::Architecture>> {
        registry::get(&self.arch)
    }

    /// The BatchNorm momentum of the architecture (PyTorch convention), if it has BatchNorm.
    pub fn bn_momentum(&self) -> Option<f64> {
        self.architecture().ok().and_then(|a| a.bn_momentum())
    }

    /// Images per batch when evaluating (forward passes without gradients): about 600,000
    /// input pixels, at most 256 (256 from 28 to 48 px, 65 at 96 px, 11 at 224 px). Large
    /// batches of large images spill every activation out of the caches: EfficientNet-Lite0 at
    /// 224 px evaluated 62 images/s in batches of 256 and 110 in batches of 8, while ResNet-18
    /// at 28 px is fastest at 256 (its Winograd transforms need tiles); 2 cores, 2026-11-27.
    pub fn eval_batch(&self) -> usize {
        let pixels = (self.input[1] * self.input[2]).max(1);
        (600_000 / pixels).clamp(1, 256)
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
        self.architecture()?.build(self, device)
    }

    /// Checkpoint names of the head (the part replaced when the classes change).
    pub fn head_names(&self) -> Vec<String> {
        self.architecture()
            .map(|a| a.head_names(self))
            .unwrap_or_default()
    }

    /// The number of stages `--freeze` can take.
    pub fn stages(&self) -> usize {
        self.architecture().map_or(0, |a| a.stages(self))
    }

    /// The stage a checkpoint name belongs to, for `--freeze K` (the head is `usize::MAX`;
    /// the rest is the architecture's [`arch::Architecture::stage_of`]).
    pub fn stage_of(&self, name: &str) -> usize {
        if self.head_names().iter().any(|h| h == name) {
            return usize::MAX;
        }
        self.architecture()
            .map_or(usize::MAX, |a| a.stage_of(self, name))
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
    /// A plain stack of layers: what registered architectures outside sptune build on.
    Sequential(Sequential),
}

impl Net {
    /// Logits [batch, classes] for normalized images [batch, c, h, w].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Net::ResNet(m) => m.forward(x),
            Net::Mlp(m) => m.forward(x),
            Net::EfficientNet(m) => m.forward(x),
            Net::Sequential(m) => m.forward_with(x, &mut Plain),
        }
    }

    /// The part of the network that `--freeze k` freezes (the stem and stages `1..=k`) applied
    /// to `x`; `None` for architectures that do not split (MLP, registered stacks).
    pub fn prefix(&self, x: Tensor<4>, k: usize) -> Option<Tensor<4>> {
        match self {
            Net::ResNet(m) => Some(m.prefix_with(x, k, &mut Plain)),
            Net::EfficientNet(m) => Some(m.prefix_with(x, k, &mut Plain)),
            Net::Mlp(_) | Net::Sequential(_) => None,
        }
    }

    /// Logits from the output of [`Net::prefix`]`(.., k)`: the rest of the network (`None`
    /// where [`Net::prefix`] is).
    pub fn suffix(&self, x: Tensor<4>, k: usize) -> Option<Tensor<2>> {
        match self {
            Net::ResNet(m) => Some(m.suffix_with(x, k, &mut Plain)),
            Net::EfficientNet(m) => Some(m.suffix_with(x, k, &mut Plain)),
            Net::Mlp(_) | Net::Sequential(_) => None,
        }
    }

    /// Every BatchNorm of the network, stem first (none for an MLP).
    pub fn batch_norms_mut(&mut self) -> Vec<&mut burn::nn::BatchNorm> {
        match self {
            Net::ResNet(m) => m.batch_norms_mut(),
            Net::Mlp(_) => Vec::new(),
            Net::EfficientNet(m) => m.batch_norms_mut(),
            Net::Sequential(m) => m.batch_norms_mut(),
        }
    }

    /// [`Net::forward`] with every parametrized layer applied through `h`.
    pub fn forward_with(&self, x: Tensor<4>, h: &mut dyn Hook) -> Tensor<2> {
        match self {
            Net::ResNet(m) => m.forward_with(x, h),
            Net::Mlp(m) => m.forward_with(x, h),
            Net::EfficientNet(m) => m.forward_with(x, h),
            Net::Sequential(m) => m.forward_with(x, h),
        }
    }
}
