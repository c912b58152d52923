//! Fuzz tests of the input readers on stable Rust (issue 12): the IDX reader, the PNG/JPEG
//! reader, the segmentation folders (images and palette masks), the safetensors checkpoint and
//! Fisher readers, the PyTorch `.pth` reader and the config parsers (`FinetuneConfig` / `PretrainConfig` / `StudyConfig::from_toml`).
//!
//! A small in-repo harness (no fuzzing crate is available offline): a seeded splitmix64 stream
//! picks a valid seed input built here (or an input that an earlier iteration read
//! successfully), stacks one to four mutations (bit flips, interesting byte values, truncation,
//! inserted / deleted / duplicated chunks, interesting 32/64-bit words, and per-format
//! mutations of header fields: IDX dimensions, the safetensors header length, `data_offsets`,
//! `shape`, `dtype` and the `spec` metadata, PNG chunks with their CRC fixed, JPEG frame sizes,
//! the pickle's integer arguments inside a re-zipped `.pth`, TOML values replaced by extremes
//! and unknown keys), writes it to a file and calls the reader. The property of every case:
//!
//! - the reader returns (no panic, caught with `catch_unwind`);
//! - an error renders as one line that names the file (or the folder it was read from);
//! - a success holds what the format promises (IDX: `images.len() == n * h * w` and labels
//!   below the class count; checkpoints: values per tensor = the shape's product; Fisher:
//!   finite and non-negative; configs: `validate` returns);
//! - no case takes more than [`SLOW_CASE`] or pushes the process's peak RSS past
//!   [`MAX_RSS_BYTES`] (a mutated header announcing gigabytes must be refused, not allocated).
//!
//! Budget: `SPTUNE_FUZZ_SECONDS` per reader (default 3, the CI budget); the seed is
//! `SPTUNE_FUZZ_SEED` (default fixed), so a failure reproduces. Ten-minute runs by hand:
//!
//! ```text
//! SPTUNE_FUZZ_SECONDS=600 cargo test --release -p sptune --test fuzz_readers -- --nocapture --test-threads 1
//! ```
//!
//! A failing input is written to `target/fuzz-failures/`, and the message names the reader,
//! seed and iteration. The inputs being read live in `target/fuzz-work/<reader>-<pid>/` (kept
//! if the process dies, e.g. on a stack overflow). Crashes found are kept as named regression
//! tests at the end of this file.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use sptune::data::{load_idx_dir, load_image_folder, load_images, write_idx};
use sptune::fisher::{Estimator, Fisher};
use sptune::models::ModelSpec;
use sptune::models::checkpoint::{Checkpoint, save_model, to_bytes};
use sptune::run::{FinetuneConfig, PretrainConfig};
use sptune::study::StudyConfig;

/// A case slower than this is a finding (a reader that loops or inflates without bound).
const SLOW_CASE: Duration = Duration::from_secs(10);
/// Peak RSS of the whole test process above this is a finding: every input here is under
/// 1 MB, so a reader that gets there allocated what a header claimed. `SPTUNE_FUZZ_MAX_RSS_MB`
/// lowers it (to find the case behind a peak that the report shows).
const MAX_RSS_BYTES: u64 = 3 << 30;

