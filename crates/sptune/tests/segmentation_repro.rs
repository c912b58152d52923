//! `segment`'s choice by validation is reproducible: alone in its test binary, because the
//! device's generator (head initialization, dropout) is global to the process, and tests
//! running at the same time would draw from it between `segment`'s reseeding and its use.

use burn::tensor::Device;

mod common;
use common::write_scenes;

/// The pair (α, lr) chosen from a grid, given alone with the same seed, gives the same final
/// network: the same losses epoch by epoch and the same test mIoU.
#[test]
fn chosen_pair_alone_reproduces_the_final_network() {
    use sptune::models::ModelSpec;
    use sptune::models::checkpoint::save_model;
    use sptune::segmentation::model::HeadConfig;
    use sptune::segmentation::run::default_train;
    use sptune::segmentation::{SegmentConfig, segment};
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let spec = ModelSpec {
        arch: "resnet18".into(),
        classes: vec!["square".into(), "plus".into()],
        input: [1, 24, 24],
        width: 4,
        small_stem: true,
        hidden: vec![],
        mean: vec![0.2],
        std: vec![0.3],
    };
    let init = dir.path().join("src.safetensors");
    save_model(&spec.init(&device).unwrap(), &spec, &init, &[]).unwrap();
    write_scenes(&dir.path().join("scenes"), 24, 16, 4);
    let mut train = default_train(sptune::regularizer::Scheme::L2Sp);
    train.epochs = 2;
    train.batch_size = 8;
    train.augment.crop = Some((24, 24));
    let grid = SegmentConfig {
        init,
        data: dir.path().join("scenes"),
        out: None,
        output_stride: 4,
        head: HeadConfig::Fcn,
        train,
        source: None,
        fisher: None,
        alphas: vec![0.1, 0.001],
        lrs: vec![0.01, 0.05],
        validation: 0.25,
    };
    let g = segment(&grid, &device).unwrap();
    assert_eq!(g.validation.len(), 4);
    let alone = SegmentConfig {
        alphas: vec![g.alpha],
        lrs: vec![g.lr],
        ..grid.clone()
    };
    let a = segment(&alone, &device).unwrap();
    assert!(a.validation.is_empty());
    assert_eq!((a.miou, &a.losses), (g.miou, &g.losses));
}
