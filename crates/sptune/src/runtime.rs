//! Device, thread and progress-output selection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// Keeps freed memory in the process for reuse instead of handing large blocks back to the
/// system at once (glibc on Linux; elsewhere nothing). A training step allocates and frees
/// blocks of tens of MiB (activations, unfolded patches); by default glibc maps each block over
/// 32 MiB afresh and unmaps it when freed, which costs page faults and, with several threads,
/// TLB shootdowns: 10x on EfficientNet-Lite0's depthwise input gradient, measured with
/// `benches/conv_kernels.rs`. Call once, before any tensor work; `sptune` (the binary) does.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Memory for the outputs of a frozen prefix (`--freeze K` without augmentation), in MiB.
static CACHE_BUDGET_MB: AtomicUsize = AtomicUsize::new(2048);

/// Sets the memory budget of the frozen-prefix store (default 2048 MiB; 0 turns it off):
/// training with `--freeze K` and no augmentation computes the frozen stages once per image
/// when their outputs for the whole training set fit in it, else every epoch (with a note).
pub fn set_cache_budget_mb(mb: usize) {
    CACHE_BUDGET_MB.store(mb, Ordering::Relaxed);
}

/// The budget set by [`set_cache_budget_mb`].
pub fn cache_budget_mb() -> usize {
    CACHE_BUDGET_MB.load(Ordering::Relaxed)
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
