//! Bad arguments and bad inputs fail cleanly: exit 2, one line on stderr naming the value or
//! the file, no panic, no output file (issue 12).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

mod common;
use common::{assert_clean_failure, assert_success, pretrain_mlp, run, s, sptune, tiny_idx};

/// A safetensors file of f32 tensors (values from `fill`), with optional metadata.
fn write_tensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>)],
    fill: &dyn Fn(&str, usize) -> f32,
    meta: Option<HashMap<String, String>>,
) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let b = (0..n)
                .flat_map(|i| fill(name, i).to_le_bytes())
                .collect::<Vec<u8>>();
            (name.to_string(), shape.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, shape, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

/// Small deterministic weights.
fn small(_: &str, i: usize) -> f32 {
    ((i * 37 % 101) as f32 - 50.0) / 500.0
}

/// An MLP state dict as PyTorch saves it (no sptune metadata): `inputs` -> 16 -> `classes`.
fn bare_mlp(path: &Path, inputs: usize, classes: usize) {
    write_tensors(
        path,
        &[
            ("fc1.weight", vec![16, inputs]),
            ("fc1.bias", vec![16]),
            ("fc2.weight", vec![classes, 16]),
            ("fc2.bias", vec![classes]),
        ],
        &small,
        None,
    );
}

/// A few tensors of a torchvision ResNet state dict (no metadata).
fn bare_resnet_part(path: &Path) {
    write_tensors(
        path,
        &[
            ("conv1.weight", vec![4, 1, 3, 3]),
            ("bn1.weight", vec![4]),
            ("bn1.bias", vec![4]),
            ("bn1.running_mean", vec![4]),
            ("bn1.running_var", vec![4]),
            ("fc.weight", vec![5, 4]),
            ("fc.bias", vec![5]),
        ],
        &|n, i| {
            if n.ends_with("running_var") {
                1.0
            } else {
                small(n, i)
            }
        },
        None,
    );
}

#[test]
fn bench_zero_steps_or_batch_is_an_error() {
    for (cmd, flag) in [
        ("bench", "--steps"),
        ("bench", "--batch-size"),
        ("bench", "--size"),
        ("bench", "--eval"),
        ("bench-fisher", "--batch-size"),
        ("bench-fisher", "--examples"),
    ] {
        let r = run(&[cmd, flag, "0"]);
        assert_clean_failure(&r, &[flag, "0", "at least 1"], None);
    }
    // the benchmark's BatchNorm is train or frozen; auto and recalibrate describe a fine-tune
    for mode in ["auto", "recalibrate"] {
        let r = run(&["bench", "--bn", mode, "--steps", "1"]);
        assert_clean_failure(&r, &["--bn", mode, "train or frozen"], None);
    }
}

#[test]
fn empty_classes_is_an_error_but_unset_means_all() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx(d.path(), 3, 8);
    let out = d.path().join("m.safetensors");
    for classes in ["", " ", ","] {
        let r = run(&[
            "pretrain",
            "--data",
            s(d.path()),
            "--arch",
            "mlp",
            "--classes",
            classes,
            "--epochs",
            "1",
            "--out",
            s(&out),
        ]);
        assert_clean_failure(&r, &["--classes"], Some(&out));
    }
    // the same for fisher's --classes
    let r = run(&[
        "fisher",
        "--model",
        "nonexistent.safetensors",
        "--classes",
        "",
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&r, &["--classes"], Some(&out));
    // a config file that leaves the classes out: all classes
    let cfg = d.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\ndata = {:?}\n[model]\narch = \"mlp\"\n[train]\nepochs = 1\nbatch_size = 8\n",
            s(d.path())
        ),
    )
    .unwrap();
    let r = run(&["pretrain", "--config", s(&cfg), "--out", s(&out), "--json"]);
    assert_success(&r);
    let ck = sptune::models::checkpoint::Checkpoint::read(&out).unwrap();
    assert_eq!(ck.spec().unwrap().classes.len(), 3);
}