fn max_rss_bytes() -> u64 {
    std::env::var("SPTUNE_FUZZ_MAX_RSS_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|mb| mb << 20)
        .unwrap_or(MAX_RSS_BYTES)
}

// ---------------------------------------------------------------------------------------------
// the harness

/// splitmix64: a tiny seeded stream, enough to drive mutations reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// One input: named files, written into an empty folder before the reader runs.
#[derive(Clone, Debug)]
struct Case {
    files: Vec<(String, Vec<u8>)>,
}

impl Case {
    fn one(name: &str, bytes: Vec<u8>) -> Self {
        Case {
            files: vec![(name.to_string(), bytes)],
        }
    }
    fn write_to(&self, dir: &Path) {
        for (name, bytes) in &self.files {
            let p = dir.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(p, bytes).unwrap();
        }
    }
    /// All files in one blob, for the failure file: `name\0len(u64 le)bytes` per file.
    fn to_blob(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, bytes) in &self.files {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }
}

/// A reader under test: takes the folder the case was written to; `Ok(accepted)` when the
/// properties hold (`accepted`: the reader returned `Ok`), `Err` on a broken property.
type Target<'a> = &'a dyn Fn(&Path) -> Result<bool, String>;
/// A structure-aware mutation; returns false when it does not apply to this input.
type Structural<'a> = &'a dyn Fn(&mut Rng, &mut Case) -> bool;

fn budget() -> Duration {
    let secs = std::env::var("SPTUNE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

fn base_seed() -> u64 {
    std::env::var("SPTUNE_FUZZ_SEED")
        .ok()
        .and_then(|s| {
            s.strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| s.parse().ok())
        })
        .unwrap_or(0x5eed_f00d_2024_0012)
}

/// `target/` (integration tests get `target/tmp` as `CARGO_TARGET_TMPDIR`).
fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

fn peak_rss_bytes() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    ru.ru_maxrss as u64 * 1024
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Checks an error: one line, naming `dir` (every file of a case is inside it).
fn check_error(e: &sptune::Error, dir: &Path) -> Result<bool, String> {
    let s = e.to_string();
    if s.contains('\n') || s.contains('\r') {
        return Err(format!("error spans several lines: {s:?}"));
    }
    if !s.contains(&*dir.to_string_lossy()) {
        return Err(format!("error does not name the file: {s:?}"));
    }
    Ok(false)
}

/// Runs the target on one case in `dir`; `Err` describes a broken property or a panic.
fn run_case(target: Target, case: &Case, dir: &Path) -> Result<bool, String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    case.write_to(dir);
    match catch_unwind(AssertUnwindSafe(|| target(dir))) {
        Ok(r) => r,
        Err(p) => Err(format!("panic: {}", panic_text(&*p))),
    }
}

/// Fuzzes `target` for the budget from `seeds`; panics (after saving the inputs) on failures.
fn fuzz(name: &str, seeds: Vec<Case>, structural: Structural, target: Target) {
    fuzz_for(name, budget(), true, seeds, structural, target)
}

/// [`fuzz`] for `budget`; `save`: write failing inputs to `target/fuzz-failures/`.
fn fuzz_for(
    name: &str,
    budget: Duration,
    save: bool,
    seeds: Vec<Case>,
    structural: Structural,
    target: Target,
) {
    let seed = base_seed() ^ name.bytes().fold(0u64, |h, b| h.rotate_left(8) ^ b as u64);
    let mut rng = Rng(seed);
    // per process: two runs of one reader at once must not share it
    let work = target_dir()
        .join("fuzz-work")
        .join(format!("{name}-{}", std::process::id()));
    let failures = target_dir().join("fuzz-failures");
    // every seed input must itself be read without breaking a property
    for (i, s) in seeds.iter().enumerate() {
        if let Err(e) = run_case(target, s, &work) {
            panic!("{name}: seed input {i} fails: {e}");
        }
    }
    let mut pool = seeds.clone();
    let deadline = Instant::now() + budget;
    let (mut iters, mut oks) = (0u64, 0u64);
    let started = Instant::now();
    let mut slowest = (Duration::ZERO, 0u64);
    // the case that raised the process's peak RSS the most: (bytes, iteration)
    let (mut rss_before, mut biggest_rise, max_rss) =
        (peak_rss_bytes(), (0u64, 0u64), max_rss_bytes());
    let mut found: Vec<String> = Vec::new();
    while Instant::now() < deadline && found.len() < 5 {
        iters += 1;
        let mut case = rng.pick(&pool).clone();
        for _ in 0..1 + rng.below(4) {
            let done = rng.chance(2) && structural(&mut rng, &mut case);
            if !done {
                let f = rng.below(case.files.len());
                if rng.chance(20) {
                    // crossover with another input's file of the same index
                    let other = rng.pick(&pool).clone();
                    if let Some((_, b)) = other.files.get(f) {
                        splice(&mut rng, &mut case.files[f].1, b);
                    }
                } else {
                    mutate_bytes(&mut rng, &mut case.files[f].1);
                }
            }
        }
        let t0 = Instant::now();
        let mut r = run_case(target, &case, &work);
        let took = t0.elapsed();
        if took > slowest.0 {
            slowest = (took, iters);
        }
        if r.is_ok() && took > SLOW_CASE {
            r = Err(format!("slow: {took:?}"));
        }
        let rss = peak_rss_bytes();
        if rss > rss_before {
            if rss - rss_before > biggest_rise.0 {
                biggest_rise = (rss - rss_before, iters);
            }
            rss_before = rss;
        }
        if r.is_ok() && rss > max_rss {
            r = Err(format!("peak RSS reached {rss} bytes"));
        }
        match r {
            Ok(false) => {}
            Ok(true) => {
                oks += 1;
                // an input that reads is a good parent: keep a bounded pool of them
                if pool.len() < 64 {
                    pool.push(case);
                } else if rng.chance(4) {
                    let at = seeds.len() + rng.below(64 - seeds.len());
                    pool[at] = case;
                }
            }
            Err(e) => {
                let file = failures.join(format!("{name}-seed{seed:x}-iter{iters}.bin"));
                if save {
                    std::fs::create_dir_all(&failures).unwrap();
                    std::fs::write(&file, case.to_blob()).unwrap();
                }
                let msg = format!(
                    "{name}: seed 0x{seed:x} iteration {iters}: {e} (input: {})",
                    file.display()
                );
                eprintln!("FUZZ FAILURE {msg}");
                found.push(msg);
            }
        }
    }
    println!(
        "fuzz {name}: seed 0x{seed:x}, {iters} iterations in {:.1?} ({oks} accepted by the reader), \
         slowest case {:?} (iteration {}), peak RSS {} MiB (largest rise {} MiB at iteration {})",
        started.elapsed(),
        slowest.0,
        slowest.1,
        peak_rss_bytes() >> 20,
        biggest_rise.0 >> 20,
        biggest_rise.1
    );
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        found.is_empty(),
        "{} failures:\n{}",
        found.len(),
        found.join("\n")
    );
    assert!(iters > 0 || budget.is_zero(), "{name}: no iteration ran");
}

// ---------------------------------------------------------------------------------------------
// generic mutations

const INTERESTING_U8: [u8; 7] = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x40];
const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    2,
    0x7f,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];
const INTERESTING_U64: [u64; 8] = [
    0,
    1,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
];

fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        b.push(rng.next() as u8);
        return;
    }
    let at = rng.below(b.len());
    match rng.below(9) {
        0 => b[at] ^= 1 << rng.below(8),
        1 => b[at] = *rng.pick(&INTERESTING_U8),
        2 => b[at] = rng.next() as u8,
        3 => b.truncate(at),
        4 => {
            let n = 1 + rng.below(16);
            let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            b.splice(at..at, ins);
        }
        5 => {
            let n = 1 + rng.below(64.min(b.len() - at));
            b.drain(at..at + n);
        }
        6 => {
            // duplicate a chunk somewhere else
            let n = 1 + rng.below(256.min(b.len() - at));
            let chunk = b[at..at + n].to_vec();
            let to = rng.below(b.len() + 1);
            b.splice(to..to, chunk);
        }
        7 => {
            let v = *rng.pick(&INTERESTING_U32);
            let bytes = if rng.chance(2) {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            put(b, at, &bytes);
        }
        _ => {
            let v = *rng.pick(&INTERESTING_U64);
            put(b, at, &v.to_le_bytes());
        }
    }
}

/// Overwrites `b[at..]` with `bytes` as far as `b` reaches.
fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    if at >= b.len() {
        return;
    }
    let n = bytes.len().min(b.len().saturating_sub(at));
    b[at..at + n].copy_from_slice(&bytes[..n]);
}

