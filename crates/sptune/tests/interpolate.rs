//! Weight-space interpolation (WiSE-FT) against numpy and against its two ends.
//!
//! Fixture (tests/fixtures/interpolate/, made by make_fixture.py beside it, numpy only): an MLP
//! source `w0` and two fine-tunes of it, `ft_same` (the source's classes: the head is shared and
//! interpolated) and `ft_new` (new classes: the head is new and kept as it is); the expected
//! tensors at a = 0.5 and 0.3 are numpy's `(1 − a)·w0 + a·ft` in float64 rounded to float32.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sptune::interpolate::{InterpolateConfig, interpolate_tensors, parse_sweep, shared_names};
use sptune::models::checkpoint::Checkpoint;

fn fixture(name: &str) -> Checkpoint {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/interpolate")
        .join(name);
    Checkpoint::read(&p).unwrap()
}

#[test]
fn the_ends_are_the_starting_point_and_the_fine_tune_bit_for_bit() {
    let w0 = fixture("w0.safetensors");
    for ft in [
        fixture("ft_new.safetensors"),
        fixture("ft_same.safetensors"),
    ] {
        let at0 = interpolate_tensors(&w0, &ft, 0.0).unwrap();
        let at1 = interpolate_tensors(&w0, &ft, 1.0).unwrap();
        let shared = shared_names(&w0, &ft);
        for (name, (_, v)) in &ft.tensors {
            assert_eq!(&at1.tensors[name].1, v, "{name} at a = 1");
            let expect0 = if shared.contains(name) {
                &w0.tensors[name].1
            } else {
                v // the new head is the fine-tune's at every a
            };
            assert_eq!(&at0.tensors[name].1, expect0, "{name} at a = 0");
        }
    }
    // ft_new's head fc2 is new: not in S; ft_same's is shared
    let new = shared_names(&w0, &fixture("ft_new.safetensors"));
    assert!(!new.iter().any(|n| n.starts_with("fc2.")) && new.len() == 2);
    assert_eq!(shared_names(&w0, &fixture("ft_same.safetensors")).len(), 4);
}

#[test]
fn midpoints_match_numpy() {
    let w0 = fixture("w0.safetensors");
    for (ft, a) in [("ft_new", 0.5), ("ft_same", 0.5), ("ft_same", 0.3)] {
        let got = interpolate_tensors(&w0, &fixture(&format!("{ft}.safetensors")), a).unwrap();
        let want = fixture(&format!("expected_{ft}_{a}.safetensors"));
        assert_eq!(got.tensors.len(), want.tensors.len());
        for (name, (shape, v)) in &want.tensors {
            let (gs, g) = &got.tensors[name];
            assert_eq!(gs, shape, "{name}");
            for (x, y) in g.iter().zip(v) {
                assert!(
                    (x - y).abs() <= 1e-6 * y.abs().max(1e-3),
                    "{ft} a={a} {name}: {x} vs numpy {y}"
                );
            }
        }
    }
}