#[test]
fn predict_top_zero_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let r = run(&[
        "predict",
        "--model",
        s(&d.path().join("m.safetensors")),
        "--top",
        "0",
        s(&d.path().join("x.png")),
    ]);
    assert_clean_failure(&r, &["--top", "0"], None);
}

#[test]
fn distance_between_different_architectures_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let (mlp, resnet) = (
        d.path().join("mlp.safetensors"),
        d.path().join("r.safetensors"),
    );
    bare_mlp(&mlp, 64, 5);
    bare_resnet_part(&resnet);
    for (a, b) in [(&mlp, &resnet), (&resnet, &mlp)] {
        let r = run(&["distance", "--from", s(a), "--to", s(b)]);
        assert_clean_failure(&r, &[s(a), s(b), "no parameter tensor in common"], None);
    }
    // same names, no shape in common
    let wide = d.path().join("wide.safetensors");
    write_tensors(
        &wide,
        &[
            ("fc1.weight", vec![32, 100]),
            ("fc1.bias", vec![32]),
            ("fc2.weight", vec![3, 32]),
            ("fc2.bias", vec![3]),
        ],
        &small,
        None,
    );
    let r = run(&["distance", "--from", s(&mlp), "--to", s(&wide)]);
    assert_clean_failure(&r, &[s(&mlp), s(&wide), "same shape"], None);
    // both with sptune metadata naming different architectures
    let tiny = tempfile::tempdir().unwrap();
    tiny_idx(tiny.path(), 3, 8);
    let src = d.path().join("src.safetensors");
    pretrain_mlp(tiny.path(), &src);
    let mut meta = HashMap::new();
    meta.insert("arch".to_string(), "resnet18".to_string());
    let named = d.path().join("named.safetensors");
    write_tensors(
        &named,
        &[("fc1.weight", vec![16, 64]), ("fc1.bias", vec![16])],
        &small,
        Some(meta),
    );
    let r = run(&["distance", "--from", s(&src), "--to", s(&named)]);
    assert_clean_failure(
        &r,
        &[
            s(&src),
            s(&named),
            "architectures differ",
            "mlp",
            "resnet18",
        ],
        None,
    );
    // and the same file against itself still measures
    assert_success(&run(&["distance", "--from", s(&src), "--to", s(&src)]));
}

#[test]
fn distance_with_nan_weights_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let (good, bad) = (
        d.path().join("good.safetensors"),
        d.path().join("nan.safetensors"),
    );
    bare_mlp(&good, 64, 5);
    write_tensors(
        &bad,
        &[
            ("fc1.weight", vec![16, 64]),
            ("fc1.bias", vec![16]),
            ("fc2.weight", vec![5, 16]),
            ("fc2.bias", vec![5]),
        ],
        &|n, i| {
            if n == "fc2.weight" && i == 7 {
                f32::NAN
            } else {
                small(n, i)
            }
        },
        None,
    );
    for (a, b) in [(&good, &bad), (&bad, &good)] {
        let r = run(&["distance", "--from", s(a), "--to", s(b)]);
        assert_clean_failure(&r, &[s(&bad), "fc2.weight", "NaN"], None);
    }
}