/// Keeps a prefix of `b` and appends a suffix of `other`.
fn splice(rng: &mut Rng, b: &mut Vec<u8>, other: &[u8]) {
    let cut = rng.below(b.len() + 1);
    let from = rng.below(other.len() + 1);
    b.truncate(cut);
    b.extend_from_slice(&other[from..]);
}

/// Replaces a random leaf (or container) of a JSON value by an extreme value.
fn mutate_json(rng: &mut Rng, v: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let descend = rng.below(4) != 0;
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            if rng.chance(8) {
                // rename or drop a key
                let val = m.remove(&k).unwrap();
                if rng.chance(2) {
                    m.insert(format!("{k}x"), val);
                }
            } else {
                mutate_json(rng, m.get_mut(&k).unwrap());
            }
            return;
        }
        Value::Array(a) if descend && !a.is_empty() => {
            match rng.below(6) {
                0 => {
                    a.pop();
                }
                1 => {
                    let x = rng.pick(a).clone();
                    a.push(x);
                }
                _ => {
                    let i = rng.below(a.len());
                    mutate_json(rng, &mut a[i]);
                }
            }
            return;
        }
        _ => {}
    }
    *v = match rng.below(16) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1),
        3 => json!(1e308),
        4 => json!(u64::MAX),
        5 => json!(1u64 << 32),
        6 => json!(1u64 << 40),
        7 => json!(""),
        8 => json!("x".repeat(10_000)),
        9 => json!([]),
        10 => json!({}),
        11 => Value::Null,
        12 => json!(true),
        13 => json!([u64::MAX, u64::MAX]),
        14 => json!(-1.5),
        _ => json!(i64::MIN),
    };
}

// ---------------------------------------------------------------------------------------------
// IDX

const IDX_BASES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn gunzip(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .take(1 << 22)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b).unwrap();
    enc.finish().unwrap()
}

fn idx_seeds() -> Vec<Case> {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = Vec::new();
    for (n_train, n_test, h, w, gz) in [
        (6, 3, 4, 5, false),
        (6, 3, 4, 5, true),
        (1, 1, 1, 1, false),
        (10, 2, 3, 3, true),
    ] {
        let mut files = Vec::new();
        for (split, n) in [(0, n_train), (2, n_test)] {
            let images: Vec<u8> = (0..n * h * w).map(|i| (i * 37 % 256) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
            let suffix = if gz { ".gz" } else { "" };
            let names = [
                format!("{}{suffix}", IDX_BASES[split]),
                format!("{}{suffix}", IDX_BASES[split + 1]),
            ];
            let (ip, lp) = (dir.path().join(&names[0]), dir.path().join(&names[1]));
            write_idx(&images, &labels, n, h, w, &ip, &lp).unwrap();
            files.push((names[0].clone(), std::fs::read(ip).unwrap()));
            files.push((names[1].clone(), std::fs::read(lp).unwrap()));
        }
        seeds.push(Case { files });
    }
    seeds
}

/// Sets an IDX header field (dimension or magic) of one of the four files, through the gzip
/// layer when the file is compressed.
fn idx_structural(rng: &mut Rng, case: &mut Case) -> bool {
    let f = rng.below(case.files.len());
    let (name, bytes) = &mut case.files[f];
    let gz = name.ends_with(".gz");
    let Some(mut raw) = (if gz {
        gunzip(bytes)
    } else {
        Some(bytes.clone())
    }) else {
        return false;
    };
    let fields = if name.contains("images") { 4 } else { 2 };
    let field = rng.below(fields);
    let old = raw
        .get(field * 4..field * 4 + 4)
        .map(|s| u32::from_be_bytes(s.try_into().unwrap()))
        .unwrap_or(0);
    let v = match rng.below(5) {
        0 => *rng.pick(&INTERESTING_U32),
        1 => old.wrapping_add(1),
        2 => old.wrapping_sub(1),
        3 => 1 << rng.below(32),
        _ => rng.next() as u32,
    };
    if raw.len() < field * 4 + 4 {
        raw.resize(field * 4 + 4, 0);
    }
    put(&mut raw, field * 4, &v.to_be_bytes());
    if rng.chance(3) {
        // and the body to a length that agrees or nearly agrees with some header
        let body = raw.len().saturating_sub(fields * 4);
        let len = fields * 4 + [0, 1, body / 2, body + 1][rng.below(4)];
        raw.resize(len, 0);
    }
    *bytes = if gz { gzip(&raw) } else { raw };
    true
}

fn idx_target(dir: &Path) -> Result<bool, String> {
    match load_idx_dir(dir) {
        Err(e) => check_error(&e, dir),
        Ok(s) => {
            for d in [&s.train, &s.test] {
                if d.images.len() != d.labels.len() * d.height * d.width || d.channels != 1 {
                    return Err(format!(
                        "{} pixels for {} images of {}x{}x{}",
                        d.images.len(),
                        d.labels.len(),
                        d.channels,
                        d.height,
                        d.width
                    ));
                }
                if let Some(l) = d.labels.iter().find(|l| **l >= d.classes.len()) {
                    return Err(format!("label {l} with {} classes", d.classes.len()));
                }
                if d.images.iter().any(|p| !(0.0..=1.0).contains(p)) {
                    return Err("pixel outside [0, 1]".into());
                }
            }
            if s.train.is_empty() {
                return Err("empty training split accepted".into());
            }
            Ok(true)
        }
    }
}

#[test]
fn fuzz_idx() {
    fuzz("idx", idx_seeds(), &idx_structural, &idx_target);
}

// ---------------------------------------------------------------------------------------------
// PNG / JPEG

fn image_seeds() -> Vec<Case> {
    use image::{DynamicImage, ImageFormat};
    let (w, h) = (9u32, 7u32);
    let rgb = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 20) as u8, (y * 30) as u8, 99])
    });
    let imgs = [
        DynamicImage::ImageRgb8(rgb.clone()),
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb.clone()).to_luma8()),
        DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8()),
        DynamicImage::ImageLumaA8(DynamicImage::ImageRgb8(rgb.clone()).to_luma_alpha8()),
        DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(rgb.clone()).to_rgb16()),
        DynamicImage::ImageLuma16(DynamicImage::ImageRgb8(rgb.clone()).to_luma16()),
    ];
    let mut seeds = Vec::new();
    for (i, img) in imgs.iter().enumerate() {
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        seeds.push(Case::one("a/x.png", png));
        if i < 2 {
            let mut jpg = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut jpg), ImageFormat::Jpeg)
                .unwrap();
            seeds.push(Case::one("a/x.jpg", jpg));
        }
    }
    seeds
}