#[test]
fn bad_weights_and_lists_are_refused() {
    let (w0, ft) = (fixture("w0.safetensors"), fixture("ft_new.safetensors"));
    for a in [-0.1, 1.5, f64::NAN] {
        let e = interpolate_tensors(&w0, &ft, a).unwrap_err().to_string();
        assert!(e.contains("--at"), "{e}");
    }
    assert_eq!(
        parse_sweep("0:0.25:1").unwrap(),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(parse_sweep("0, 0.5,1").unwrap(), vec![0.0, 0.5, 1.0]);
    // the decimal values, not their sums of steps (0.1 + 0.1 + 0.1 is 0.30000000000000004)
    assert_eq!(
        parse_sweep("0:0.1:0.5").unwrap(),
        vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    );
    for bad in ["", "0,x", "0:0:1", "0,2", "0:0.0001:1"] {
        assert!(parse_sweep(bad).is_err(), "{bad:?} accepted");
    }
}

/// On Fashion-MNIST: at a = 1 the sweep's target accuracy is the fine-tune's own (the MLP has
/// no BatchNorm to recalibrate), at a = 0 its source accuracy is the source model's own.
#[test]
fn the_sweep_ends_agree_with_plain_evaluation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interpolate");
    let device = Device::flex();
    let cfg = InterpolateConfig {
        from: dir.join("w0.safetensors"),
        to: dir.join("ft_new.safetensors"),
        at: vec![0.0, 1.0],
        out: None,
        data: "fashion-mnist".into(),
        per_class: Some(20),
        seed: 0,
        source_data: None,
    };
    let o = sptune::interpolate::run(&cfg, &device).unwrap();
    let eval = sptune::run::evaluate(
        &sptune::run::EvalConfig {
            model: cfg.to.clone(),
            arch: None,
            source: Some(cfg.from.clone()),
            data: "fashion-mnist".into(),
            source_data: None,
            resize: 0,
        },
        &device,
    )
    .unwrap();
    assert_eq!(o.points[1].target_acc, eval.test_acc);
    let f = eval.forgetting.unwrap();
    assert_eq!(o.points[0].source_acc, Some(f.source_acc));
    assert_eq!(o.points[1].source_acc, Some(f.after_acc));
    assert_eq!(o.source_before, Some(f.source_acc));
    // the output must not be an input
    let tmp = tempfile::tempdir().unwrap();
    let copy: PathBuf = tmp.path().join("w0.safetensors");
    std::fs::copy(&cfg.from, &copy).unwrap();
    let bad = InterpolateConfig {
        from: copy.clone(),
        at: vec![0.5],
        out: Some(copy.clone()),
        ..cfg
    };
    let e = sptune::interpolate::run(&bad, &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--out"), "{e}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(dir.join("w0.safetensors")).unwrap()
    );
}

/// A fine-tune that kept the starting point's BatchNorm statistics (`--bn frozen`) is
/// interpolated without recalibrating them: at a = 0 and 0.5 the statistics are the starting
/// point's bit for bit (recalibrated, they would be the batch statistics of the target images).
/// One whose statistics moved is recalibrated: its statistics are then neither end's.
#[test]
fn statistics_kept_by_the_fine_tune_are_not_recalibrated() {
    let spec = sptune::models::ModelSpec {
        arch: "resnet18".into(),
        classes: vec!["a".into(), "b".into()],
        input: [1, 12, 12],
        width: 4,
        small_stem: true,
        hidden: vec![],
        mean: vec![0.5],
        std: vec![0.25],
    };
    let device = Device::flex();
    device.seed(3);
    let net = spec.init(&device).unwrap();
    let w0 = sptune::models::checkpoint::checkpoint_of(&net, &spec, Path::new("w0")).unwrap();
    let stats = |ck: &Checkpoint| -> Vec<(String, Vec<u32>)> {
        ck.tensors
            .iter()
            .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
            .map(|(n, (_, v))| (n.clone(), v.iter().map(|x| x.to_bits()).collect()))
            .collect()
    };
    // the weights moved, the statistics did not
    let mut frozen = w0.clone();
    for (n, (_, v)) in frozen.tensors.iter_mut() {
        if !sptune::params::is_buffer_name(n) {
            v.iter_mut().for_each(|x| *x += 0.01);
        }
    }
    // and one whose statistics moved too
    let mut moved = frozen.clone();
    for (n, (_, v)) in moved.tensors.iter_mut() {
        if n.ends_with("running_mean") {
            v.iter_mut().for_each(|x| *x += 0.5);
        }
    }
    assert!(sptune::interpolate::kept_statistics(&w0, &frozen));
    assert!(!sptune::interpolate::kept_statistics(&w0, &moved));
    let images: Vec<f32> = (0..16 * 144)
        .map(|i| ((i * 37) % 101) as f32 / 100.0)
        .collect();
    let labels: Vec<usize> = (0..16).map(|i| i % 2).collect();
    let train =
        sptune::data::Dataset::new(images, labels, spec.classes.clone(), 1, 12, 12).unwrap();
    let after = |ft: &Checkpoint, a: f64| {
        let (net, spec) = sptune::interpolate::interpolate(&w0, ft, a, &train, &device).unwrap();
        sptune::models::checkpoint::checkpoint_of(&net, &spec, Path::new("mixed")).unwrap()
    };
    for a in [0.0, 0.5] {
        assert_eq!(
            stats(&after(&frozen, a)),
            stats(&w0),
            "a = {a}: kept statistics changed"
        );
    }
    let recalibrated = stats(&after(&moved, 0.5));
    assert_ne!(recalibrated, stats(&w0));
    assert_ne!(recalibrated, stats(&moved));
}
