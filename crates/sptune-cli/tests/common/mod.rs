//! Helpers shared by the CLI's integration tests: the binary under test, one run of it, and a
//! path as an argument.

#![allow(dead_code)] // not every test file uses every helper

use std::path::Path;
use std::process::Command;

/// The `sptune` binary, quiet (no progress bars).
pub fn sptune() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sptune"));
    c.arg("--quiet");
    c
}

/// What one run printed and returned.
pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub stdout: String,
}

/// `sptune ARGS`, waited for.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let o = sptune().args(args).output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
    }
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Exit 2, one line on stderr containing every needle, no panic, nothing on stdout, and
/// `out` (if given) not written, no temporary file beside it.
pub fn assert_clean_failure(r: &Run, needles: &[&str], out: Option<&Path>) {
    assert_eq!(r.code, 2, "expected exit 2; stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one error line, got: {:?}",
        r.stderr
    );
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error {:?} does not mention {n:?}",
            lines[0]
        );
    }
    assert!(r.stdout.trim().is_empty(), "stdout: {}", r.stdout);
    if let Some(out) = out {
        assert!(
            !out.exists(),
            "{} was written despite the error",
            out.display()
        );
        if let Some(rd) = out.parent().and_then(|dir| std::fs::read_dir(dir).ok()) {
            for e in rd {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "temporary file {name} left behind");
            }
        }
    }
}

pub fn assert_success(r: &Run) {
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

/// A tiny IDX data set: 8x8 images whose class is encoded by which row is bright.
pub fn tiny_idx(dir: &Path, classes: u8, per_class: usize) {
    tiny_idx_without(dir, classes, per_class, None)
}

/// [`tiny_idx`] where `skip_class` has no training images.
pub fn tiny_idx_without(dir: &Path, classes: u8, per_class: usize, skip_class: Option<u8>) {
    for (split, n_per) in [("train", per_class), ("t10k", per_class / 2)] {
        let (mut img, mut lab) = (vec![], vec![]);
        for i in 0..(classes as usize * n_per) {
            let c = (i % classes as usize) as u8;
            if split == "train" && Some(c) == skip_class {
                continue;
            }
            for p in 0..64usize {
                let v = if p / 8 == c as usize % 8 {
                    200
                } else {
                    ((i * 7 + p * 13) % 40) as u8
                };
                img.push(v);
            }
            lab.push(c);
        }
        let n = lab.len();
        sptune::data::write_idx(
            &img,
            &lab,
            n,
            8,
            8,
            &dir.join(format!("{split}-images-idx3-ubyte")),
            &dir.join(format!("{split}-labels-idx1-ubyte")),
        )
        .unwrap();
    }
}

/// Pretrains a tiny MLP (8x8 inputs, hidden 16,16: two stages) on `data` into `out`.
pub fn pretrain_mlp(data: &Path, out: &Path) {
    assert_success(&run(&[
        "pretrain",
        "--data",
        s(data),
        "--arch",
        "mlp",
        "--hidden",
        "16,16",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        s(out),
    ]));
}

/// `n` 8x8 grey PNGs per class under `root/CLASS/`: class k has row 2k bright.
pub fn class_folders(root: &Path, classes: &[&str], n: usize) {
    for (k, c) in classes.iter().enumerate() {
        let dir = root.join(c);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let px: Vec<u8> = (0..64)
                .map(|p| {
                    if p / 8 == 2 * k {
                        230
                    } else {
                        ((i * 11 + p * 7) % 60) as u8
                    }
                })
                .collect();
            let f = std::fs::File::create(dir.join(format!("{i:02}.png"))).unwrap();
            let mut e = png::Encoder::new(std::io::BufWriter::new(f), 8, 8);
            e.set_color(png::ColorType::Grayscale);
            e.set_depth(png::BitDepth::Eight);
            e.write_header().unwrap().write_image_data(&px).unwrap();
        }
    }
}

/// The largest peak resident memory, in bytes, of any child process this test binary has
/// waited for so far (`getrusage(RUSAGE_CHILDREN)`).
pub fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as u64 * 1024
}

/// Every process whose command line mentions `needle` (Linux `/proc`), as (pid, command line).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = vec![];
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(needle) {
            out.push((pid, line));
        }
    }
    out
}
