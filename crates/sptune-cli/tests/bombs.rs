//! Small hostile files that used to exhaust memory (issue 12): each is refused with one line
//! naming the file and the offending value, exit 2, no panic, nothing written, and the child's
//! peak resident memory stays under 1 GB. Its own test binary, so that the children measured
//! here are the only ones this process reaps.
//!
//! Each case prints the child's peak RSS (`cargo test --release -p sptune-cli --test bombs --
//! --nocapture` shows them).

#![cfg(target_os = "linux")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peak resident memory a child may reach, in KiB (1 GB).
const MAX_RSS_KIB: i64 = 1_000_000;
/// How long a child may run before it is killed and the case fails.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Outcome {
    code: i32,
    stderr: String,
    stdout: String,
    peak_kib: i64,
}

/// Runs `sptune --quiet ARGS`, reaps it with `wait4` and reads its peak RSS (`ru_maxrss`, KiB on
/// Linux). A child running past [`TIMEOUT`] is killed and the case fails.
fn run_measured(case: &str, args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sptune"));
    cmd.arg("--quiet")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    // Linux carries the memory peak of the image a process replaces into its `ru_maxrss`. A
    // child started by vfork/posix_spawn (std's default) shares this test process's memory
    // until exec, so it would report this process's own peak (the buffers the hostile files
    // were built in). A pre-exec hook makes std fork instead: the child then starts from this
    // process's current RSS (a few MB, printed as `parent`) rather than its peak.
    // SAFETY: the hook does nothing, so it is async-signal-safe
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || Ok(()));
    }
    let parent_kib = current_rss_kib();
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child, not yet reaped; the pointers are valid for the call
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if start.elapsed() > TIMEOUT {
            // SAFETY: signalling our own unreaped child
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            panic!(
                "{case}: still running after {TIMEOUT:?} (peak RSS {} MB)",
                usage.ru_maxrss / 1000
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // the Child was reaped by hand: forget it so its drop does nothing
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let o = Outcome {
        code,
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        peak_kib: usage.ru_maxrss,
    };
    eprintln!(
        "{case}: exit {}, peak RSS {:.1} MiB ({} KiB; parent at spawn {parent_kib} KiB), \
         {:.2} s; stderr: {}",
        o.code,
        o.peak_kib as f64 / 1024.0,
        o.peak_kib,
        start.elapsed().as_secs_f64(),
        o.stderr.trim_end()
    );
    o
}

/// This process's resident memory now, in KiB (`/proc/self/statm`).
fn current_rss_kib() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64 / 1024
}

