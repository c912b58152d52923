//! A run directory's `config.toml` passed back to `--config` reproduces the run: for every
//! command that writes one (`pretrain`, `finetune`, with and without a Fisher file), the
//! second run's checkpoint has the same tensors, bit for bit, and its own `config.toml` is the
//! same file but for the output paths. And `--fisher` takes a path only.
//!
//! Needs Fashion-MNIST (`apt-get install dataset-fashion-mnist`, installed by `.ci/run`).

use std::path::Path;
use std::process::Command;

fn installed() -> bool {
    Path::new("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz").exists()
        || std::env::var_os("SPTUNE_DATA").is_some()
}

fn sptune(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sptune"))
        .args(["--quiet", "--threads", "2"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) {
    let o = sptune(args);
    assert!(
        o.status.success(),
        "sptune {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The tensors of a safetensors file (metadata, which holds paths, left out).
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// Reruns the run whose checkpoint is `first` from its `config.toml`, writing `second`.
fn rerun_from_config(command: &str, first: &Path, second: &Path) {
    let cfg = first.with_extension("run").join("config.toml");
    ok(&[
        command,
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        second.to_str().unwrap(),
    ]);
    assert_eq!(
        tensors(first),
        tensors(second),
        "{command}: rerun from {} differs",
        cfg.display()
    );
    let a = std::fs::read_to_string(&cfg).unwrap();
    let b = std::fs::read_to_string(second.with_extension("run").join("config.toml")).unwrap();
    let strip = |s: &str, p: &Path| {
        s.replace(p.to_str().unwrap(), "OUT")
            .replace(p.with_extension("run").to_str().unwrap(), "RUN")
    };
    assert_eq!(strip(&a, first), strip(&b, second));
}

#[test]
fn run_directory_config_reproduces_the_run() {
    if !installed() {
        eprintln!("SKIPPED: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let src = p("src.safetensors");
    ok(&[
        "pretrain",
        "--classes",
        "0-4",
        "--per-class",
        "30",
        "--arch",
        "resnet18",
        "--width",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--test-limit",
        "100",
        "--seed",
        "5",
        "--out",
        src.to_str().unwrap(),
    ]);
    rerun_from_config("pretrain", &src, &p("src2.safetensors"));

    let fisher = p("fisher.safetensors");
    ok(&[
        "fisher",
        "--model",
        src.to_str().unwrap(),
        "--samples",
        "50",
        "--out",
        fisher.to_str().unwrap(),
    ]);
    for (reg, extra) in [
        ("l2-sp", vec!["--freeze", "1", "--val-fraction", "0.2"]),
        (
            "gl-sp-fisher",
            vec!["--fisher", fisher.to_str().unwrap(), "--fisher-max", "20"],
        ),
    ] {
        let tuned = p(&format!("{reg}.safetensors"));
        let mut a = vec![
            "finetune",
            "--init",
            src.to_str().unwrap(),
            "--classes",
            "5-9",
            "--per-class",
            "10",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--test-limit",
            "100",
            "--reg",
            reg,
            "--alpha",
            "0.05",
            "--seed",
            "2",
            "--out",
            tuned.to_str().unwrap(),
        ];
        a.extend(extra);
        ok(&a);
        // with a validation split, the model of the best validation epoch is kept beside the
        // last one, and result.json says which epoch it was
        let best = p(&format!("{reg}.best.safetensors"));
        let result: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(p(&format!("{reg}.run/result.json"))).unwrap(),
        )
        .unwrap();
        if reg == "l2-sp" {
            assert!(best.exists(), "no {}", best.display());
            let e = result["best_epoch"].as_u64().unwrap();
            assert!((1..=2).contains(&e), "{result}");
        } else {
            assert!(!best.exists() && result["best_epoch"].is_null(), "{result}");
        }
        rerun_from_config("finetune", &tuned, &p(&format!("{reg}-again.safetensors")));
    }

    // --fisher is a path: a known weights name is refused with the flag named, nothing written
    let out = p("never.safetensors");
    let o = sptune(&[
        "finetune",
        "--init",
        src.to_str().unwrap(),
        "--classes",
        "5-9",
        "--reg",
        "l2-sp-fisher",
        "--fisher",
        "resnet18",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--fisher") && err.contains("resnet18") && err.contains("known"),
        "{err}"
    );
    assert!(!out.exists());
}
