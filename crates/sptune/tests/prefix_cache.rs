//! `--freeze K` without augmentation stores the frozen prefix's outputs once
//! (`train::prefix_cache`): training with the store must end where training without it ends
//! (every tensor to 1e-5 of its largest magnitude), on a ResNet and on EfficientNet-Lite0, and a
//! budget too small for the store says so and recomputes. The validation images' outputs are
//! stored too, when they fit in what is left, and score as the whole network scores them.
//! (Its own test binary: the budget is a process-wide setting.)

use burn::module::Module;
use burn::tensor::Device;
use sptune::data::Dataset;
use sptune::models::{ModelSpec, Net};
use sptune::params;
use sptune::regularizer::Scheme;
use sptune::runtime;
use sptune::train::{self, BnMode, Progress, TrainConfig};

/// The budget is one setting for the whole process: the tests take turns.
static BUDGET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spec(arch: &str, side: usize) -> ModelSpec {
    ModelSpec {
        arch: arch.into(),
        classes: (0..3).map(|c| c.to_string()).collect(),
        input: [1, side, side],
        width: 4,
        small_stem: true,
        hidden: vec![],
        mean: vec![0.5],
        std: vec![0.25],
    }
}

fn dataset(n: usize, side: usize) -> Dataset {
    dataset_at(n, side, 0.0)
}

/// `n` images whose pixels are the fractional parts of `phase + 0.618 i`.
fn dataset_at(n: usize, side: usize, phase: f32) -> Dataset {
    let images: Vec<f32> = (0..n * side * side)
        .map(|i| (phase + (i as f32) * 0.618).fract())
        .collect();
    Dataset {
        images,
        labels: (0..n).map(|i| i % 3).collect(),
        classes: (0..3).map(|c| c.to_string()).collect(),
        channels: 1,
        height: side,
        width: side,
    }
}

/// Trains `net` on 18 images of the spec's side; the trained network and the notes.
fn fit(net: Net, spec: &ModelSpec, cfg: &TrainConfig, dev: &Device) -> (Net, Vec<String>) {
    let mut notes = vec![];
    let data = dataset(18, spec.input[1]);
    let (net, _) = train::fit(net, spec, None, &data, None, cfg, dev, &mut |p| {
        if let Progress::Note(n) = p {
            notes.push(n)
        }
    })
    .unwrap();
    (net, notes)
}

/// The store budget set to `mb`, and the same initial network (seed 5) with the same
/// configuration: 2 epochs, frozen to stage `freeze`, BatchNorm frozen.
fn setup(spec: &ModelSpec, freeze: usize, mb: usize) -> (Device, Net, TrainConfig) {
    runtime::set_cache_budget_mb(mb);
    let dev = Device::flex().autodiff();
    dev.seed(5);
    let net: Net = spec.init(&dev).unwrap();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 6,
        lr: 0.05,
        reg: Scheme::L2,
        alpha: 1e-3,
        freeze: Some(freeze),
        bn: BnMode::Frozen,
        ..Default::default()
    };
    (dev, net, cfg)
}

/// Trains from the same initial network with the store budget `mb`; the trained tensors and
/// the notes.
fn train(spec: &ModelSpec, freeze: usize, mb: usize) -> (Vec<(String, Vec<f32>)>, Vec<String>) {
    let (dev, net, cfg) = setup(spec, freeze, mb);
    let (net, notes) = fit(net, spec, &cfg, &dev);
    let values = params::values(&net.valid())
        .into_iter()
        .map(|(i, v)| (i.name, v))
        .collect();
    (values, notes)
}

fn assert_close(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) {
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let scale = vb.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        let e = va
            .iter()
            .zip(vb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale));
        assert!(e <= 1e-5, "{na}: {e:e}");
    }
}

