//! The architecture registry: everything sptune knows about an architecture, in one place.
//!
//! An [`Architecture`] says how to build the network from a [`ModelSpec`], how to read a spec
//! off a checkpoint without sptune metadata, which tensors form the head (replaced when the
//! classes change), which stage each tensor belongs to (`--freeze K`), and its BatchNorm
//! momentum (`--bn auto`). The built-in ones live beside their networks
//! ([`super::resnet`], [`super::efficientnet`], [`super::mlp`]) and are listed in
//! [`super::registry`]; a new one is one file that implements the trait, usually on top of
//! [`super::sequential::Sequential`], and calls [`super::registry::register`]. The Fisher's CPU engine covers the built-in networks; others get the probe
//! path ([`crate::fisher`]), which runs on any network whose layers go through the
//! [`super::Hook`].

use burn::tensor::Device;

use super::{ModelSpec, Net};
use crate::Result;

/// The shape of a checkpoint tensor by name, if present (for spec inference).
pub type Shapes<'a> = &'a dyn Fn(&str) -> Option<Vec<usize>>;

/// One architecture.
pub trait Architecture: Send + Sync {
    /// Its name (`spec.arch`, `--arch`).
    fn name(&self) -> &'static str;

    /// A freshly initialized network for `spec` (already validated).
    fn build(&self, spec: &ModelSpec, device: &Device) -> Result<Net>;

    /// Fills `spec` (preset with ImageNet's 3x224x224 input and normalization) from the
    /// checkpoint's tensor shapes; the error is the missing tensor's name, or a sentence (with
    /// spaces) saying what does not fit.
    fn infer_spec(&self, shapes: Shapes, spec: &mut ModelSpec) -> std::result::Result<(), String>;

    /// Checkpoint names of the head.
    fn head_names(&self, spec: &ModelSpec) -> Vec<String>;

    /// The stage of a (non-head) tensor for `--freeze K`: 0 is the stem, `usize::MAX` never
    /// frozen.
    fn stage_of(&self, spec: &ModelSpec, name: &str) -> usize;

    /// The number of stages `--freeze` can take (the largest K).
    fn stages(&self, spec: &ModelSpec) -> usize;

    /// BatchNorm momentum (PyTorch convention), if the network has BatchNorm.
    fn bn_momentum(&self) -> Option<f64>;

    /// Architecture-specific checks of a spec.
    fn validate(&self, _spec: &ModelSpec) -> Result<()> {
        Ok(())
    }

    /// The number of values (parameters and buffers) the network of `spec` holds, or an upper
    /// bound of it, computed without building it; `None` when unknown. [`ModelSpec::validate`]
    /// refuses a spec over [`super::MAX_PARAMS`] before anything is allocated. Called on specs
    /// that passed the generic size bounds, so it may multiply sizes without overflow in u128.
    fn param_count(&self, _spec: &ModelSpec) -> Option<u128> {
        None
    }
}
