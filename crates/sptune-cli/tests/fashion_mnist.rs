//! The seed's claim on the embedded default data set, end to end through the binary:
//! pretrain on Fashion-MNIST 0-4, fine-tune on 5-9 with 20 images per class, and L2-SP forgets
//! less of the source task than L2 (source head put back on the fine-tuned body).
//!
//! An MLP keeps this fast on 2 cores; the demo shows the same comparison on a ResNet-18.
//! Needs the Debian package `dataset-fashion-mnist` (installed by `.ci/run`).

use std::path::Path;
use std::process::Command;

fn sptune(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_sptune"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sptune {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn installed() -> bool {
    [
        "/usr/share/datasets/fashion-mnist",
        "data/fashion-mnist",
        "../../data/fashion-mnist",
    ]
    .iter()
    .any(|d| {
        Path::new(d).join("train-labels-idx1-ubyte.gz").exists()
            || Path::new(d).join("train-labels-idx1-ubyte").exists()
    }) || std::env::var_os("SPTUNE_DATA").is_some()
}

#[test]
fn l2_sp_forgets_less_than_l2() {
    if !installed() {
        eprintln!("SKIPPED: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
    let src = p("src.safetensors");
    let pre = sptune(&[
        "pretrain",
        "--classes",
        "0-4",
        "--per-class",
        "1000",
        "--arch",
        "mlp",
        "--hidden",
        "128",
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "--batch-size",
        "32",
        "--out",
        &src,
    ]);
    let src_acc = pre["test_acc"].as_f64().unwrap();
    assert!(
        src_acc > 0.75,
        "source model too weak to measure forgetting: {src_acc}"
    );
    let mean = |reg: &str| {
        let (mut acc, mut drop) = (0.0, 0.0);
        for seed in ["0", "1"] {
            let out = p(&format!("{reg}-{seed}.safetensors"));
            let ft = sptune(&[
                "finetune",
                "--init",
                &src,
                "--classes",
                "5-9",
                "--per-class",
                "20",
                "--reg",
                reg,
                "--alpha",
                "0.1",
                "--epochs",
                "15",
                "--lr",
                "0.05",
                "--batch-size",
                "16",
                "--seed",
                seed,
                "--out",
                &out,
            ]);
            let ev = sptune(&["eval", "--model", &out, "--source", &src]);
            assert!(
                (ev["test_acc"].as_f64().unwrap() - ft["test_acc"].as_f64().unwrap()).abs() < 1e-9
            );
            acc += ev["test_acc"].as_f64().unwrap() / 2.0;
            drop += ev["forgetting"]["drop_points"].as_f64().unwrap() / 2.0;
        }
        (acc, drop)
    };
    let (acc_l2, drop_l2) = mean("l2");
    let (acc_sp, drop_sp) = mean("l2-sp");
    eprintln!(
        "L2: target {acc_l2:.3}, forgetting {drop_l2:.1} pts; L2-SP: target {acc_sp:.3}, forgetting {drop_sp:.1} pts"
    );
    assert!(
        acc_sp > 0.6 && acc_l2 > 0.6,
        "both learn the target (chance is 0.2)"
    );
    assert!(
        drop_sp + 10.0 < drop_l2,
        "L2-SP must forget clearly less: {drop_sp} vs {drop_l2}"
    );
}
