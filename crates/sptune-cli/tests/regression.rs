//! Regression across the library-run redesign (issue 9): the same seeds must give the same
//! checkpoints, metrics and Fisher file as the code before the change.
//!
//! How the expected values were produced: `SPTUNE_RECORD=1 cargo test --release -p sptune-cli
//! --test regression` was run on commit 87f1d04 (the last commit before the redesign, with this
//! file added unchanged) and wrote `tests/fixtures/regression.json`: for each run, the SHA-256
//! of the checkpoint's tensors (names, dtypes, shapes and bytes, in name order; the metadata is
//! left out since it holds paths) and the run's `--json` metrics. Nothing in the fixture was
//! computed by the redesigned code.
//!
//! The runs go through the binary with `--threads 2`: a ResNet-18 (width 4, small stem) is
//! pretrained on Fashion-MNIST 0-4, its exact Fisher taken on 100 source images, and it is
//! fine-tuned on 5-9 with each of the seven schemes (the Fisher ones with that file).
//!
//! Until issue 11 the runs were bit-identical to the recording on the recording machine. The own
//! CPU kernels (`sptune::kernels`, each checked against burn's reference op to 1e-4 in
//! `crates/sptune/tests/kernels.rs`) add their products in another order, so since then the
//! hashes are not compared and the metrics must agree to a tolerance, on every machine: 5 % for
//! losses and penalties (relative, or absolute below 1), 0.1 for test accuracy (20 of the 200
//! test images, where these two-epoch models sit at 23-27 %); the per-epoch training accuracy on
//! 50 images is left out. Rounding differences grow along the pretrain and the two fine-tuning
//! epochs; measured against the recording after the kernels: first-epoch losses 0.13 % at most,
//! second-epoch losses 2.1 % (GL-SP-Fisher), penalties 1.0 %, test accuracy 0.04, training
//! accuracy 0.06. The test still catches a run that breaks outright (a scheme's penalty off by
//! orders of magnitude, a diverging optimizer), not small drifts; the kernels' own tests catch
//! those.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn data_installed() -> bool {
    Path::new("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz").exists()
        || std::env::var_os("SPTUNE_DATA").is_some()
}

fn sptune(args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_sptune"))
        .args(["--json", "--threads", "2"])
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

/// SHA-256 over the tensors of a safetensors file, in name order (metadata excluded).
fn tensor_hash(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    let mut h = Sha256::new();
    for n in names {
        let t = st.tensor(&n).unwrap();
        h.update(n.as_bytes());
        h.update(format!("{:?}{:?}", t.dtype(), t.shape()).as_bytes());
        h.update(t.data());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn signature() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let avx512 = cpu.contains(" avx512f");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}; avx512f={avx512}; cores={cores}")
}

/// The metrics a run is compared on: test accuracy and every epoch's loss, penalties and
/// train accuracy.
fn metrics(v: &Value) -> Value {
    let epochs: Vec<Value> = v["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            json!({
                "task_loss": e["task_loss"], "penalty_shared": e["penalty_shared"],
                "penalty_new": e["penalty_new"], "train_acc": e["train_acc"],
            })
        })
        .collect();
    json!({ "test_acc": v["test_acc"], "epochs": epochs })
}

fn runs(dir: &Path) -> BTreeMap<String, Value> {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let mut out = BTreeMap::new();
    let src = p("src.safetensors");
    let pre = sptune(&[
        "pretrain",
        "--classes",
        "0-4",
        "--per-class",
        "40",
        "--arch",
        "resnet18",
        "--width",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--test-limit",
        "200",
        "--seed",
        "3",
        "--out",
        &src,
    ]);
    out.insert(
        "pretrain".into(),
        json!({ "hash": tensor_hash(Path::new(&src)), "metrics": metrics(&pre) }),
    );
    let fisher = p("fisher.safetensors");
    sptune(&[
        "fisher",
        "--model",
        &src,
        "--samples",
        "100",
        "--estimator",
        "exact",
        "--batch-size",
        "32",
        "--out",
        &fisher,
    ]);
    out.insert(
        "fisher".into(),
        json!({ "hash": tensor_hash(Path::new(&fisher)), "metrics": Value::Null }),
    );
    for (scheme, alpha) in [
        ("none", "0"),
        ("l2", "0.01"),
        ("l2-sp", "0.1"),
        ("l1-sp", "0.001"),
        ("gl-sp", "0.001"),
        ("l2-sp-fisher", "0.1"),
        ("gl-sp-fisher", "0.001"),
    ] {
        let tuned = p(&format!("{scheme}.safetensors"));
        let mut a = vec![
            "finetune",
            "--init",
            &src,
            "--classes",
            "5-9",
            "--per-class",
            "10",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--lr",
            "0.02",
            "--test-limit",
            "200",
            "--seed",
            "1",
            "--reg",
            scheme,
            "--alpha",
            alpha,
            "--out",
            &tuned,
        ];
        if scheme.ends_with("fisher") {
            a.extend(["--fisher", &fisher, "--fisher-max", "50"]);
        }
        let v = sptune(&a);
        out.insert(
            format!("finetune {scheme}"),
            json!({ "hash": tensor_hash(Path::new(&tuned)), "metrics": metrics(&v) }),
        );
    }
    out
}

fn close(a: &Value, b: &Value, what: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let tol = if what.ends_with("acc") { 0.1 } else { 5e-2 };
            assert!(
                (x - y).abs() <= tol * y.abs().max(1.0),
                "{what}: {x} vs recorded {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{what}");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                close(p, q, &format!("{what}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            // a count over the 50 fine-tuning training images: one flipped prediction moves it
            // by 0.02, so it is compared through the loss beside it, not on its own
            for (k, q) in y.iter().filter(|(k, _)| k.as_str() != "train_acc") {
                close(&x[k], q, &format!("{what}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{what}"),
    }
}

#[test]
fn same_seeds_give_the_metrics_recorded_before_the_redesign() {
    if !data_installed() {
        eprintln!("SKIPPED: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/regression.json");
    let d = tempfile::tempdir().unwrap();
    let got = runs(d.path());
    if std::env::var_os("SPTUNE_RECORD").is_some() {
        let v = json!({ "signature": signature(), "runs": got });
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        std::fs::write(&fixture, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        return;
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    eprintln!(
        "note: recorded on {:?} before the own kernels, running on {:?}: metrics compared to a \
         tolerance, hashes not compared",
        want["signature"],
        signature()
    );
    let want = want["runs"].as_object().unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, w) in want {
        close(&got[name]["metrics"], &w["metrics"], name);
    }
}
