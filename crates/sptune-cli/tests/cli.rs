//! The `sptune` binary end to end: bad input gives one clear line, a non-zero exit and no
//! output file; a small pretrain -> finetune -> eval run works and writes its run directory.

use std::path::Path;

mod common;
use common::{Run, run, s, tiny_idx_without};

/// [`common::assert_clean_failure`] with the output that must not be written.
fn assert_clean_failure(r: &Run, needles: &[&str], out: &Path) {
    common::assert_clean_failure(r, needles, Some(out));
}

fn pretrain_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "pretrain",
        "--data",
        data,
        "--arch",
        "mlp",
        "--hidden",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--out",
        out,
    ]
}

#[test]
fn truncated_idx_file_is_named_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx_without(d.path(), 3, 10, None);
    let f = d.path().join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 17]).unwrap();
    let out = d.path().join("out/m.safetensors");
    let r = run(&pretrain_args(s(d.path()), s(&out)));
    assert_clean_failure(&r, &["train-images-idx3-ubyte"], &out);
}

#[test]
fn unknown_class_and_empty_class_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx_without(d.path(), 3, 10, Some(2));
    let out = d.path().join("m.safetensors");
    let mut a = pretrain_args(s(d.path()), s(&out));
    a.extend(["--classes", "0,7"]);
    assert_clean_failure(&run(&a), &["7"], &out);
    let mut a = pretrain_args(s(d.path()), s(&out));
    a.extend(["--classes", "0-2", "--per-class", "5"]);
    assert_clean_failure(&run(&a), &["2"], &out);
}

#[test]
fn divergence_stops_with_an_error_and_no_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx_without(d.path(), 3, 10, None);
    let out = d.path().join("m.safetensors");
    let mut a = pretrain_args(s(d.path()), s(&out));
    a.extend(["--lr", "1e30", "--epochs", "20"]);
    assert_clean_failure(&run(&a), &["diverged"], &out);
}

