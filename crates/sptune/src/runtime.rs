//! Device, thread and progress-output selection.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use burn::tensor::Device;

use crate::{Error, Result};

/// The number of threads the machine runs at once (`std::thread::available_parallelism`, 1
/// when unknown).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `n` compute threads capped at [`available_threads`]: more would only contend (and a huge
/// `--threads` would start thousands of threads). Returns the count to use and whether it was
/// lowered; `0` (all cores) stays `0`.
pub fn cap_threads(n: usize) -> (usize, bool) {
    let cores = available_threads();
    if n > cores { (cores, true) } else { (n, false) }
}

/// Sets the size of the global compute thread pool (burn's Flex backend uses rayon).
/// Call once, before any tensor work; `0` keeps the default (all cores). A count above the
/// machine's parallelism is lowered to it ([`cap_threads`]).
pub fn set_threads(n: usize) -> Result<()> {
    let (n, _) = cap_threads(n);
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

/// The default of [`max_pixels`]: 64 megapixels (e.g. 8192x8192).
pub const DEFAULT_MAX_PIXELS: u64 = 64 << 20;

/// Pixel budget of one decoded image.
static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);

/// Sets the largest image (width x height, from the file's header) that is decoded, for the
/// whole process, like `--max-pixels`; default [`DEFAULT_MAX_PIXELS`]. A larger PNG/JPEG is
/// refused before decoding: a few hundred KiB of PNG can declare 20000x20000 pixels, which
/// decode to gigabytes. Decoding one image takes up to about 20 bytes per pixel at its peak
/// (the decoded image and its f32 copy), and image folders decode one image per thread.
/// `0` is taken as 1.
pub fn set_max_pixels(n: u64) {
    MAX_PIXELS.store(n.max(1), Ordering::Relaxed);
}

/// The budget set by [`set_max_pixels`].
pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(Ordering::Relaxed)
}

/// The default of [`max_data_bytes`], in MiB: 4 GiB of decoded images.
pub const DEFAULT_MAX_DATA_MB: u64 = 4096;

/// Memory budget of a data set's decoded images, in MiB.
static MAX_DATA_MB: AtomicU64 = AtomicU64::new(DEFAULT_MAX_DATA_MB);

/// Sets how much memory the decoded images of one data set (both splits, as f32; the scenes
/// `scenes` makes) may take, for the whole process, like `--max-data-mb`; default
/// [`DEFAULT_MAX_DATA_MB`]. The size is computed from the file count and the image shape before
/// anything is decoded. `0` is taken as 1.
pub fn set_max_data_mb(mb: u64) {
    MAX_DATA_MB.store(mb.max(1), Ordering::Relaxed);
}

/// The budget set by [`set_max_data_mb`], in bytes.
pub fn max_data_bytes() -> u64 {
    MAX_DATA_MB.load(Ordering::Relaxed).saturating_mul(1 << 20)
}

/// `Ok` when `bytes` of decoded data fit in [`max_data_bytes`]; otherwise the message to give,
/// `what` saying what would take them (`"its 120000 images of 3x256x256"`).
pub fn check_data_bytes(what: &str, bytes: u64) -> std::result::Result<(), String> {
    let budget = max_data_bytes();
    if bytes > budget {
        return Err(format!(
            "{what} take {} MiB decoded, over the data budget of {} MiB (--max-data-mb)",
            bytes.div_ceil(1 << 20),
            budget >> 20
        ));
    }
    Ok(())
}

/// Bytes one image may take while it is decoded (the decoder's pixels plus their f32 copy):
/// what the cheapest image of [`max_pixels`] pixels takes, 8-bit gray at 5 bytes per pixel. The
/// default allows 320 MiB: an 8-bit gray image of 64 megapixels, an 8-bit RGB one of 22 (15
/// bytes per pixel) or a 16-bit RGBA one of 16 (20 bytes).
pub fn max_decode_bytes() -> u64 {
    max_pixels().saturating_mul(5)
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
/// `cuda` feature), `wgpu` (with the `wgpu` feature: the platform's graphics API, WGSL shaders
/// unless the `vulkan` feature is on), `vulkan` (with the `vulkan` feature: wgpu pinned to Vulkan,
/// shaders compiled to SPIR-V, which opens cooperative matrices and subgroup operations).
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::default())),
        #[cfg(feature = "vulkan")]
        "vulkan" => Ok(Device::vulkan(burn::tensor::DeviceKind::default())),
        other => Err(Error::invalid(
            "--device",
            format!(
                "{other:?} is not available in this build (cpu; cuda, wgpu and vulkan need the cargo features of the same name)"
            ),
        )),
    }
}
