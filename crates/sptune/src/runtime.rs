//! Device, thread and progress-output selection.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

use crate::{Error, Result};

/// Sets the size of the global compute thread pool (burn's Flex backend uses rayon).
/// Call once, before any tensor work; `0` keeps the default (all cores).
pub fn set_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| Error::invalid("--threads", e.to_string()))
}

/// Whether progress output of the library (download bars) is turned off.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns the library's own progress output (the bars of [`crate::download`]) off or on for the
/// whole process, like `--quiet`. It is on by default, and shown only on a terminal.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether [`set_quiet`] turned progress output off.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// The device named by `--device`: `cpu` (burn Flex, always available), `cuda` (with the
/// `cuda` feature), `wgpu` (with the `wgpu` feature).
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::default())),
        other => Err(Error::invalid(
            "--device",
            format!(
                "{other:?} is not available in this build (cpu; cuda and wgpu need the cargo features of the same name)"
            ),
        )),
    }
}