#[test]
fn bare_mlp_checkpoint_gets_its_input_size_from_fc1() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx(d.path(), 3, 8);
    let init = d.path().join("bare.safetensors");
    bare_mlp(&init, 64, 5);
    // finetune --init-arch mlp: the input is fc1's 64 columns, the 8x8 images fit
    let out = d.path().join("tuned.safetensors");
    assert_success(&run(&[
        "finetune",
        "--init",
        s(&init),
        "--init-arch",
        "mlp",
        "--data",
        s(d.path()),
        "--classes",
        "0-2",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        s(&out),
    ]));
    assert!(out.is_file());
    // eval --arch mlp on the bare file: runs (its 5 outputs are classes 0-4)
    let bare3 = d.path().join("bare3.safetensors");
    bare_mlp(&bare3, 64, 3);
    let r = run(&[
        "eval",
        "--model",
        s(&bare3),
        "--arch",
        "mlp",
        "--data",
        s(d.path()),
        "--json",
    ]);
    assert_success(&r);
    // an input size that the images do not have: a clear error naming the command's flag
    let odd = d.path().join("odd.safetensors");
    bare_mlp(&odd, 50, 3);
    let out2 = d.path().join("tuned2.safetensors");
    let r = run(&[
        "finetune",
        "--init",
        s(&odd),
        "--init-arch",
        "mlp",
        "--data",
        s(d.path()),
        "--classes",
        "0-2",
        "--epochs",
        "1",
        "--out",
        s(&out2),
    ]);
    assert_clean_failure(&r, &[s(&odd), "50"], Some(&out2));
    let r = run(&[
        "eval",
        "--model",
        s(&odd),
        "--arch",
        "mlp",
        "--data",
        s(d.path()),
    ]);
    assert_clean_failure(&r, &[s(&odd), "50"], None);
    // without the flag: the error names the flag of the command in use
    let r = run(&[
        "finetune",
        "--init",
        s(&init),
        "--data",
        s(d.path()),
        "--classes",
        "0-2",
        "--epochs",
        "1",
        "--out",
        s(&out2),
    ]);
    assert_clean_failure(&r, &[s(&init), "--init-arch"], Some(&out2));
    assert!(!r.stderr.contains("--arch "), "{}", r.stderr);
    let r = run(&["eval", "--model", s(&init), "--data", s(d.path())]);
    assert_clean_failure(&r, &[s(&init), "--arch"], None);
}

