//! A new architecture in one file: a tiny CNN registered from outside the crate works with
//! `pretrain`, `finetune` with frozen first stages, and the Fisher.
//!
//! Expected values are not recorded numbers: frozen tensors must equal the source's bit for
//! bit, unfrozen ones must have moved, and the Fisher (computed by the probe path, since the
//! CPU engine covers only the built-in networks) must equal the batch-1 loop, an independent
//! per-example autodiff computation of the same formula.

mod common;

use common::tiny_idx;
use std::sync::Arc;

use burn::tensor::Device;
use sptune::fisher::{Batch1Loop, Engine, FisherOptions};
use sptune::models::arch::{Architecture, Shapes};
use sptune::models::checkpoint::{Checkpoint, load_model};
use sptune::models::registry;
use sptune::models::sequential::{LayerSpec, Sequential};
use sptune::models::{ModelSpec, Net};
use sptune::regularizer::Scheme;
use sptune::run::{self, FinetuneConfig, FisherConfig, PretrainConfig};

/// conv(8) -> BN -> ReLU -> max-pool | conv(16) -> BN -> ReLU | global pool -> linear head.
struct TinyCnn;

const HEAD: usize = 8;

impl Architecture for TinyCnn {
    fn name(&self) -> &'static str {
        "tiny-cnn"
    }
    fn build(&self, spec: &ModelSpec, device: &Device) -> sptune::Result<Net> {
        let c = spec.input[0];
        let layers = [
            LayerSpec::Conv {
                channels: [c, 8],
                k: 3,
                stride: 1,
            },
            LayerSpec::Norm {
                channels: 8,
                momentum: 0.1,
            },
            LayerSpec::Relu,
            LayerSpec::MaxPool { k: 2 },
            LayerSpec::Conv {
                channels: [8, 16],
                k: 3,
                stride: 1,
            },
            LayerSpec::Norm {
                channels: 16,
                momentum: 0.1,
            },
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear {
                features: [16, spec.num_classes()],
            },
        ];
        Ok(Net::Sequential(Sequential::new(&layers, device)))
    }
    fn infer_spec(&self, shapes: Shapes, spec: &mut ModelSpec) -> Result<(), String> {
        let conv = shapes("seq.0.weight").ok_or("seq.0.weight")?;
        let head = shapes("seq.8.weight").ok_or("seq.8.weight")?;
        spec.input[0] = conv[1];
        spec.classes = (0..head[0]).map(|i| i.to_string()).collect();
        Ok(())
    }
    fn head_names(&self, _spec: &ModelSpec) -> Vec<String> {
        vec![format!("seq.{HEAD}.weight"), format!("seq.{HEAD}.bias")]
    }
    /// Stage 1: the first conv and BN; stage 2: the second.
    fn stage_of(&self, _spec: &ModelSpec, name: &str) -> usize {
        match name.split('.').nth(1).and_then(|i| i.parse::<usize>().ok()) {
            Some(0..=3) => 1,
            Some(4..=6) => 2,
            _ => usize::MAX,
        }
    }
    fn stages(&self, _spec: &ModelSpec) -> usize {
        2
    }
    fn bn_momentum(&self) -> Option<f64> {
        Some(0.1)
    }
}

#[test]
fn a_registered_architecture_pretrains_finetunes_frozen_and_has_a_fisher() {
    registry::register(Arc::new(TinyCnn)).unwrap();
    assert!(registry::names().contains(&"tiny-cnn"));
    let d = tempfile::tempdir().unwrap();
    tiny_idx(d.path());
    let data = d.path().to_str().unwrap().to_string();
    let device = Device::flex();

    let mut pre = PretrainConfig::default();
    pre.model.arch = "tiny-cnn".into();
    pre.data.data = data.clone();
    pre.data.classes = "0-2".into();
    (pre.train.epochs, pre.train.batch_size, pre.train.lr) = (3, 16, 0.05);
    let src = d.path().join("src.safetensors");
    pre.out = Some(src.clone());
    let p = run::pretrain(&pre, &device, &mut |_| {}).unwrap();
    assert!(p.report.test_acc > 0.5, "{}", p.report.test_acc);

    // finetune on the other classes with stage 1 frozen
    let mut ft = FinetuneConfig::new(&src, "3-5");
    ft.data.data = data.clone();
    ft.train.reg = Scheme::L2Sp;
    ft.train.freeze = Some(1);
    (ft.train.epochs, ft.train.batch_size, ft.train.lr) = (2, 16, 0.05);
    let tuned = run::finetune(&ft, &device, &mut |_| {}).unwrap();
    let load = tuned.report.load.as_ref().unwrap();
    assert_eq!(load.replaced_head, vec!["seq.8.weight", "seq.8.bias"]);
    let before = Checkpoint::read(&src).unwrap().tensors;
    for (info, vals) in sptune::params::values(&tuned.model) {
        let stage = tuned.spec.stage_of(&info.name);
        let same = before.get(&info.name).is_some_and(|(_, v)| *v == vals);
        match stage {
            1 => assert!(same, "{} is frozen but moved", info.name),
            // the bias of a convolution feeding a BatchNorm in training mode: the BatchNorm
            // subtracts its input's batch mean, so the task gradient is 0 (up to rounding),
            // and L2-SP's pull is 0 at w0; it stays within float noise of w0
            2 if info.name == "seq.4.bias" => {
                let (_, v) = &before[&info.name];
                let moved = v
                    .iter()
                    .zip(&vals)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(moved < 1e-6, "{} moved by {moved:e}", info.name);
            }
            2 if !info.name.contains("running") => {
                assert!(!same, "{} should have moved", info.name)
            }
            _ => {}
        }
    }
    // --freeze beyond the architecture's stages is refused
    ft.train.freeze = Some(3);
    let e = run::finetune(&ft, &device, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--freeze") && e.contains("2 stages"), "{e}");

    // the Fisher, through the library's run, against the batch-1 loop
    let mut fc = FisherConfig {
        model: src.clone(),
        samples: 40,
        ..FisherConfig::default()
    };
    fc.data.data = data;
    fc.options.batch_size = 16;
    let got = run::fisher(&fc, &device, &mut |_, _| {}).unwrap();
    assert_eq!(got.engine, "probe");
    let (net, spec) = load_model(&src, None, &device).unwrap();
    let task = sptune::task::load(
        &sptune::task::DataConfig {
            data: fc.data.data.clone(),
            classes: spec.classes.join(","),
            ..Default::default()
        },
        1,
    )
    .unwrap();
    let ds = sptune::data::take_first(&task.train, 40);
    let want = Batch1Loop
        .compute(
            &net,
            &spec,
            &ds,
            &FisherOptions::default(),
            &device,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(
        got.fisher.tensors.keys().collect::<Vec<_>>(),
        want.tensors.keys().collect::<Vec<_>>()
    );
    for (name, (_, w)) in &want.tensors {
        let g = &got.fisher.tensors[name].1;
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= 1e-4 * scale, "{name}: {a} vs {b}");
        }
    }
}
