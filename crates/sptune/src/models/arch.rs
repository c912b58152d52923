//! The architecture registry: everything sptune knows about an architecture, in one place.
//!
//! An [`Architecture`] says how to build the network from a [`ModelSpec`], how to read a spec
//! off a checkpoint without sptune metadata, which tensors form the head (replaced when the
//! classes change), which stage each tensor belongs to (`--freeze K`), and its BatchNorm
//! momentum (`--bn auto`). The built-in ones live beside their networks
//! ([`super::resnet`], [`super::efficientnet`], [`super::mlp`]); a new one is one file that
//! implements the trait, usually on top of [`super::sequential::Sequential`], and calls
//! [`register`]. The Fisher's CPU engine covers the built-in networks; others get the probe
//! path ([`crate::fisher`]), which runs on any network whose layers go through the
//! [`super::Hook`].

use std::sync::{Arc, LazyLock, RwLock};

use burn::tensor::Device;

use super::{ModelSpec, Net};
use crate::{Error, Result};

/// The shape of a checkpoint tensor by name, if present (for spec inference).
pub type Shapes<'a> = &'a dyn Fn(&str) -> Option<Vec<usize>>;

/// One architecture.
pub trait Architecture: Send + Sync {
    /// Its name (`spec.arch`, `--arch`).
    fn name(&self) -> &'static str;

    /// A freshly initialized network for `spec` (already validated).
    fn build(&self, spec: &ModelSpec, device: &Device) -> Result<Net>;

    /// Fills `spec` (preset with ImageNet's 3x224x224 input and normalization) from the
    /// checkpoint's tensor shapes; the error names the missing tensor.
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
}

static REGISTRY: LazyLock<RwLock<Vec<Arc<dyn Architecture>>>> =
    LazyLock::new(|| RwLock::new(builtins()));

fn builtins() -> Vec<Arc<dyn Architecture>> {
    let mut v: Vec<Arc<dyn Architecture>> = super::resnet::ARCHS
        .iter()
        .map(|a| Arc::new(*a) as Arc<dyn Architecture>)
        .collect();
    v.push(Arc::new(super::efficientnet::Lite0));
    v.push(Arc::new(super::mlp::MlpArch));
    v
}

/// Adds an architecture; its name must be new.
pub fn register(arch: Arc<dyn Architecture>) -> Result<()> {
    let mut r = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if r.iter().any(|a| a.name() == arch.name()) {
        return Err(Error::invalid(
            "architecture",
            format!("{} is already registered", arch.name()),
        ));
    }
    r.push(arch);
    Ok(())
}

/// The architecture named `name`; the error lists the known names.
pub fn get(name: &str) -> Result<Arc<dyn Architecture>> {
    let r = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    r.iter().find(|a| a.name() == name).cloned().ok_or_else(|| {
        let known: Vec<&str> = r.iter().map(|a| a.name()).collect();
        Error::invalid(
            "--arch",
            format!("unknown architecture {name:?}; known: {}", known.join(", ")),
        )
    })
}

/// Names of the registered architectures, built-in first.
pub fn names() -> Vec<&'static str> {
    let r = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    r.iter().map(|a| a.name()).collect()
}