#[test]
fn freeze_beyond_the_stages_is_an_error_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    tiny_idx(d.path(), 3, 8);
    let src = d.path().join("src.safetensors");
    pretrain_mlp(d.path(), &src);
    let out = d.path().join("tuned.safetensors");
    // the data does not exist: the --freeze error comes first
    let missing = d.path().join("no-such-data");
    let r = run(&[
        "finetune",
        "--init",
        s(&src),
        "--data",
        s(&missing),
        "--classes",
        "0-2",
        "--freeze",
        "99",
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&r, &["--freeze", "99", "2 stages"], Some(&out));
    assert!(!d.path().join("tuned").exists(), "a run directory was made");
    let r = run(&[
        "pretrain",
        "--data",
        s(&missing),
        "--arch",
        "resnet18",
        "--freeze",
        "99",
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&r, &["--freeze", "99", "4 stages"], Some(&out));
    // within range: fine
    assert_success(&run(&[
        "finetune",
        "--init",
        s(&src),
        "--data",
        s(d.path()),
        "--classes",
        "0-2",
        "--freeze",
        "2",
        "--epochs",
        "1",
        "--out",
        s(&out),
    ]));
}

#[test]
fn out_naming_a_special_file_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    tiny_idx(&data, 4, 8);
    let fifo = tmp.path().join("fifo.safetensors");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let mut outs = vec![fifo.clone()];
    if Path::new("/dev/full").exists() {
        outs.push("/dev/full".into());
    }
    for out in &outs {
        let r = run(&[
            "pretrain",
            "--data",
            s(&data),
            "--arch",
            "mlp",
            "--out",
            s(out),
        ]);
        assert_clean_failure(&r, &["--out", s(out), "not a regular file"], None);
        let ft = std::fs::metadata(out).unwrap().file_type();
        assert!(
            !ft.is_file(),
            "{} was replaced by a regular file",
            out.display()
        );
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn out_is_checked_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("model.safetensors");
    // the data does not exist either: the output is checked first, so that is what is named
    let r = run(&[
        "pretrain",
        "--data",
        s(&tmp.path().join("no-such-data")),
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&r, &["--out", "is not a directory"], None);
    let r = run(&[
        "pretrain",
        "--data",
        s(&tmp.path().join("no-such-data")),
        "--out",
        s(tmp.path()),
    ]);
    assert_clean_failure(&r, &["--out", "is a directory"], None);
}

#[test]
fn out_equal_to_init_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    tiny_idx(&data, 4, 8);
    let src = tmp.path().join("src.safetensors");
    pretrain_mlp(&data, &src);
    let before = std::fs::read(&src).unwrap();
    let r = run(&[
        "finetune",
        "--init",
        s(&src),
        "--data",
        s(&data),
        "--classes",
        "2,3",
        "--out",
        s(&src),
    ]);
    assert_clean_failure(
        &r,
        &["--out", "is also the starting point", "--overwrite-init"],
        None,
    );
    assert_eq!(
        std::fs::read(&src).unwrap(),
        before,
        "the starting point was changed"
    );
    // said explicitly, the starting point is replaced by the fine-tuned model
    let r = run(&[
        "finetune",
        "--init",
        s(&src),
        "--data",
        s(&data),
        "--classes",
        "2,3",
        "--out",
        s(&src),
        "--overwrite-init",
    ]);
    assert_success(&r);
    assert_ne!(std::fs::read(&src).unwrap(), before);
    let tuned = sptune::models::checkpoint::Checkpoint::read(&src).unwrap();
    assert_eq!(tuned.spec().unwrap().classes, ["2", "3"]);
}

/// A run diverging after some epochs says where its last good epoch is kept, and `--resume`
/// continues from there: pretrain an MLP, kill it once its first epoch's state exists, resume
/// it with a learning rate that explodes the loss.
#[test]
fn divergence_keeps_the_last_good_epoch_for_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    tiny_idx(&data, 4, 200);
    let out = tmp.path().join("m.safetensors");
    let run_dir = tmp.path().join("m.run");
    let mut child = sptune()
        .args([
            "pretrain",
            "--data",
            s(&data),
            "--arch",
            "mlp",
            "--epochs",
            "2000",
        ])
        .args(["--batch-size", "8", "--lr", "0.01", "--out", s(&out)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = run_dir.join("resume/state.safetensors");
    let t0 = std::time::Instant::now();
    while !state.exists() {
        assert!(
            t0.elapsed().as_secs() < 120,
            "no epoch state after 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists());
    let r = run(&["pretrain", "--resume", s(&run_dir), "--lr", "1000"]);
    assert_clean_failure(
        &r,
        &["training diverged", "--resume", s(&run_dir), "lower --lr"],
        Some(&out),
    );
    assert!(state.exists(), "the last good epoch's state was lost");
    // and the state is still good: resuming at a sane rate, two more epochs, finishes
    let done = std::fs::read_to_string(run_dir.join("summary.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    let epochs = (done + 2).to_string();
    let r = run(&["pretrain", "--resume", s(&run_dir), "--epochs", &epochs]);
    assert_success(&r);
    assert!(out.exists() && !run_dir.join("resume").exists());
}

/// `sptune scenes` writes a train and a test folder the library reads back (classes
/// `background` then the items', masks within them), and refuses an existing folder and an
/// empty or inverted item range, writing nothing.
#[test]
fn scenes_written_and_bad_options_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scenes");
    let r = run(&[
        "scenes",
        "--out",
        s(&out),
        "--train",
        "12",
        "--test",
        "4",
        "--size",
        "40",
        "--items",
        "1-3",
        "--classes",
        "5-7",
    ]);
    assert_success(&r);
    let train = sptune::segmentation::load_mask_folder(&out.join("train"), 1).unwrap();
    let test = sptune::segmentation::load_mask_folder(&out.join("test"), 1).unwrap();
    assert_eq!((train.len(), test.len()), (12, 4));
    assert_eq!(train.classes, ["background", "5", "6", "7"]);
    assert!(
        train
            .images
            .iter()
            .all(|im| (im.height, im.width) == (40, 40))
    );
    assert!(train.images.iter().any(|im| im.mask.iter().any(|&v| v > 0)));
    let r = run(&["scenes", "--out", s(&out), "--train", "2", "--test", "1"]);
    assert_clean_failure(&r, &["already exists", "train"], None);
    let fresh = dir.path().join("fresh");
    for bad in ["0-2", "3-2"] {
        let r = run(&["scenes", "--out", s(&fresh), "--items", bad]);
        assert_clean_failure(&r, &["--items", bad], None);
        assert!(!fresh.exists(), "{bad}: wrote {}", fresh.display());
    }
}

/// The segmentation commands chained as a user would: scenes, a source, `segment` with alpha
/// candidates, then `eval` and `predict` on the saved network; options that belong to the
/// other kind of network, or are missing, are refused with the flag named and nothing written.
#[test]
fn segmentation_commands_chain_and_refuse_misuse() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (sc, src, seg) = (p("sc"), p("src.safetensors"), p("seg.safetensors"));
    assert_success(&run(&[
        "scenes",
        "--out",
        s(&sc),
        "--train",
        "8",
        "--test",
        "2",
        "--size",
        "32",
        "--classes",
        "5-7",
    ]));
    assert_success(&run(&[
        "pretrain",
        "--arch",
        "resnet18",
        "--width",
        "4",
        "--classes",
        "5-7",
        "--per-class",
        "10",
        "--epochs",
        "1",
        "--test-limit",
        "30",
        "--out",
        s(&src),
    ]));
    let r = run(&[
        "--json",
        "segment",
        "--init",
        s(&src),
        "--data",
        s(&sc),
        "--epochs",
        "1",
        "--crop",
        "32",
        "--batch-size",
        "4",
        "--alpha",
        "0.01,0.1",
        "--validation",
        "0.25",
        "--freeze",
        "1",
        "--out",
        s(&seg),
    ]);
    assert_success(&r);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["validation"].as_array().unwrap().len(), 2);
    let r = run(&["--json", "eval", "--model", s(&seg), "--data", s(&sc)]);
    assert_success(&r);
    let e: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // the saved network on the same test scenes: segment's own numbers
    assert_eq!(e["miou"], v["miou"]);
    assert_eq!(e["images"], 2);
    let img = sc.join("test/images/00000.png");
    let out = p("pred");
    let r = run(&[
        "predict",
        "--model",
        s(&seg),
        "--out",
        s(&out),
        "--panel",
        "2",
        "--truth",
        s(&sc.join("test/masks")),
        s(&img),
    ]);
    assert_success(&r);
    let (mask, w, h) = sptune::segmentation::data::read_mask(&out.join("00000.png")).unwrap();
    assert_eq!((w, h), (32, 32));
    assert!(mask.iter().all(|&m| m < 4));
    assert!(out.join("00000-panel.png").is_file());
    // misuse
    let r = run(&["eval", "--model", s(&seg)]);
    assert_clean_failure(&r, &["segmentation network", "--data"], None);
    let fresh = p("fresh");
    let r = run(&["predict", "--model", s(&seg), s(&img)]);
    assert_clean_failure(&r, &["segmentation network", "--out"], None);
    let r = run(&["predict", "--model", s(&src), "--out", s(&fresh), s(&img)]);
    assert_clean_failure(&r, &["--out", "classifier"], Some(&fresh));
    for (name, bad) in [
        ("alpha", "0.1,x"),
        ("alpha", "0.1,0.1"),
        ("alpha", "-1"),
        ("lr", "0.01,0"),
    ] {
        let flag = format!("--{name}={bad}");
        let r = run(&[
            "segment",
            "--init",
            s(&src),
            "--data",
            s(&sc),
            &flag,
            "--out",
            s(&fresh),
        ]);
        assert_clean_failure(&r, &[&format!("--{name}")], Some(&fresh));
    }
    let r = run(&[
        "segment",
        "--init",
        s(&src),
        "--data",
        s(&sc),
        "--bn",
        "recalibrate",
        "--out",
        s(&fresh),
    ]);
    assert_clean_failure(&r, &["--bn", "recalibrate"], Some(&fresh));
}