#[test]
fn stored_prefix_trains_like_recomputing_it() {
    let _turn = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    for (arch, side, k) in [("resnet18", 8, 2), ("efficientnet-lite0", 16, 3)] {
        let s = spec(arch, side);
        let (recomputed, notes) = train(&s, k, 0);
        assert!(notes.is_empty(), "{notes:?}");
        let (stored, notes) = train(&s, k, 2048);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("outputs of the 18 training images computed once"),
            "{notes:?}"
        );
        if arch == "resnet18" {
            // stage 2 of width 4 on 8 px: 8 channels of 4x4, 18 images of 4-byte floats
            assert!(notes[0].contains(&format!("({} KiB,", 8 * 4 * 4 * 18 * 4 / 1024)));
        }
        assert_close(&stored, &recomputed);
        // the frozen part really is frozen and the rest really trained (the comparison is
        // not between two untouched networks)
        let dev = Device::flex().autodiff();
        dev.seed(5);
        let init: Vec<(String, Vec<f32>)> = params::values(&s.init(&dev).unwrap().valid())
            .into_iter()
            .map(|(i, v)| (i.name, v))
            .collect();
        let frozen = train::frozen_predicate(&s, Some(k));
        let moved = init
            .iter()
            .zip(&stored)
            .filter(|((n, a), (_, b))| !frozen(n) && a != b)
            .count();
        assert!(moved > 0, "{arch}: nothing trained");
        for ((n, a), (_, b)) in init.iter().zip(&stored) {
            if frozen(n) {
                assert_eq!(a, b, "{arch}: {n} moved though frozen");
            }
        }
    }
    // a store that does not fit: EfficientNet at 64 px frozen to stage 1 keeps 16 channels of
    // 32x32 per image (64 KiB), 1.1 MiB for 18 images, over a budget of 1 MiB
    let s = spec("efficientnet-lite0", 64);
    runtime::set_cache_budget_mb(1);
    let dev = Device::flex().autodiff();
    let net = s.init(&dev).unwrap();
    let mut notes = vec![];
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 6,
        freeze: Some(1),
        reg: Scheme::L2,
        ..Default::default()
    };
    train::fit(
        net,
        &s,
        None,
        &dataset(18, 64),
        None,
        &cfg,
        &dev,
        &mut |p| {
            if let Progress::Note(n) = p {
                notes.push(n)
            }
        },
    )
    .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("over the cache budget of 1 MiB"),
        "{}",
        notes[0]
    );
}

/// Trains from the same initial network with the store budget `mb` and 9 validation images;
/// the epochs' logs and the notes.
fn train_with_val(
    spec: &ModelSpec,
    freeze: usize,
    mb: usize,
    n_train: usize,
) -> (Vec<train::EpochLog>, Vec<String>) {
    let (dev, net, cfg) = setup(spec, freeze, mb);
    let side = spec.input[1];
    let (tr, mut val) = (dataset(n_train, side), dataset_at(18, side, 0.37));
    // labels unlike the training images' at the same positions
    val.labels = (0..18).map(|i| (i + 1) % 3).collect();
    let mut notes = vec![];
    let (_, logs) = train::fit(net, spec, None, &tr, Some(&val), &cfg, &dev, &mut |p| {
        if let Progress::Note(n) = p {
            notes.push(n)
        }
    })
    .unwrap();
    (logs, notes)
}

#[test]
fn stored_validation_outputs_score_like_the_whole_network() {
    let _turn = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    for (arch, side, k) in [("resnet18", 8, 2), ("efficientnet-lite0", 16, 3)] {
        let s = spec(arch, side);
        let (recomputed, notes) = train_with_val(&s, k, 0, 18);
        assert!(notes.is_empty(), "{notes:?}");
        let (stored, notes) = train_with_val(&s, k, 2048, 18);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("outputs of the 18 training and 18 validation images computed once"),
            "{notes:?}"
        );
        assert_eq!(stored.len(), 2);
        for (a, b) in stored.iter().zip(&recomputed) {
            // the same chunks through the same kernels: the same numbers, not merely close
            assert_eq!(a.val_acc, b.val_acc, "{arch} epoch {}", a.epoch);
            let (la, lb) = (a.val_loss.unwrap(), b.val_loss.unwrap());
            assert!(la.is_finite() && la > 0.0, "{arch}: val loss {la}");
            assert!((la - lb).abs() <= 1e-6 * lb, "{arch}: {la} vs {lb}");
        }
        // the validation actually followed the training (not two untouched networks)
        assert_ne!(stored[0].val_loss, stored[1].val_loss, "{arch}");
    }
    // the training images' outputs fit, the validation images' do not: EfficientNet at 64 px
    // frozen to stage 1 keeps 64 KiB per image, 0.5 MiB for 8 training images (1 MiB of a
    // 2 MiB budget once rounded up) and 1.1 MiB for 18 validation images
    let s = spec("efficientnet-lite0", 64);
    let (logs, notes) = train_with_val(&s, 1, 2, 8);
    assert_eq!(logs.len(), 2);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("outputs of the 8 training images computed once")
            && notes[0].contains(
                "the 18 validation images' outputs do not fit in the 1 MiB left of --cache-mb"
            ),
        "{}",
        notes[0]
    );
}