/// PNG chunks: (offset of the length field, data length) while they parse.
fn png_chunks(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 12 <= b.len() {
        let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        if at + 12 + len > b.len() {
            break;
        }
        out.push((at, len));
        at += 12 + len;
    }
    out
}

fn png_fix_crc(b: &mut [u8], at: usize, len: usize) {
    let mut crc = flate2::Crc::new();
    crc.update(&b[at + 4..at + 8 + len]);
    let sum = crc.sum();
    b[at + 8 + len..at + 12 + len].copy_from_slice(&sum.to_be_bytes());
}

fn image_structural(rng: &mut Rng, case: &mut Case) -> bool {
    let b = &mut case.files[0].1;
    if b.starts_with(b"\x89PNG") {
        let chunks = png_chunks(b);
        if chunks.is_empty() {
            return false;
        }
        let (at, len) = *rng.pick(&chunks);
        if &b[at + 4..at + 8] == b"IHDR" && len == 13 && rng.below(3) != 0 {
            // width / height, or one of the five one-byte fields
            let d = at + 8;
            if rng.chance(2) {
                let v = match rng.below(4) {
                    0 => *rng.pick(&INTERESTING_U32),
                    1 => 1 << rng.below(31),
                    _ => rng.below(70_000) as u32,
                };
                put(b, d + 4 * rng.below(2), &v.to_be_bytes());
            } else {
                b[d + 8 + rng.below(5)] = *rng.pick(&[0u8, 1, 2, 3, 4, 6, 8, 16, 0xff]);
            }
            png_fix_crc(b, at, len);
            return true;
        }
        // mutate a chunk's data and keep its length and CRC consistent
        let mut data = b[at + 8..at + 8 + len].to_vec();
        mutate_bytes(rng, &mut data);
        let mut chunk = Vec::with_capacity(data.len() + 12);
        chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
        chunk.extend_from_slice(&b[at + 4..at + 8]);
        chunk.extend_from_slice(&data);
        chunk.extend_from_slice(&[0; 4]);
        png_fix_crc(&mut chunk, 0, data.len());
        b.splice(at..at + 12 + len, chunk);
        return true;
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // JPEG: the frame header's height / width / component count
        let Some(sof) = b
            .windows(2)
            .position(|w| w[0] == 0xff && (0xc0..=0xc2).contains(&w[1]))
        else {
            return false;
        };
        let v = match rng.below(3) {
            0 => *rng.pick(&[0u16, 1, 0x7fff, 0xffff, 8192, 16384]),
            _ => rng.next() as u16,
        };
        match rng.below(4) {
            0 => put(b, sof + 5, &v.to_be_bytes()),
            1 => put(b, sof + 7, &v.to_be_bytes()),
            2 => put(b, sof + 9, &[*rng.pick(&[0u8, 1, 2, 3, 4, 255])]),
            _ => put(b, sof + 2, &v.to_be_bytes()),
        }
        return true;
    }
    false
}

fn image_target(dir: &Path) -> Result<bool, String> {
    let Some(path) = ["a/x.png", "a/x.jpg"]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
    else {
        return Err("no image in the case".into());
    };
    // both entry points, alternating on the size: the folder loader and the single-file one
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let (channels, resize) = if len % 2 == 0 { (3, 8) } else { (1, 5) };
    let r = if len % 3 == 0 {
        load_image_folder(dir, channels, resize).map(|s| s.train)
    } else {
        load_images(std::slice::from_ref(&path), channels, resize)
    };
    match r {
        Err(e) => check_error(&e, dir),
        Ok(d) => {
            if d.len() != 1 || d.images.len() != channels * resize * resize {
                return Err(format!(
                    "{} images, {} values for {channels}x{resize}x{resize}",
                    d.len(),
                    d.images.len()
                ));
            }
            if d.images.iter().any(|p| !p.is_finite()) {
                return Err("non-finite pixel".into());
            }
            Ok(true)
        }
    }
}

#[test]
fn fuzz_images() {
    // the pixel budget, lowered from 64 megapixels so that an accepted large header costs
    // milliseconds: the check is the same
    sptune::runtime::set_max_pixels(1 << 22);
    fuzz("images", image_seeds(), &image_structural, &image_target);
}

// ---------------------------------------------------------------------------------------------
// segmentation folders (images/ + masks/ + classes.txt)

