//! `sptune study --jobs 2` through the binary: two processes share one study file; every
//! trial runs exactly once, both take part, and (successive halving off, so no trial depends on
//! another's timing) the study finds exactly what a single process finds. The trials are made
//! long enough (200 epochs) that the helper, which looks for work every 100 ms, gets some.

mod common;

use std::path::Path;
use std::process::Command;

/// No process of the study in `dir` is left once its leader has exited (its helpers end with
/// it; allowed a few seconds).
fn assert_no_process_left(dir: &Path) {
    let t0 = std::time::Instant::now();
    loop {
        let left = common::processes_mentioning(dir.to_str().unwrap());
        if left.is_empty() {
            return;
        }
        assert!(t0.elapsed().as_secs() < 5, "left running: {left:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// 8x8 images whose class (of 6) is the bright row, plus noise.
fn tiny_idx(dir: &Path) {
    for (split, n) in [("train", 180usize), ("t10k", 60)] {
        let (mut img, mut lab) = (vec![], vec![]);
        for i in 0..n {
            let c = i % 6;
            for p in 0..64usize {
                img.push(if p / 8 == c {
                    220
                } else {
                    ((i * 7 + p * 13) % 50) as u8
                });
            }
            lab.push(c as u8);
        }
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

fn sptune(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_sptune"))
        .args(["--quiet", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sptune {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The distinct values of `field` over `trials`, sorted.
fn distinct<'a>(trials: &'a [serde_json::Value], field: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = trials.iter().map(|t| t[field].as_str().unwrap()).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn two_jobs_share_the_trials_and_find_what_one_finds() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx(d.path());
    let data = d.path().to_str().unwrap();
    let cfg = d.path().join("study.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"name = "jobs"
schemes = ["l2", "l2-sp"]
seeds = 3
[source.pretrain.model]
arch = "mlp"
hidden = [16]
[source.pretrain.data]
data = "{data}"
classes = "0-2"
[source.pretrain.train]
epochs = 4
batch_size = 16
lr = 0.1
[target]
data = "{data}"
classes = "3-5"
per_class = 12
[train]
epochs = 200
batch_size = 8
lr = 0.05
[search]
trials = 6
lr = [0.05]
halving = false
"#
        ),
    )
    .unwrap();
    let (one, two) = (d.path().join("one"), d.path().join("two"));
    let c = cfg.to_str().unwrap();
    let a = sptune(&[
        "--threads",
        "1",
        "study",
        "--config",
        c,
        "--dir",
        one.to_str().unwrap(),
    ]);
    let b = sptune(&[
        "--threads",
        "1",
        "study",
        "--config",
        c,
        "--dir",
        two.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert_eq!(a, b, "two jobs found something else than one");
    let trials = sptune(&["runs", "list", two.to_str().unwrap()]);
    let trials = trials.as_array().unwrap();
    // 1 pretrain + 2 schemes x 6 points + 2 x 3 finals
    assert_eq!(trials.len(), 1 + 12 + 6);
    let keys = distinct(trials, "key");
    assert_eq!(keys.len(), trials.len());
    assert!(trials.iter().all(|t| t["status"] == "done"), "{trials:?}");
    let workers = distinct(trials, "worker");
    assert_eq!(workers.len(), 2, "both processes ran trials: {workers:?}");
    // every search trial kept its last and its best-validation model on disk
    for t in trials.iter().filter(|t| t["phase"] == "search") {
        let m = &t["metrics"];
        for k in ["checkpoint", "best_checkpoint"] {
            let p = m[k].as_str().unwrap_or_else(|| panic!("{k} missing: {t}"));
            assert!(Path::new(p).is_file(), "{p}");
        }
        let best = m["best_epoch"].as_u64().unwrap();
        assert!((1..=200).contains(&best), "{m}");
    }

    // the readers: compare a prefix, show one trial, rewrite the report elsewhere
    let finals = sptune(&["runs", "compare", two.to_str().unwrap(), "final/"]);
    assert_eq!(finals.as_array().unwrap().len(), 6);
    let one_trial = sptune(&["runs", "show", two.to_str().unwrap(), "final/l2-sp/seed2"]);
    assert_eq!(one_trial["seed"], 2);
    assert!(one_trial["metrics"]["test_acc"].as_f64().unwrap() > 0.5);
    let html = d.path().join("elsewhere/r.html");
    let written = sptune(&[
        "report",
        two.to_str().unwrap(),
        "-o",
        html.to_str().unwrap(),
    ]);
    assert!(written.as_array().unwrap().len() >= 3, "{written}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<svg"));
    assert_no_process_left(&two);
}

/// `sptune auto --jobs 2`: two processes share the search (every trial once, both take part),
/// the winner alone gets a final run, and its model is written.
#[test]
fn auto_with_two_jobs_shares_the_search() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx(d.path());
    let data = d.path().to_str().unwrap();
    let src = d.path().join("source.safetensors");
    sptune(&[
        "--threads",
        "1",
        "pretrain",
        "--arch",
        "mlp",
        "--hidden",
        "16",
        "--data",
        data,
        "--classes",
        "0-2",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--lr",
        "0.1",
        "--out",
        src.to_str().unwrap(),
    ]);
    let (dir, out) = (d.path().join("auto"), d.path().join("chosen.safetensors"));
    let o = sptune(&[
        "auto",
        "--init",
        src.to_str().unwrap(),
        "--data",
        data,
        "--classes",
        "3-5",
        "--per-class",
        "12",
        "--epochs",
        "200",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--schemes",
        "l2,l2-sp",
        "--trials",
        "4",
        "--jobs",
        "2",
        "--dir",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(out.is_file());
    assert!(o["val_acc"].as_f64().unwrap() > 0.5, "{o}");
    let trials = sptune(&["runs", "list", dir.to_str().unwrap()]);
    let trials = trials.as_array().unwrap();
    let keys = distinct(trials, "key");
    assert_eq!(keys.len(), trials.len());
    let finals: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("final/"))
        .collect();
    assert_eq!(
        finals,
        vec![format!("final/{}/seed1", o["winner"].as_str().unwrap())]
    );
    assert_eq!(keys.iter().filter(|k| k.starts_with("search/")).count(), 8);
    let workers = distinct(trials, "worker");
    assert_eq!(workers.len(), 2, "both processes ran trials: {workers:?}");
    assert_no_process_left(d.path());
}
