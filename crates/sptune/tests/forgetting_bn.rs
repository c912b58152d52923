//! Forgetting decomposed into BatchNorm running statistics and weights, on a fine-tune in which
//! only the statistics move: a ResNet fine-tuned with `--bn train` at a learning rate so small
//! (1e-30) that no weight changes by a bit, while every BatchNorm's running statistics move to
//! the target's images. Then the weights' part must be exactly 0 and the statistics' part the
//! whole forgetting; and the accuracy with the source's statistics must equal that of a
//! checkpoint rebuilt by hand from the source's statistics tensors.

mod common;

use burn::tensor::Device;
use sptune::eval::forgetting::{decompose, source_head_accuracy};
use sptune::models::checkpoint::Checkpoint;
use sptune::params::is_buffer_name;
use sptune::regularizer::Scheme;
use sptune::run::{self, FinetuneConfig, PretrainConfig, StartConfig};
use sptune::task::DataConfig;
use sptune::train::BnMode;

#[test]
fn only_statistics_moved_so_the_weights_part_is_zero() {
    let d = tempfile::tempdir().unwrap();
    common::tiny_idx(d.path());
    let data = d.path().to_str().unwrap().to_string();
    let device = Device::flex();
    let src = d.path().join("src.safetensors");
    let mut pre = PretrainConfig::default();
    pre.data.data = data.clone();
    pre.data.classes = "0-2".into();
    pre.model.arch = "resnet18".into();
    pre.model.width = 4;
    pre.model.small_stem = Some(true);
    (pre.train.epochs, pre.train.batch_size, pre.train.lr) = (3, 16, 0.05);
    pre.out = Some(src.clone());
    run::pretrain(&pre, &device, &mut |_| {}).unwrap();

    let tuned_path = d.path().join("tuned.safetensors");
    let mut ft = FinetuneConfig {
        start: StartConfig {
            init: src.clone(),
            ..StartConfig::default()
        },
        data: DataConfig {
            data: data.clone(),
            classes: "3-5".into(),
            per_class: Some(20),
            ..DataConfig::default()
        },
        out: Some(tuned_path.clone()),
        ..FinetuneConfig::default()
    };
    ft.train.reg = Scheme::None;
    ft.train.lr = 1e-30;
    ft.train.bn = BnMode::Train;
    ft.train.epochs = 2;
    run::finetune(&ft, &device, &mut |_| {}).unwrap();

    let source = Checkpoint::read(&src).unwrap();
    let tuned = Checkpoint::read(&tuned_path).unwrap();
    let head = source.spec().unwrap().head_names();
    let mut stats_moved = 0;
    for (name, (_, w0)) in &source.tensors {
        if head.contains(name) {
            continue; // replaced by the target's head
        }
        let (_, w) = &tuned.tensors[name];
        if is_buffer_name(name) {
            stats_moved += usize::from(w != w0);
        } else {
            assert_eq!(w, w0, "{name}: a weight moved at lr 1e-30");
        }
    }
    assert!(stats_moved > 10, "only {stats_moved} statistics moved");

    let st = sptune::task::load(
        &DataConfig {
            data: data.clone(),
            classes: "0-2".into(),
            ..DataConfig::default()
        },
        1,
    )
    .unwrap()
    .test;
    let dec = decompose(&source, &tuned, &st, None, &device).unwrap();
    assert_eq!(dec.weights_points, 0.0, "{dec:?}");
    let total = 100.0 * (dec.source_acc - dec.after_acc);
    assert!((dec.statistics_points - total).abs() < 1e-9, "{dec:?}");
    assert!(
        total.abs() > 0.0,
        "moving the statistics changed nothing: {dec:?}"
    );

    // the source-statistics accuracy, from a checkpoint rebuilt by hand
    let mut by_hand = tuned.clone();
    for name in source
        .tensors
        .keys()
        .filter(|n| n.ends_with("running_mean") || n.ends_with("running_var"))
    {
        by_hand
            .tensors
            .insert(name.clone(), source.tensors[name].clone());
    }
    let acc = source_head_accuracy(&source, &by_hand, &st, &device).unwrap();
    assert_eq!(acc, dec.after_acc_source_stats);
}
