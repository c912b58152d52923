//! Kill and resume, end to end: a `finetune` killed (SIGKILL) at a random moment and continued
//! with `--resume RUN_DIR` writes the same checkpoint tensors, bit for bit, and the same
//! `summary.csv` (but the wall-time column) as one run never interrupted. The kill moments are
//! drawn from a seeded generator over the uninterrupted run's wall time, so some land before
//! the first epoch ends (the resumed run starts over) and some between epochs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use sptune::models::checkpoint::Checkpoint;

mod common;
use common::sptune;

/// 10 classes of 8x8 images: the class is the bright row (mod 8) plus a column band for 8, 9.
fn tiny_idx(dir: &Path, per_class: usize) {
    for (split, n_per) in [("train", per_class), ("t10k", per_class / 4)] {
        let (mut img, mut lab) = (vec![], vec![]);
        for i in 0..(10 * n_per) {
            let c = i % 10;
            for p in 0..64usize {
                let (row, col) = (p / 8, p % 8);
                let on = row == c % 8 || (c >= 8 && col == c - 6);
                img.push(if on {
                    200
                } else {
                    ((i * 7 + p * 13) % 60) as u8
                });
            }
            lab.push(c as u8);
        }
        sptune::data::write_idx(
            &img,
            &lab,
            lab.len(),
            8,
            8,
            &dir.join(format!("{split}-images-idx3-ubyte")),
            &dir.join(format!("{split}-labels-idx1-ubyte")),
        )
        .unwrap();
    }
}

fn ok(c: &mut Command) {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed: {}",
        c,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn finetune(data: &Path, init: &Path, out: &Path) -> Command {
    let mut c = sptune();
    c.args(["finetune", "--data"]).arg(data);
    c.arg("--init").arg(init);
    c.args([
        "--classes",
        "5-9",
        "--per-class",
        "120",
        "--val-fraction",
        "0.2",
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--augment",
        "true",
        "--lr",
        "0.05",
        "--reg",
        "l2-sp",
        "--alpha",
        "0.01",
        "--seed",
        "4",
    ]);
    c.arg("--out").arg(out);
    c
}

/// Every tensor's bits and the metadata of a checkpoint.
fn tensors(p: &Path) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    Checkpoint::read(p)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, (s, v))| (n, s, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// summary.csv without its last column (wall seconds).
fn summary(run_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(run_dir.join("summary.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

#[test]
fn a_killed_finetune_resumed_ends_with_the_same_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, src) = (tmp.path().join("data"), tmp.path().join("src.safetensors"));
    std::fs::create_dir(&data).unwrap();
    tiny_idx(&data, 160);
    let mut pre = sptune();
    pre.args(["pretrain", "--data"]).arg(&data);
    pre.args([
        "--classes",
        "0-4",
        "--arch",
        "resnet18",
        "--width",
        "4",
        "--epochs",
        "1",
        "--out",
    ]);
    ok(pre.arg(&src));

    let whole = tmp.path().join("whole.safetensors");
    let t0 = Instant::now();
    ok(&mut finetune(&data, &src, &whole));
    let wall = t0.elapsed();
    let (want, want_best) = (
        tensors(&whole),
        tensors(&tmp.path().join("whole.best.safetensors")),
    );
    let want_summary = summary(&tmp.path().join("whole.run"));
    assert_eq!(want_summary.len(), 7, "header + 6 epochs");
    assert!(
        !tmp.path().join("whole.run/resume").exists(),
        "a finished run keeps no resume state"
    );

    let mut state = 0x2545_f491_4f6c_dd1du64;
    let (mut mid_run, mut before_first_epoch) = (0, 0);
    for k in 0..4 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let frac = 0.05 + 0.7 * (state % 1000) as f64 / 1000.0;
        let out = tmp.path().join(format!("k{k}.safetensors"));
        let run_dir = tmp.path().join(format!("k{k}.run"));
        let mut child = finetune(&data, &src, &out)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(wall.mul_f64(frac));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            eprintln!("kill {k} at {frac:.2} of the run came after its end");
            continue;
        }
        assert!(!out.exists(), "a killed run wrote its checkpoint");
        if !run_dir.join("config.toml").exists() {
            eprintln!("kill {k} at {frac:.2}: before training began, nothing to resume");
            continue;
        }
        let state_file = run_dir.join("resume/state.safetensors");
        if state_file.exists() {
            mid_run += 1;
        } else {
            before_first_epoch += 1;
        }
        eprintln!(
            "kill {k} at {frac:.2} of {wall:?}: {} epochs in summary.csv",
            std::fs::read_to_string(run_dir.join("summary.csv"))
                .map(|s| s.lines().count().saturating_sub(1))
                .unwrap_or(0)
        );
        let mut again = sptune();
        ok(again.args(["finetune", "--resume"]).arg(&run_dir));
        assert!(tensors(&out) == want, "kill {k}: checkpoint differs");
        assert!(
            tensors(&tmp.path().join(format!("k{k}.best.safetensors"))) == want_best,
            "kill {k}: best checkpoint differs"
        );
        assert_eq!(
            summary(&run_dir),
            want_summary,
            "kill {k}: summary.csv differs"
        );
        assert!(!run_dir.join("resume").exists());
    }
    eprintln!("{mid_run} kills between epochs, {before_first_epoch} before the first epoch ended");
    assert!(
        mid_run >= 1,
        "no kill landed between epochs: the test proved nothing"
    );

    // a finished run is not resumed again
    let o = sptune()
        .args(["finetune", "--resume"])
        .arg(tmp.path().join("whole.run"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing to resume"), "{err}");
}