fn segmentation_seeds() -> Vec<Case> {
    use sptune::segmentation::{IGNORE, SegDataset, SegImage, write_mask_folder};
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = Vec::new();
    for (k, channels) in [1usize, 3].into_iter().enumerate() {
        let (h, w) = (4 + k, 5);
        let im = SegImage {
            pixels: (0..channels * h * w)
                .map(|j| (j % 7) as f32 / 7.0)
                .collect(),
            mask: (0..h * w)
                .map(|j| if j % 6 == 0 { IGNORE } else { (j % 3) as u8 })
                .collect(),
            height: h,
            width: w,
        };
        let classes = vec!["bg".into(), "a".into(), "b".into()];
        let ds = SegDataset::new(vec![im], classes, channels, &|i| format!("{i}")).unwrap();
        let root = dir.path().join(k.to_string());
        write_mask_folder(&ds, &root).unwrap();
        let read = |n: &str| std::fs::read(root.join(n)).unwrap();
        let (img, mask, classes) = (
            ("images/00000.png", read("images/00000.png")),
            ("masks/00000.png", read("masks/00000.png")),
            ("classes.txt", read("classes.txt")),
        );
        // the PNG-aware mutations work on the first file: the image in one seed, the mask in
        // the other
        let files = if k == 0 {
            vec![mask, img, classes]
        } else {
            vec![img, mask, classes]
        };
        seeds.push(Case {
            files: files.into_iter().map(|(n, b)| (n.to_string(), b)).collect(),
        });
    }
    seeds
}

fn segmentation_target(dir: &Path) -> Result<bool, String> {
    // gray or RGB, alternating on the image file's size: both conversions are exercised
    let len = std::fs::metadata(dir.join("images/00000.png"))
        .map(|m| m.len())
        .unwrap_or(0);
    let channels = if len.is_multiple_of(2) { 3 } else { 1 };
    match sptune::segmentation::load_mask_folder(dir, channels) {
        Err(e) => check_error(&e, dir),
        Ok(ds) => {
            for im in &ds.images {
                let p = im.height * im.width;
                if im.pixels.len() != channels * p || im.mask.len() != p {
                    return Err(format!(
                        "{} values and {} mask values for {}x{}",
                        im.pixels.len(),
                        im.mask.len(),
                        im.width,
                        im.height
                    ));
                }
                let k = ds.classes.len();
                if im.mask.iter().any(|&v| v != 255 && v as usize >= k) {
                    return Err("a mask value past the classes".into());
                }
                if im.pixels.iter().any(|v| !v.is_finite()) {
                    return Err("non-finite pixel".into());
                }
            }
            Ok(true)
        }
    }
}

#[test]
fn fuzz_segmentation_folders() {
    sptune::runtime::set_max_pixels(1 << 22);
    fuzz(
        "segmentation",
        segmentation_seeds(),
        &image_structural,
        &segmentation_target,
    );
}

// ---------------------------------------------------------------------------------------------
// safetensors checkpoints and Fisher files

fn mlp_spec() -> ModelSpec {
    ModelSpec {
        arch: "mlp".into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        input: [1, 3, 3],
        width: 64,
        small_stem: false,
        hidden: vec![4],
        mean: vec![0.5],
        std: vec![0.25],
    }
}

fn checkpoint_seeds() -> Vec<Case> {
    let dir = tempfile::tempdir().unwrap();
    let spec = mlp_spec();
    let net = spec.init(&Device::flex()).unwrap();
    let p = dir.path().join("m.safetensors");
    save_model(&net, &spec, &p, &[]).unwrap();
    let mut seeds = vec![Case::one("m.safetensors", std::fs::read(&p).unwrap())];
    // a few hand-made tensors: a scalar, an empty tensor, several dtypes
    let t = vec![
        ("s".to_string(), vec![], vec![1.5f32]),
        ("e".to_string(), vec![0, 3], vec![]),
        ("m".to_string(), vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
    ];
    let bytes = to_bytes(&t, &["n.num_batches_tracked".into()], HashMap::new()).unwrap();
    seeds.push(Case::one("m.safetensors", bytes));
    use safetensors::tensor::{Dtype, TensorView};
    let raw: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
        ("h", Dtype::F16, vec![2], vec![0, 0x3c, 0, 0xc0]),
        ("b", Dtype::BF16, vec![2], vec![0x80, 0x3f, 0, 0x40]),
        ("d", Dtype::F64, vec![1], 2.5f64.to_le_bytes().to_vec()),
        ("i", Dtype::I64, vec![1, 1], 7i64.to_le_bytes().to_vec()),
    ];
    let views: Vec<(String, TensorView)> = raw
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = HashMap::from([("spec".to_string(), serde_json::to_string(&spec).unwrap())]);
    seeds.push(Case::one(
        "m.safetensors",
        safetensors::serialize(views, Some(meta)).unwrap(),
    ));
    seeds
}

fn fisher_seeds() -> Vec<Case> {
    let dir = tempfile::tempdir().unwrap();
    let spec = mlp_spec();
    let mut tensors = std::collections::BTreeMap::new();
    tensors.insert("0.weight".to_string(), (vec![4, 9], vec![0.25f32; 36]));
    tensors.insert("0.bias".to_string(), (vec![4], vec![0.0, 1.0, 2.0, 1e-30]));
    let mut seeds = Vec::new();
    for (estimator, mc) in [(Estimator::Exact, 0), (Estimator::Mc, 4)] {
        let f = Fisher {
            tensors: tensors.clone(),
            estimator,
            samples: 100,
            mc_samples: mc,
            path: None,
        };
        let p = dir.path().join("f.safetensors");
        f.save(&p, &spec).unwrap();
        seeds.push(Case::one("f.safetensors", std::fs::read(&p).unwrap()));
    }
    seeds
}

