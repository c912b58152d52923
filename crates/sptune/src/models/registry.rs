//! The architecture registry: the built-in architectures and those registered at run time,
//! looked up by name (`spec.arch`, `--arch`).

use std::sync::{Arc, LazyLock, RwLock};

use super::arch::Architecture;
use crate::{Error, Result};

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
