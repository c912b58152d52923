//! Segmentation fine-tuning learns: alone in its test binary, because the network's
//! initialization draws from the device's generator, which tests running at the same time in
//! one process would share (and so change).

use burn::tensor::Device;
use sptune::models::ResNet;
use sptune::segmentation::{Backbone, SegNet};

mod common;
use common::shapes;

/// Fine-tuning learns the scenes: after 60 epochs on 32 scenes of squares and plus signs, the
/// training pixels are classified far better than by always answering "background" (the
/// majority class), both item classes get an IoU, and the loss fell.
#[test]
fn finetune_learns_scenes() {
    use sptune::regularizer::Scheme;
    use sptune::segmentation::{SceneOptions, SegAugment, SegTrainConfig, compose_scenes};
    let device = Device::flex();
    let ad = device.clone().autodiff();
    device.seed(3);
    ad.seed(3);
    let o = SceneOptions {
        count: 32,
        size: 24,
        items: (1, 3),
        threshold: 0.1,
        seed: 1,
    };
    let scenes = compose_scenes(&shapes(), &o).unwrap();
    let r = ResNet::with_layout(false, [1, 1, 1, 1], 1, 1, 8, true, &ad);
    let net = SegNet::fcn(Backbone::from_resnet(r).dilate([false, true, true]), 3, &ad);
    let cfg = SegTrainConfig {
        scheme: Scheme::L2,
        alpha: 1e-4,
        beta: 1e-4,
        lr: 0.05,
        momentum: 0.9,
        epochs: 60,
        batch_size: 8,
        augment: SegAugment {
            scale: (1.0, 1.0),
            crop: Some((24, 24)),
            flip: true,
        },
        mean: vec![0.2],
        std: vec![0.3],
        seed: 5,
        freeze: None,
        bn: sptune::train::BnMode::Train,
    };
    let (net, log) = sptune::segmentation::finetune(net, None, &scenes, &cfg, &ad).unwrap();
    assert!(
        log.last().unwrap().loss < 0.5 * log[0].loss,
        "loss {} -> {}",
        log[0].loss,
        log.last().unwrap().loss
    );
    let conf = sptune::segmentation::evaluate(&net, &scenes, &[0.2], &[0.3], &ad).unwrap();
    let background = (0..3).map(|p| conf.count(0, p)).sum::<u64>() as f64 / conf.pixels() as f64;
    let acc = conf.pixel_accuracy();
    let iou = conf.iou();
    eprintln!(
        "pixel accuracy {acc:.3}, background {background:.3}, IoU {iou:?}, loss {:.3} -> {:.3}",
        log[0].loss,
        log.last().unwrap().loss
    );
    assert!(
        acc > background + 0.5 * (1.0 - background),
        "pixel accuracy {acc:.3}, background alone {background:.3}"
    );
    assert!(
        iou[1].unwrap() > 0.2 && iou[2].unwrap() > 0.2,
        "IoU {iou:?}"
    );
}