/// Header length, header JSON, `data_offsets` / `shape` / `dtype` / metadata edits.
fn safetensors_structural(rng: &mut Rng, case: &mut Case) -> bool {
    let b = &mut case.files[0].1;
    if b.len() < 8 {
        return false;
    }
    let n = u64::from_le_bytes(b[..8].try_into().unwrap());
    if rng.chance(5) {
        let v = match rng.below(4) {
            0 => *rng.pick(&INTERESTING_U64),
            1 => n.wrapping_add(1),
            2 => n.wrapping_sub(1),
            _ => b.len() as u64 - 8 + rng.below(3) as u64,
        };
        put(b, 0, &v.to_le_bytes());
        return true;
    }
    let Some(end) = usize::try_from(n).ok().and_then(|n| n.checked_add(8)) else {
        return false;
    };
    let Some(Ok(mut header)) = b
        .get(8..end)
        .map(serde_json::from_slice::<serde_json::Value>)
    else {
        return false;
    };
    let Some(obj) = header.as_object_mut() else {
        return false;
    };
    let keys: Vec<String> = obj.keys().cloned().collect();
    if keys.is_empty() {
        return false;
    }
    let key = rng.pick(&keys).clone();
    let entry = obj.get_mut(&key).unwrap();
    if key == "__metadata__" {
        // a metadata value; `spec` is itself JSON and is mutated as such
        if let Some(m) = entry.as_object_mut() {
            let mk: Vec<String> = m.keys().cloned().collect();
            if mk.is_empty() {
                return false;
            }
            let k = rng.pick(&mk).clone();
            let v = m.get_mut(&k).unwrap();
            match v.as_str().map(serde_json::from_str::<serde_json::Value>) {
                Some(Ok(mut inner)) if rng.below(4) != 0 => {
                    mutate_json(rng, &mut inner);
                    *v = serde_json::Value::String(inner.to_string());
                }
                _ => mutate_json(rng, v),
            }
        }
    } else if entry.is_object() {
        match rng.below(5) {
            0 => {
                let o = &mut entry["data_offsets"];
                let i = rng.below(2);
                let old = o.get(i).and_then(|x| x.as_u64()).unwrap_or(0);
                let v = match rng.below(4) {
                    0 => *rng.pick(&INTERESTING_U64),
                    1 => old.wrapping_add(1 + rng.below(8) as u64),
                    2 => old.wrapping_sub(1 + rng.below(8) as u64),
                    _ => rng.below(b.len()) as u64,
                };
                if let Some(x) = o.get_mut(i) {
                    *x = serde_json::json!(v);
                }
            }
            1 => {
                let s = &mut entry["shape"];
                if let Some(a) = s.as_array_mut() {
                    let v = serde_json::json!(*rng.pick(&[0u64, 1, 2, 1 << 20, 1 << 32, u64::MAX]));
                    if a.is_empty() || rng.chance(3) {
                        a.push(v);
                    } else {
                        let i = rng.below(a.len());
                        a[i] = v;
                    }
                }
            }
            2 => {
                let d = *rng.pick(&[
                    "F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "I8",
                    "U64", "C64", "XX",
                ]);
                entry["dtype"] = serde_json::json!(d);
            }
            _ => mutate_json(rng, entry),
        }
    } else {
        mutate_json(rng, entry);
    }
    let mut text = header.to_string().into_bytes();
    // safetensors pads the header with spaces to 8 bytes
    while !text.len().is_multiple_of(8) && rng.chance(2) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&b[end.min(b.len())..]);
    *b = out;
    true
}

fn check_tensors(
    tensors: &std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>,
) -> Result<bool, String> {
    for (name, (shape, vals)) in tensors {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(vals.len()) {
            return Err(format!(
                "tensor {name}: shape {shape:?} but {} values",
                vals.len()
            ));
        }
    }
    Ok(true)
}

fn checkpoint_target(dir: &Path) -> Result<bool, String> {
    let path = dir.join("m.safetensors");
    match Checkpoint::read(&path) {
        Err(e) => check_error(&e, dir),
        Ok(c) => {
            check_tensors(&c.tensors)?;
            // the metadata's spec: parsed and validated, or an error naming the file
            match c.spec() {
                Err(e) => check_error(&e, dir),
                Ok(spec) => spec
                    .validate()
                    .map(|_| true)
                    .map_err(|e| format!("spec() not valid: {e}")),
            }
        }
    }
}

fn fisher_target(dir: &Path) -> Result<bool, String> {
    let path = dir.join("f.safetensors");
    match Fisher::read(&path) {
        Err(e) => check_error(&e, dir),
        Ok(f) => {
            check_tensors(&f.tensors)?;
            for (name, (_, vals)) in &f.tensors {
                if vals.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                    return Err(format!(
                        "Fisher tensor {name} holds a negative or NaN value"
                    ));
                }
            }
            Ok(true)
        }
    }
}

#[test]
fn fuzz_safetensors_checkpoint() {
    fuzz(
        "safetensors",
        checkpoint_seeds(),
        &safetensors_structural,
        &checkpoint_target,
    );
}

#[test]
fn fuzz_fisher() {
    fuzz(
        "fisher",
        fisher_seeds(),
        &safetensors_structural,
        &fisher_target,
    );
}

// ---------------------------------------------------------------------------------------------
// PyTorch .pth

fn pth_seeds() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch");
    [
        "resnet18_w2.pth",
        "resnet18_w2_legacy.pth",
        "resnet18_w2_nested.pth",
        "short_storage.pth",
        "evil_global.pth",
    ]
    .iter()
    .map(|n| Case::one("m.pth", std::fs::read(dir.join(n)).unwrap()))
    .collect()
}