/// The refusal every case expects: exit 2, one line on stderr mentioning each of `needles`, no
/// panic, `out` not written (nor a temporary beside it), peak RSS under 1 GB.
fn assert_refused(case: &str, o: &Outcome, needles: &[&str], out: Option<&Path>) {
    assert!(!o.stderr.contains("panicked"), "{case}: {}", o.stderr);
    assert_eq!(o.code, 2, "{case}: exit {}; stderr: {}", o.code, o.stderr);
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{case}: expected one line: {:?}", o.stderr);
    assert!(lines[0].starts_with("error: "), "{case}: {}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "{case}: {:?} lacks {n:?}", lines[0]);
    }
    if let Some(out) = out {
        assert!(!out.exists(), "{case}: {} was written", out.display());
        if let Some(Ok(rd)) = out.parent().map(std::fs::read_dir) {
            for e in rd {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "{case}: {name} left behind");
            }
        }
    }
    assert!(
        o.peak_kib < MAX_RSS_KIB,
        "{case}: peak RSS {} KiB, over {MAX_RSS_KIB}",
        o.peak_kib
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// file builders

fn gz_member(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

/// A valid tiny IDX set (4 images of 4x4 per split) in `dir`, gzip-compressed.
fn tiny_idx_gz(dir: &Path) {
    for split in ["train", "t10k"] {
        let mut img = idx_header(0x803, &[4, 4, 4]);
        img.extend((0..64u8).map(|v| v * 3));
        let mut lab = idx_header(0x801, &[4]);
        lab.extend([0u8, 1, 0, 1]);
        std::fs::write(
            dir.join(format!("{split}-images-idx3-ubyte.gz")),
            gz_member(&img),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{split}-labels-idx1-ubyte.gz")),
            gz_member(&lab),
        )
        .unwrap();
    }
}

/// `total` zero bytes as concatenated gzip members of 64 MiB (one member compressed once, then
/// repeated: a gigabyte of zeros is a few megabytes of file, made in a fraction of a second).
fn gz_zeros(total: u64) -> Vec<u8> {
    const CHUNK: u64 = 64 << 20;
    let member = gz_member(&vec![0u8; CHUNK as usize]);
    let mut out = Vec::new();
    for _ in 0..total / CHUNK {
        out.extend_from_slice(&member);
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A gray 8-bit PNG of `w x h` black pixels, written by hand: IHDR, one IDAT holding the zlib
/// stream of `h` rows (filter byte 0 and `w` zeros), IEND. 20000x20000 is about 400 KB of file
/// and 400 MB of pixels (1.6 GB once converted to f32).
fn black_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // depth 8, gray, deflate, filter 0, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    let row = vec![0u8; w as usize + 1];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..h {
        z.write_all(&row).unwrap();
    }
    png_chunk(&mut out, b"IDAT", &z.finish().unwrap());
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A small safetensors MLP checkpoint (`input` c x h x w, no hidden layer, 2 classes) whose
/// sptune `spec` metadata is `spec_override` when given (the tensors stay those of the small
/// model).
fn mlp_checkpoint(path: &Path, spec_override: Option<serde_json::Value>) {
    use safetensors::tensor::{Dtype, TensorView};
    let input = [1usize, 4, 4];
    let spec = serde_json::json!({
        "arch": "mlp", "classes": ["a", "b"], "input": input, "width": 64,
        "small_stem": false, "hidden": [], "mean": [0.0], "std": [1.0],
    });
    let spec = spec_override.unwrap_or(spec);
    let w: Vec<u8> = (0..32)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect();
    let b: Vec<u8> = [0f32, 0.1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        (
            "fc1.weight".to_string(),
            TensorView::new(Dtype::F32, vec![2, 16], &w).unwrap(),
        ),
        (
            "fc1.bias".to_string(),
            TensorView::new(Dtype::F32, vec![2], &b).unwrap(),
        ),
    ];
    let mut meta = std::collections::HashMap::new();
    meta.insert("spec".to_string(), spec.to_string());
    meta.insert("arch".to_string(), "mlp".to_string());
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

/// Pickle BINUNICODE.
fn pk_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Pickle BININT (4-byte signed).
fn pk_int(out: &mut Vec<u8>, v: i32) {
    out.push(b'J');
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `torch.save` zip file, written by hand, holding one float tensor `name` of `shape` with
/// `strides`, a view of a storage of `storage_len` floats: what
/// `torch.save({name: torch.ones(storage_len).as_strided(shape, strides)}, path)` would write
/// without the `.clone()` PyTorch makes for stride-0 tensors (a hostile writer skips it).
fn pth_view(path: &Path, name: &str, storage_len: usize, shape: &[i32], strides: &[i32]) {
    let mut p = vec![0x80, 2, b'}']; // PROTO 2, EMPTY_DICT
    pk_str(&mut p, name);
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    // persistent id ('storage', torch.FloatStorage, '0', 'cpu', numel) -> BINPERSID
    p.push(b'(');
    pk_str(&mut p, "storage");
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    pk_str(&mut p, "0");
    pk_str(&mut p, "cpu");
    pk_int(&mut p, storage_len as i32);
    p.extend_from_slice(b"tQ");
    pk_int(&mut p, 0); // storage offset
    p.push(b'(');
    for &d in shape {
        pk_int(&mut p, d);
    }
    p.extend_from_slice(b"t(");
    for &d in strides {
        pk_int(&mut p, d);
    }
    p.push(b't');
    p.push(0x89); // requires_grad = False
    p.extend_from_slice(b"ccollections\nOrderedDict\n)R"); // backward hooks
    p.extend_from_slice(b"tRs."); // args tuple, REDUCE, SETITEM, STOP
    let storage: Vec<u8> = (0..storage_len).flat_map(|_| 1f32.to_le_bytes()).collect();
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (entry, bytes) in [
        ("archive/data.pkl", &p[..]),
        ("archive/data/0", &storage[..]),
        ("archive/version", b"3\n"),
    ] {
        z.start_file(entry, opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

// ---------------------------------------------------------------------------------------------
// the cases

/// A gzip IDX file inflating to 2 GiB of zeros after a header announcing 4 images of 4x4: only
/// the announced bytes (and a bounded probe past them) are inflated.
#[test]
fn gzip_bomb_behind_a_small_header() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx_gz(d.path());
    let f = d.path().join("train-images-idx3-ubyte.gz");
    let mut bomb = gz_member(&idx_header(0x803, &[4, 4, 4]));
    bomb.extend(gz_zeros(2 << 30));
    std::fs::write(&f, &bomb).unwrap();
    eprintln!("gzip bomb: {} bytes of file", bomb.len());
    let out = d.path().join("out/m.safetensors");
    let o = run_measured(
        "gzip bomb (trailing zeros)",
        &[
            "pretrain",
            "--data",
            s(d.path()),
            "--arch",
            "mlp",
            "--epochs",
            "1",
            "--out",
            s(&out),
        ],
    );
    assert_refused(
        "gzip bomb (trailing zeros)",
        &o,
        &["train-images-idx3-ubyte.gz", "trailing bytes"],
        Some(&out),
    );
}

/// A gzip IDX file whose header announces 2^16 images of 256x256 (2^32 pixels) and which holds
/// them, as 4 GiB of zeros compressed to a few MB: refused from the header alone.
#[test]
fn gzip_bomb_with_a_huge_header() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx_gz(d.path());
    let f = d.path().join("train-images-idx3-ubyte.gz");
    let mut bomb = gz_member(&idx_header(0x803, &[1 << 16, 256, 256]));
    bomb.extend(gz_zeros(4 << 30));
    std::fs::write(&f, &bomb).unwrap();
    let out = d.path().join("out/m.safetensors");
    let o = run_measured(
        "gzip bomb (huge header)",
        &[
            "pretrain",
            "--data",
            s(d.path()),
            "--arch",
            "mlp",
            "--epochs",
            "1",
            "--out",
            s(&out),
        ],
    );
    assert_refused(
        "gzip bomb (huge header)",
        &o,
        &[
            "train-images-idx3-ubyte.gz",
            "65536 images of 256x256",
            "over the limit",
        ],
        Some(&out),
    );
}

/// A 20000x20000 PNG of a few hundred KB given to `predict`.
#[test]
fn png_pixel_bomb_in_predict() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m.safetensors");
    mlp_checkpoint(&model, None);
    let img = d.path().join("huge.png");
    let png = black_png(20000, 20000);
    std::fs::write(&img, &png).unwrap();
    eprintln!("PNG bomb: {} bytes of file", png.len());
    let o = run_measured(
        "PNG 20000x20000 (predict)",
        &["predict", "--model", s(&model), s(&img)],
    );
    assert_refused(
        "PNG 20000x20000 (predict)",
        &o,
        &["huge.png", "20000x20000", "--max-pixels"],
        None,
    );
}

/// Four 20000x20000 PNGs in an image folder, decoded in parallel (one per core) by `pretrain`.
#[test]
fn png_pixel_bombs_in_an_image_folder() {
    let d = tempfile::tempdir().unwrap();
    let png = black_png(20000, 20000);
    for class in ["a", "b"] {
        let dir = d.path().join("data").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..2 {
            std::fs::write(dir.join(format!("{i}.png")), &png).unwrap();
        }
    }
    let out = d.path().join("out/m.safetensors");
    let o = run_measured(
        "4 PNGs 20000x20000 (image folder)",
        &[
            "pretrain",
            "--data",
            s(&d.path().join("data")),
            "--arch",
            "mlp",
            "--epochs",
            "1",
            "--out",
            s(&out),
        ],
    );
    // whichever thread fails first, the error names the first file in order
    assert_refused(
        "4 PNGs 20000x20000 (image folder)",
        &o,
        &["0.png", "20000x20000", "over the limit"],
        Some(&out),
    );
}

/// `--max-pixels` lowers the budget: a 64x64 PNG is refused under `--max-pixels 1000` and
/// accepted by default.
#[test]
fn max_pixels_flag_is_honoured() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m.safetensors");
    mlp_checkpoint(&model, None);
    let img = d.path().join("small.png");
    std::fs::write(&img, black_png(64, 64)).unwrap();
    let o = run_measured(
        "PNG 64x64 under --max-pixels 1000",
        &[
            "--max-pixels",
            "1000",
            "predict",
            "--model",
            s(&model),
            s(&img),
        ],
    );
    assert_refused(
        "PNG 64x64 under --max-pixels 1000",
        &o,
        &["small.png", "4096 pixels", "1000"],
        None,
    );
    let o = run_measured(
        "PNG 64x64 (default budget)",
        &["predict", "--model", s(&model), s(&img)],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("small.png"), "{}", o.stdout);
}

/// A `.pth` of a few hundred bytes whose one tensor is a stride-0 view of one float as
/// 25000x25000 (2.5 GB as f32).
#[test]
fn pth_stride_zero_view() {
    let d = tempfile::tempdir().unwrap();
    let pth = d.path().join("expand.pth");
    pth_view(&pth, "fc1.weight", 1, &[25000, 25000], &[0, 0]);
    eprintln!(
        "stride-0 .pth: {} bytes of file",
        std::fs::metadata(&pth).unwrap().len()
    );
    let out = d.path().join("out.safetensors");
    let o = run_measured(
        ".pth stride-0 25000x25000",
        &["convert", s(&pth), s(&out), "--arch", "mlp"],
    );
    assert_refused(
        ".pth stride-0 25000x25000",
        &o,
        &["expand.pth", "fc1.weight", "[25000, 25000]", "2500000000"],
        Some(&out),
    );
}

/// Checkpoints whose `spec` metadata asks for a hidden layer of 2^40 units, an input of
/// 3x2^20x2^20, or a ResNet of width 4096 (about 180 billion values).
#[test]
fn checkpoint_spec_with_huge_sizes() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("small.png");
    std::fs::write(&img, black_png(8, 8)).unwrap();
    let base = serde_json::json!({
        "arch": "mlp", "classes": ["a", "b"], "input": [1, 4, 4], "width": 64,
        "small_stem": false, "hidden": [], "mean": [0.0], "std": [1.0],
    });
    let mut hidden = base.clone();
    hidden["hidden"] = serde_json::json!([1u64 << 40]);
    let mut input = base.clone();
    input["input"] = serde_json::json!([3, 1 << 20, 1 << 20]);
    input["mean"] = serde_json::json!([0.0, 0.0, 0.0]);
    input["std"] = serde_json::json!([1.0, 1.0, 1.0]);
    let mut wide = base.clone();
    wide["arch"] = "resnet101".into();
    wide["width"] = 4096.into();
    let mut layers = base.clone();
    layers["hidden"] = serde_json::json!([1 << 20, 1 << 20, 1 << 20]);
    for (case, spec, needles) in [
        (
            "spec hidden [2^40]",
            hidden,
            vec!["hidden", "1099511627776"],
        ),
        (
            "spec input [3, 2^20, 2^20]",
            input,
            vec!["input", "1048576"],
        ),
        (
            "spec resnet101 width 4096",
            wide,
            vec!["resnet101", "over the limit"],
        ),
        (
            "spec hidden [2^20] x 3",
            layers,
            vec!["mlp network", "over the limit"],
        ),
    ] {
        let model = d.path().join("bomb.safetensors");
        mlp_checkpoint(&model, Some(spec));
        let o = run_measured(case, &["predict", "--model", s(&model), s(&img)]);
        let mut n = vec!["bomb.safetensors"];
        n.extend(needles);
        assert_refused(case, &o, &n, None);
        // the paths that rebuild a network from a checkpoint all validate its spec
        let out = d.path().join("out.safetensors");
        let o = run_measured(case, &["convert", s(&model), s(&out)]);
        assert_refused(case, &o, &n, Some(&out));
        let o = run_measured(case, &["eval", "--model", s(&model), "--data", s(d.path())]);
        assert_refused(case, &o, &n, None);
    }
}

/// `/dev/zero` (endless) and a FIFO (blocks on open) as a checkpoint and as an image.
#[test]
fn non_regular_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m.safetensors");
    mlp_checkpoint(&model, None);
    let img = d.path().join("ok.png");
    std::fs::write(&img, black_png(8, 8)).unwrap();
    let fifo = d.path().join("fifo.png");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fifo_model = d.path().join("fifo-model");
    let c = std::ffi::CString::new(s(&fifo_model)).unwrap();
    // SAFETY: as above
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "/dev/zero as image",
            vec!["predict", "--model", s(&model), "/dev/zero"],
            "/dev/zero",
        ),
        (
            "/dev/zero as model",
            vec!["predict", "--model", "/dev/zero", s(&img)],
            "/dev/zero",
        ),
        (
            "FIFO as image",
            vec!["predict", "--model", s(&model), s(&fifo)],
            "fifo.png",
        ),
        (
            "FIFO as model",
            vec!["predict", "--model", s(&fifo_model), s(&img)],
            "fifo-model",
        ),
    ];
    for (case, args, name) in cases {
        let o = run_measured(case, &args);
        assert_refused(case, &o, &[name, "not a regular file"], None);
    }
    // as a data set's IDX file and as a config file
    let data = d.path().join("idx");
    std::fs::create_dir(&data).unwrap();
    tiny_idx_gz(&data);
    let target = data.join("train-labels-idx1-ubyte.gz");
    std::fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &target).unwrap();
    let out = d.path().join("out/m.safetensors");
    let o = run_measured(
        "/dev/zero as IDX file",
        &[
            "pretrain",
            "--data",
            s(&data),
            "--arch",
            "mlp",
            "--out",
            s(&out),
        ],
    );
    assert_refused(
        "/dev/zero as IDX file",
        &o,
        &["train-labels-idx1-ubyte.gz", "not a regular file"],
        Some(&out),
    );
    let o = run_measured(
        "/dev/zero as config",
        &["pretrain", "--config", "/dev/zero", "--out", s(&out)],
    );
    assert_refused("/dev/zero as config", &o, &["/dev/zero"], Some(&out));
}

/// `--threads 100000` is lowered to the machine's parallelism with a one-line note, and the
/// command runs.
#[test]
fn absurd_thread_count_is_capped() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m.safetensors");
    mlp_checkpoint(&model, None);
    let img = d.path().join("ok.png");
    std::fs::write(&img, black_png(8, 8)).unwrap();
    let o = run_measured(
        "--threads 100000",
        &[
            "--threads",
            "100000",
            "predict",
            "--model",
            s(&model),
            s(&img),
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", o.stderr);
    assert!(
        lines[0].starts_with("note: --threads 100000 lowered to"),
        "{}",
        lines[0]
    );
    assert!(o.stdout.contains("ok.png"), "{}", o.stdout);
}