#[test]
fn checkpoint_whose_shapes_do_not_match_its_spec_is_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx_without(d.path(), 3, 10, None);
    let src = d.path().join("src.safetensors");
    let r = run(&pretrain_args(s(d.path()), s(&src)));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Rewrite the metadata to claim 32 hidden units ("[16]" -> "[32]", same length, so the
    // safetensors header keeps its size) while the tensors hold 16.
    let bytes = std::fs::read(&src).unwrap();
    let text = unsafe { String::from_utf8_unchecked(bytes.clone()) };
    let pos = text
        .find("\\\"hidden\\\":[16]")
        .expect("hidden in metadata");
    let mut patched = bytes.clone();
    let at = pos + "\\\"hidden\\\":[".len();
    patched[at..at + 2].copy_from_slice(b"32");
    let bad = d.path().join("bad.safetensors");
    std::fs::write(&bad, patched).unwrap();
    let out = d.path().join("tuned.safetensors");
    let r = run(&[
        "finetune",
        "--init",
        s(&bad),
        "--data",
        s(d.path()),
        "--classes",
        "0-2",
        "--epochs",
        "1",
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&r, &["bad.safetensors", "fc1.weight"], &out);
}

fn json(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[test]
fn pretrain_finetune_eval_distance_on_a_tiny_task() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx_without(d.path(), 6, 40, None);
    let src = d.path().join("src.safetensors");
    let mut a = pretrain_args(s(d.path()), s(&src));
    a.extend(["--classes", "0-2", "--epochs", "4", "--json"]);
    let pre = json(&run(&a));
    assert!(pre["test_acc"].as_f64().unwrap() > 0.9, "{pre}");
    let run_dir = d.path().join("src.run");
    for f in ["config.toml", "summary.csv", "log.txt", "result.json"] {
        assert!(run_dir.join(f).exists(), "missing {f}");
    }
    let csv = std::fs::read_to_string(run_dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");

    // a config file with a CLI override
    let cfg = d.path().join("ft.toml");
    std::fs::write(
        &cfg,
        "[train]\nreg = \"l1-sp\"\nalpha = 0.5\nepochs = 3\n[data]\nper_class = 10\n",
    )
    .unwrap();
    let tuned = d.path().join("tuned.safetensors");
    let ft = json(&run(&[
        "finetune",
        "--config",
        s(&cfg),
        "--init",
        s(&src),
        "--data",
        s(d.path()),
        "--classes",
        "3,4",
        "--epochs",
        "2",
        "--out",
        s(&tuned),
        "--json",
    ]));
    assert_eq!(
        ft["epochs"].as_array().unwrap().len(),
        2,
        "CLI --epochs overrides the file"
    );
    assert_eq!(ft["load"]["replaced_head"].as_array().unwrap().len(), 2);
    let resolved = std::fs::read_to_string(d.path().join("tuned.run/config.toml")).unwrap();
    assert!(
        resolved.contains("reg = \"l1-sp\"") && resolved.contains("alpha = 0.5"),
        "{resolved}"
    );
    assert!(resolved.contains("per_class = 10"), "{resolved}");

    let ev = json(&run(&[
        "eval",
        "--model",
        s(&tuned),
        "--source",
        s(&src),
        "--data",
        s(d.path()),
        "--json",
    ]));
    let f = &ev["forgetting"];
    let (b, a2, drop) = (
        f["source_acc"].as_f64().unwrap(),
        f["after_acc"].as_f64().unwrap(),
        f["drop_points"].as_f64().unwrap(),
    );
    assert!((drop - 100.0 * (b - a2)).abs() < 1e-9);
    assert!(
        (b - pre["test_acc"].as_f64().unwrap()).abs() < 1e-9,
        "source accuracy is the pretrain test accuracy"
    );

    let dist = json(&run(&[
        "distance",
        "--from",
        s(&src),
        "--to",
        s(&tuned),
        "--json",
    ]));
    let names: Vec<&str> = dist["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["fc1.bias", "fc1.weight"], "S = the body");
    let new: Vec<&str> = dist["new"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(new, vec!["fc2.bias", "fc2.weight"]);
    // ½‖w − w0‖² summed over S equals half the sum of the squared per-tensor distances
    let half_sq: f64 = dist["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| 0.5 * t["l2"].as_f64().unwrap().powi(2))
        .sum();
    let l2sp = dist["penalty"]["l2_sp"].as_f64().unwrap();
    assert!(
        (half_sq - l2sp).abs() <= 1e-4 * l2sp.max(1e-6),
        "{half_sq} vs {l2sp}"
    );
}

/// `sptune fisher` -> `finetune --reg l2-sp-fisher` -> `distance --fisher`, and the Fisher
/// file's failure modes.
#[test]
fn fisher_then_fisher_finetune_and_distance() {
    use sptune::fisher::{Batch1Loop, Engine, Estimator, Fisher, FisherOptions};
    let d = tempfile::tempdir().unwrap();
    tiny_idx_without(d.path(), 6, 40, None);
    let src = d.path().join("src.safetensors");
    let mut a = pretrain_args(s(d.path()), s(&src));
    a.extend(["--classes", "0-2", "--json"]);
    json(&run(&a));
    let fpath = d.path().join("fisher.safetensors");
    let r = json(&run(&[
        "fisher",
        "--model",
        s(&src),
        "--data",
        s(d.path()),
        "--samples",
        "7",
        "--batch-size",
        "3",
        "--out",
        s(&fpath),
        "--json",
    ]));
    assert_eq!(r["samples"], 7);
    assert_eq!(r["estimator"], "exact");
    assert_eq!(
        r["engine"], "cpu-engine",
        "the CPU engine computes it on the CPU"
    );
    let f = Fisher::read(&fpath).unwrap();
    assert_eq!(
        f.tensors.keys().collect::<Vec<_>>(),
        vec!["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"],
        "one tensor per parameter, no buffers"
    );
    assert_eq!((f.estimator, f.samples), (Estimator::Exact, 7));

    // `--samples 7` = the first 7 training images of classes 0-2 in file order: rebuilt here
    // from tiny_idx's formula (image i has class i % 6) and fed to the batch-1 reference
    let (mut images, mut labels) = (vec![], vec![]);
    for i in (0..240usize).filter(|i| i % 6 < 3).take(7) {
        let c = i % 6;
        for p in 0..64usize {
            let v = if p / 8 == c {
                200
            } else {
                (i * 7 + p * 13) % 40
            };
            images.push(v as f32 / 255.0);
        }
        labels.push(c);
    }
    let (net, spec) =
        sptune::models::checkpoint::load_model(&src, None, &burn::tensor::Device::flex()).unwrap();
    let ds = sptune::data::Dataset::new(images, labels, spec.classes.clone(), 1, 8, 8).unwrap();
    let want = Batch1Loop
        .compute(
            &net,
            &spec,
            &ds,
            &FisherOptions::default(),
            &burn::tensor::Device::flex(),
            &mut |_| {},
        )
        .unwrap();
    for (name, (_, v)) in &want.tensors {
        let max = v.iter().fold(0f32, |m, x| m.max(*x));
        for (x, y) in f.tensors[name].1.iter().zip(v) {
            assert!((x - y).abs() <= 1e-5 * max, "{name}: {x} vs {y}");
        }
    }

    let tuned = d.path().join("tuned.safetensors");
    let ft_args = |fisher: &str, out: &str| -> Vec<String> {
        [
            "finetune",
            "--init",
            s(&src),
            "--data",
            s(d.path()),
            "--classes",
            "3,4",
            "--per-class",
            "10",
            "--epochs",
            "2",
            "--reg",
            "l2-sp-fisher",
            "--alpha",
            "2",
            "--fisher",
            fisher,
            "--out",
            out,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let mut ft = ft_args(s(&fpath), s(&tuned));
    ft.push("--json".into());
    json(&run(&ft));
    let cfg = std::fs::read_to_string(d.path().join("tuned.run/config.toml")).unwrap();
    assert!(
        cfg.contains("fisher = ") && cfg.contains("fisher_normalize = \"mean\""),
        "{cfg}"
    );

    // distance --fisher: ½ Σ F (w − w0)² over S, recomputed from the files
    let dist = json(&run(&[
        "distance",
        "--from",
        s(&src),
        "--to",
        s(&tuned),
        "--fisher",
        s(&fpath),
        "--json",
    ]));
    let w0 = sptune::models::checkpoint::Checkpoint::read(&src).unwrap();
    let w = sptune::models::checkpoint::Checkpoint::read(&tuned).unwrap();
    let mut want = 0.0f64;
    for name in ["fc1.weight", "fc1.bias"] {
        let (a, b, fv) = (&w.tensors[name].1, &w0.tensors[name].1, &f.tensors[name].1);
        for j in 0..a.len() {
            want += 0.5 * fv[j] as f64 * ((a[j] - b[j]) as f64).powi(2);
        }
    }
    let got = dist["penalty"]["l2_sp_fisher"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-4 * want.max(1e-9),
        "{got} vs {want}"
    );
    assert!(dist["penalty"]["gl_sp_fisher"].as_f64().unwrap() > 0.0);

    // a Fisher of another model: named file and tensor, nothing written
    let other = d.path().join("other.safetensors");
    let mut a = pretrain_args(s(d.path()), s(&other));
    a.extend(["--classes", "0-2", "--hidden", "8", "--json"]);
    json(&run(&a));
    let other_f = d.path().join("other-fisher.safetensors");
    json(&run(&[
        "fisher",
        "--model",
        s(&other),
        "--data",
        s(d.path()),
        "--samples",
        "4",
        "--out",
        s(&other_f),
        "--json",
    ]));
    let out = d.path().join("bad.safetensors");
    let ft = ft_args(s(&other_f), s(&out));
    let r = run(&ft);
    assert_clean_failure(&r, &["other-fisher.safetensors", "fc1.bias", "[8]"], &out);

    // a negative Fisher entry
    let mut neg = f.clone();
    neg.tensors.get_mut("fc1.weight").unwrap().1[3] = -0.5;
    let neg_path = d.path().join("neg.safetensors");
    neg.save(&neg_path, &spec).unwrap();
    let ft = ft_args(s(&neg_path), s(&out));
    let r = run(&ft);
    assert_clean_failure(&r, &["neg.safetensors", "fc1.weight", "-0.5"], &out);

    // an alpha at which the explicit step diverges on the Fisher penalty
    let mut ft = ft_args(s(&fpath), s(&out));
    ft.extend(["--alpha".to_string(), "1e6".to_string()]);
    let r = run(&ft);
    assert_clean_failure(&r, &["diverge", "--fisher-max"], &out);

    // unknown estimator; Fisher scheme without a file
    let fout = d.path().join("f2.safetensors");
    let r = run(&[
        "fisher",
        "--model",
        s(&src),
        "--data",
        s(d.path()),
        "--estimator",
        "diag",
        "--out",
        s(&fout),
    ]);
    assert_clean_failure(&r, &["--estimator", "diag"], &fout);
    let r = run(&[
        "finetune",
        "--init",
        s(&src),
        "--data",
        s(d.path()),
        "--classes",
        "3,4",
        "--reg",
        "gl-sp-fisher",
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&r, &["gl-sp-fisher", "--fisher"], &out);
}

/// `sptune convert` of a `torch.save` file: same tensors under the same names, now with
/// metadata; a hostile pickle and a missing `--arch` are one-line errors with nothing written.
#[test]
fn convert_pytorch_checkpoint() {
    use sptune::models::checkpoint::Checkpoint;
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sptune/tests/fixtures/pytorch");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("r18.safetensors");
    let src = fx.join("resnet18_w2_legacy.pth");
    let r = json(&run(&[
        "convert",
        s(&src),
        s(&out),
        "--arch",
        "resnet18",
        "--json",
    ]));
    assert_eq!(r["report"]["applied"].as_array().unwrap().len(), 102, "{r}");
    assert_eq!(r["spec"]["width"], 2);
    let a = Checkpoint::read(&src).unwrap();
    let b = Checkpoint::read(&out).unwrap();
    assert_eq!(b.spec().unwrap().arch, "resnet18");
    for (name, (shape, vals)) in &a.tensors {
        let (s2, v2) = &b.tensors[name];
        assert_eq!((shape, vals), (s2, v2), "{name}");
    }
    let bad = d.path().join("bad.safetensors");
    let r = run(&[
        "convert",
        s(&fx.join("evil_zip.pth")),
        s(&bad),
        "--arch",
        "resnet18",
    ]);
    assert_clean_failure(&r, &["evil_zip.pth", "posix.system"], &bad);
    let r = run(&["convert", s(&fx.join("resnet18_w2.pth")), s(&bad)]);
    assert_clean_failure(&r, &["resnet18_w2.pth", "--arch"], &bad);
}

/// `sptune predict` with the known name `efficientnet-lite0` gives PyTorch's top-5 and
/// probabilities for `pattern.png` (320x256, so no resampling; see
/// `sptune/tests/fixtures/efficientnet_lite0/make_fixture.py`, which records torchvision's
/// CenterCrop(224) + Normalize(ImageNet) softmax). Needs the cached weights (`.ci/run`
/// fetches them).
#[test]
fn predict_matches_pytorch_top5() {
    let fx_dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sptune/tests/fixtures/efficientnet_lite0");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx_dir.join("fixture.json")).unwrap())
            .unwrap();
    let img = fx_dir.join("pattern.png");
    let r = json(&run(&[
        "predict",
        "--model",
        "efficientnet-lite0",
        "--json",
        s(&img),
    ]));
    let top = r[0]["top"].as_array().unwrap();
    assert_eq!(r[0]["image"].as_str().unwrap(), s(&img));
    let want = fx["predict"]["top5"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    for (g, w) in top.iter().zip(want) {
        assert_eq!(g["class"], w[0], "{r}");
        let (p, q) = (g["prob"].as_f64().unwrap(), w[1].as_f64().unwrap());
        assert!((p - q).abs() < 1e-4, "{p} vs PyTorch {q}");
    }
    // an unreadable image is a one-line error naming it
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let r = run(&["predict", "--model", "efficientnet-lite0", s(&bad)]);
    assert_clean_failure(&r, &["bad.png"], &d.path().join("nothing"));
}

#[test]
fn an_io_error_is_printed_once() {
    let d = tempfile::tempdir().unwrap();
    // a directory where a checkpoint is expected: the OS error must appear once, on one line
    let r = run(&["eval", "--model", s(d.path())]);
    assert_ne!(r.code, 0);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{:?}", r.stderr);
    assert!(lines[0].contains(s(d.path())), "{}", lines[0]);
    assert_eq!(lines[0].matches("os error").count(), 1, "{}", lines[0]);
}

#[test]
fn bench_eval_reports_both_variants_in_the_models_evaluation_batches() {
    // 28 px inputs: ModelSpec::eval_batch aims at 600,000 pixels, 600000 / 784 = 765 images,
    // capped at 256; 300 images are then one batch of 256 and one of 44
    let r = run(&[
        "--threads",
        "1",
        "--json",
        "--quiet",
        "bench",
        "--eval",
        "300",
        "--steps",
        "1",
        "--size",
        "28",
        "--width",
        "4",
        "--burn-ops",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["batch"], 256);
    assert_eq!(v["images"], 300);
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<_> = rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["own kernels", "burn ops"]);
    for row in rows {
        for k in ["eval_images_per_s", "forward_images_per_s"] {
            let x = row[k].as_f64().unwrap();
            assert!(x.is_finite() && x > 0.0, "{k} = {x}");
        }
    }
}