/// The entries of a zip file, if it is one.
fn unzip(b: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(b)).ok()?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).ok()?;
        let mut data = Vec::new();
        let name = f.name().ok()?.to_string();
        f.by_ref().take(1 << 22).read_to_end(&mut data).ok()?;
        out.push((name, data));
    }
    Some(out)
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Sets the argument of a pickle integer opcode (BININT1 `K`, BININT2 `M`, BININT `J`, LONG1
/// with 8 bytes) found at a random place: shapes, strides, offsets and storage sizes.
fn mutate_pickle_ints(rng: &mut Rng, p: &mut [u8]) -> bool {
    let spots: Vec<usize> = p
        .iter()
        .enumerate()
        .filter(|(i, c)| matches!(c, b'K' | b'M' | b'J' | 0x8a) && i + 1 < p.len())
        .map(|(i, _)| i)
        .collect();
    if spots.is_empty() {
        return false;
    }
    let at = *rng.pick(&spots);
    match p[at] {
        b'K' => p[at + 1] = *rng.pick(&INTERESTING_U8),
        b'M' => put(
            p,
            at + 1,
            &(*rng.pick(&INTERESTING_U32) as u16).to_le_bytes(),
        ),
        b'J' => put(p, at + 1, &rng.pick(&INTERESTING_U32).to_le_bytes()),
        _ => {
            // LONG1: a length byte, then that many little-endian bytes
            if p[at + 1] == 8 {
                put(p, at + 2, &rng.pick(&INTERESTING_U64).to_le_bytes());
            } else {
                p[at + 1] = *rng.pick(&[0u8, 1, 8, 0xff]);
            }
        }
    }
    true
}

fn pth_structural(rng: &mut Rng, case: &mut Case) -> bool {
    let b = &mut case.files[0].1;
    if !b.starts_with(b"PK") {
        // the legacy format is a bare pickle stream (then raw storages)
        return mutate_pickle_ints(rng, b);
    }
    let Some(mut entries) = unzip(b) else {
        return false;
    };
    if entries.is_empty() {
        return false;
    }
    // mostly the pickle; sometimes a storage or another entry
    let pkl = entries.iter().position(|(n, _)| n.ends_with(".pkl"));
    let i = match pkl {
        Some(i) if rng.below(4) != 0 => i,
        _ => rng.below(entries.len()),
    };
    let is_pkl = entries[i].0.ends_with(".pkl");
    let e = &mut entries[i].1;
    let changed = if is_pkl && rng.chance(2) {
        mutate_pickle_ints(rng, e)
    } else {
        mutate_bytes(rng, e);
        true
    };
    if rng.chance(10) {
        entries.remove(rng.below(entries.len()));
    }
    *b = rezip(&entries);
    changed
}

fn pth_target(dir: &Path) -> Result<bool, String> {
    match Checkpoint::read(&dir.join("m.pth")) {
        Err(e) => check_error(&e, dir),
        Ok(c) => check_tensors(&c.tensors),
    }
}

#[test]
fn fuzz_pth() {
    fuzz("pth", pth_seeds(), &pth_structural, &pth_target);
}

// ---------------------------------------------------------------------------------------------
// TOML configs

fn config_seeds() -> Vec<Case> {
    let mut texts = vec![
        sptune::run::config::to_toml(&FinetuneConfig::new("w0.safetensors", "5-9")).unwrap(),
        sptune::run::config::to_toml(&PretrainConfig::default()).unwrap(),
        "out = \"runs/tuned.safetensors\"\n[start]\ninit = \"runs/source.safetensors\"\n\
         [data]\nclasses = \"5-9\"\nper_class = 20\n[train]\nreg = \"l2-sp\"\nalpha = 0.1\n"
            .to_string(),
        "name = \"my-study\"\nschemes = [\"l2\", \"l2-sp\", \"l2-sp-fisher\"]\nseeds = 5\n\
         [source]\ninit = \"runs/source.safetensors\"\n[target]\nclasses = \"5-9\"\n\
         per_class = 20\n[train]\nepochs = 20\nbatch_size = 32\n[search]\nmethod = \"random\"\n\
         trials = 8\nlr = [0.02]\n[search.alpha]\nl2-sp = [0.001, 10.0]\n"
            .to_string(),
    ];
    for preset in ["fashion-mnist", "efficientnet-lite0"] {
        texts.push(toml::to_string(&StudyConfig::preset(preset).unwrap()).unwrap());
    }
    texts
        .into_iter()
        .map(|t| Case::one("c.toml", t.into_bytes()))
        .collect()
}

/// Values replaced by extremes, unknown keys and tables, duplicated lines, deep nesting.
fn toml_structural(rng: &mut Rng, case: &mut Case) -> bool {
    let b = &mut case.files[0].1;
    let Ok(text) = std::str::from_utf8(b) else {
        return false;
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let i = rng.below(lines.len());
    let extremes: [&str; 24] = [
        "-1",
        "0",
        "1e308",
        "-1e308",
        "1e-320",
        "nan",
        "-inf",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "\"\"",
        "\"-1\"",
        "[]",
        "{}",
        "[1e308, -1]",
        "[-1, -1]",
        "true",
        "1979-05-27T07:32:00Z",
        "'''\nx\n'''",
        "\"\\u0000\"",
        "\"\\n\"",
        "{ a = 1 }",
        "[[]]",
        "\"é\"",
    ];
    match rng.below(8) {
        0..=2 => {
            let Some((k, _)) = lines[i].split_once('=') else {
                return false;
            };
            let v = match rng.below(10) {
                0 => format!("\"{}\"", "x".repeat(1 + rng.below(200_000))),
                1 => {
                    let d = 1 + rng.below(3000);
                    format!("{}1{}", "[".repeat(d), "]".repeat(d))
                }
                2 => {
                    let d = 1 + rng.below(3000);
                    format!("{}1{}", "{a=".repeat(d), "}".repeat(d))
                }
                _ => rng.pick(&extremes).to_string(),
            };
            lines[i] = format!("{k}= {v}");
        }
        3 => lines.insert(i, format!("unknown_{} = 1", rng.below(100))),
        4 => {
            let t = *rng.pick(&[
                "[unknown]",
                "[train.extra]",
                "[train]",
                "[[train]]",
                "[source.pretrain]",
                "[source.pretrain.model]",
                "[search.alpha]",
                "[data]",
                "[]",
            ]);
            lines.insert(i, t.to_string());
        }
        5 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        6 => {
            lines.remove(i);
        }
        _ => {
            // a key from another line with a value from a third
            let j = rng.below(lines.len());
            let k = lines[i].split_once('=').map(|(k, _)| k.to_string());
            let v = lines[j].split_once('=').map(|(_, v)| v.to_string());
            match (k, v) {
                (Some(k), Some(v)) => lines[i] = format!("{k}={v}"),
                _ => return false,
            }
        }
    }
    *b = lines.join("\n").into_bytes();
    true
}

/// Accepted: by at least one of the three parsers.
fn config_target(dir: &Path) -> Result<bool, String> {
    let path = dir.join("c.toml");
    let mut accepted = false;
    match FinetuneConfig::from_toml(&path) {
        Err(e) => check_error(&e, dir).map(|_| ())?,
        Ok(c) => {
            // validation errors name the option, not the file; they only must not panic
            let _ = c.validate();
            accepted = true;
        }
    }
    match PretrainConfig::from_toml(&path) {
        Err(e) => check_error(&e, dir).map(|_| ())?,
        Ok(c) => {
            let _ = c.validate();
            accepted = true;
        }
    }
    match StudyConfig::from_toml(&path) {
        Err(e) => check_error(&e, dir).map(|_| ())?,
        // from_toml validates: what it returns passes validate again
        Ok(c) => {
            c.validate()
                .map_err(|e| format!("accepted, then invalid: {e}"))?;
            accepted = true;
        }
    }
    Ok(accepted)
}

#[test]
fn fuzz_configs() {
    fuzz("configs", config_seeds(), &toml_structural, &config_target);
}

// ---------------------------------------------------------------------------------------------
// the harness itself

#[test]
fn harness_reports_a_panicking_reader() {
    // a reader that panics on one byte value: the harness must find it and fail
    let target = |dir: &Path| -> Result<bool, String> {
        let b = std::fs::read(dir.join("x")).unwrap();
        assert!(!b.contains(&0xff), "found 0xff");
        Ok(true)
    };
    let r = catch_unwind(|| {
        fuzz_for(
            "self-test",
            Duration::from_secs(5),
            false,
            vec![Case::one("x", vec![1, 2, 3])],
            &|_, _| false,
            &target,
        )
    });
    let msg = panic_text(&*r.expect_err("the harness missed a panic"));
    assert!(msg.contains("panic: found 0xff"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// regression cases found by the fuzzer (each fixed in the reader named)

/// Writes `text` as `c.toml` in a fresh folder and checks that each config parser refuses it
/// with a one-line error naming the file.
fn refused_on_one_line(text: &str, parsers: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    for p in parsers {
        let e = match *p {
            "finetune" => FinetuneConfig::from_toml(&path).map(|_| ()),
            "pretrain" => PretrainConfig::from_toml(&path).map(|_| ()),
            _ => StudyConfig::from_toml(&path).map(|_| ()),
        }
        .expect_err(p)
        .to_string();
        assert!(!e.contains(['\n', '\r']), "{p}: {e:?}");
        assert!(e.contains(&*path.to_string_lossy()), "{p}: {e:?}");
    }
}

/// run/config.rs, study/config.rs: toml's "unknown variant" quotes the value, newline and all.
#[test]
fn regression_config_unknown_variant_with_newline() {
    refused_on_one_line(
        "[train]\nreg = \"\\n\"\n",
        &["finetune", "pretrain", "study"],
    );
    refused_on_one_line("[train]\nbn = \"x\\r\\n\"\n", &["finetune", "study"]);
}

/// study/config.rs: the key echoed from the offending line held a carriage return.
#[test]
fn regression_study_error_key_with_carriage_return() {
    let text = "name = \"s\"\nn\rme = \"x\"\n";
    refused_on_one_line(text, &["study"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let e = StudyConfig::from_toml(&path).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
}

/// Checks that reading `bytes` as `name` with `read` fails with one line naming the file.
fn read_refused_on_one_line(name: &str, bytes: &[u8], read: fn(&Path) -> sptune::Result<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let e = read(&path).expect_err("refused").to_string();
    assert!(!e.contains(['\n', '\r']), "{e:?}");
    assert!(e.contains(&*path.to_string_lossy()), "{e:?}");
}

/// models/pytorch.rs: burn-store's message quotes the pickle's global name, which held a
/// carriage return (found as `torch.Float\rs.Storage` in a mutated `resnet18_w2.pth`).
#[test]
fn regression_pth_global_name_with_carriage_return() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch/resnet18_w2.pth");
    let mut entries = unzip(&std::fs::read(fixture).unwrap()).unwrap();
    let pkl = &mut entries
        .iter_mut()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap()
        .1;
    let (from, to) = (
        &b"torch\nFloatStorage\n"[..],
        &b"torch\nFloat\rs.Storage\n"[..],
    );
    let at = pkl.windows(from.len()).position(|w| w == from).unwrap();
    pkl.splice(at..at + from.len(), to.iter().copied());
    let read = |p: &Path| Checkpoint::read(p).map(|_| ());
    read_refused_on_one_line("m.pth", &rezip(&entries), read);
    // the same name in a refused foreign global (legacy pickle, the evil_global.pth layout)
    let legacy = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01cpo\rsix\nsys\ntem\nq\x02X\x01\x00\x00\x00xq\x03\x85q\x04Rq\x05s.";
    read_refused_on_one_line("m.pth", legacy, read);
}

/// models/checkpoint.rs, fisher/mod.rs: a tensor name holding a newline, quoted by an error.
#[test]
fn regression_safetensors_tensor_name_with_newline() {
    use safetensors::tensor::{Dtype, TensorView};
    let data = [1u8, 2];
    let view = TensorView::new(Dtype::U8, vec![2], &data).unwrap();
    let bytes = safetensors::serialize(vec![("a\nb".to_string(), view)], None).unwrap();
    read_refused_on_one_line("m.safetensors", &bytes, |p| Checkpoint::read(p).map(|_| ()));
    read_refused_on_one_line("f.safetensors", &bytes, |p| Fisher::read(p).map(|_| ()));
    let neg = (-1f32).to_le_bytes();
    let view = TensorView::new(Dtype::F32, vec![1], &neg).unwrap();
    let bytes = safetensors::serialize(vec![("a\rb".to_string(), view)], None).unwrap();
    read_refused_on_one_line("f.safetensors", &bytes, |p| Fisher::read(p).map(|_| ()));
}
