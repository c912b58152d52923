//! The optimizer and the trainer: PyTorch SGD semantics with the -SP gradient, freezing,
//! anchor selection and head replacement.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sptune::data::Dataset;
use sptune::models::ModelSpec;
use sptune::models::checkpoint::{Checkpoint, load_into};
use sptune::params::{self, Kind};
use sptune::regularizer::{Anchor, Scheme};
use sptune::regularizer::{FisherScaling, Penalty, PenaltyConfig, StartingPoint};
use sptune::train::{self, Sgd, TrainConfig};

fn ckpt(tensors: Vec<(&str, Vec<usize>, Vec<f32>)>) -> Checkpoint {
    Checkpoint {
        path: "test".into(),
        tensors: tensors
            .into_iter()
            .map(|(n, s, v)| (n.to_string(), (s, v)))
            .collect::<BTreeMap<_, _>>(),
        metadata: Default::default(),
    }
}

fn linear_spec(inputs: usize, classes: usize) -> ModelSpec {
    ModelSpec {
        arch: "mlp".into(),
        classes: (0..classes).map(|c| c.to_string()).collect(),
        input: [1, 1, inputs],
        width: 64,
        small_stem: false,
        hidden: vec![],
        mean: vec![0.0],
        std: vec![1.0],
    }
}

/// Closed-form gradient of mean softmax cross-entropy for a linear model z = W x + b
/// (W in torch layout [C, K]): dL/dW[c,k] = 1/B Σ_i (p_ic − 1[y_i=c]) x_ik, dL/db[c] likewise.
fn ce_grad(
    w: &[f64],
    b: &[f64],
    x: &[f64],
    y: &[usize],
    c: usize,
    k: usize,
) -> (Vec<f64>, Vec<f64>) {
    let n = y.len();
    let (mut gw, mut gb) = (vec![0.0; c * k], vec![0.0; c]);
    for i in 0..n {
        let z: Vec<f64> = (0..c)
            .map(|cc| b[cc] + (0..k).map(|kk| w[cc * k + kk] * x[i * k + kk]).sum::<f64>())
            .collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for cc in 0..c {
            let d = e[cc] / s - if y[i] == cc { 1.0 } else { 0.0 };
            gb[cc] += d / n as f64;
            for kk in 0..k {
                gw[cc * k + kk] += d * x[i * k + kk] / n as f64;
            }
        }
    }
    (gw, gb)
}

#[test]
fn sgd_momentum_with_l2_sp_matches_pytorch_semantics() {
    // Two steps of torch.optim.SGD(lr, momentum=μ, dampening=0) on loss + α/2‖w − w0‖²,
    // derived by hand: b1 = g1 + α(w − w0); w1 = w − lr b1; b2 = μ b1 + g2 + α(w1 − w0);
    // w2 = w1 − lr b2, with g from the closed-form cross-entropy gradient above.
    let (c, k, n) = (3usize, 4usize, 5usize);
    let (lr, mu, alpha) = (0.1, 0.9, 0.3);
    let spec = linear_spec(k, c);
    let w_init: Vec<f32> = (0..c * k)
        .map(|i| ((i as f32) * 0.37).sin() * 0.5)
        .collect();
    let b_init: Vec<f32> = vec![0.1, -0.2, 0.05];
    let w0: Vec<f32> = (0..c * k)
        .map(|i| ((i as f32) * 0.11).cos() * 0.3)
        .collect();
    let b0: Vec<f32> = vec![0.0, 0.1, -0.1];
    let x: Vec<f32> = (0..n * k).map(|i| ((i as f32) * 0.7).sin()).collect();
    let y: Vec<usize> = vec![0, 2, 1, 2, 0];

    let dev = Device::flex().autodiff();
    let start = ckpt(vec![
        ("fc1.weight", vec![c, k], w_init.clone()),
        ("fc1.bias", vec![c], b_init.clone()),
    ]);
    let reference = ckpt(vec![
        ("fc1.weight", vec![c, k], w0.clone()),
        ("fc1.bias", vec![c], b0.clone()),
    ]);
    let (mut net, _) = load_into(spec.init(&dev).unwrap(), &spec, &start, false).unwrap();
    let sp = StartingPoint::new(reference, &[]);
    let cfg = PenaltyConfig {
        scheme: Scheme::L2Sp,
        alpha,
        beta: 0.0,
        anchor: Anchor::All,
    };
    let penalty = Penalty::new(&net, Some(&sp), cfg, &|_| false, &dev).unwrap();
    let mut opt = Sgd::new(mu);
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 1, 1, k]), &dev);
    let yt = Tensor::<1, Int>::from_data(
        TensorData::new(y.iter().map(|v| *v as i64).collect::<Vec<_>>(), [n]),
        &dev,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&dev);
    for _ in 0..2 {
        let loss = loss_fn.forward(net.forward(xt.clone()), yt.clone());
        let mut grads = GradientsParams::from_grads(loss.backward(), &net);
        penalty.apply(&net, &mut grads, false);
        net = opt.step(lr, net, grads);
    }

    let f = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
    let (mut w, mut b) = (f(&w_init), f(&b_init));
    let (w0, b0, x) = (f(&w0), f(&b0), f(&x));
    let (mut mw, mut mb) = (vec![0.0; c * k], vec![0.0; c]);
    for step in 0..2 {
        let (gw, gb) = ce_grad(&w, &b, &x, &y, c, k);
        for i in 0..c * k {
            let g = gw[i] + alpha * (w[i] - w0[i]);
            mw[i] = if step == 0 { g } else { mu * mw[i] + g };
            w[i] -= lr * mw[i];
        }
        for i in 0..c {
            let g = gb[i] + alpha * (b[i] - b0[i]);
            mb[i] = if step == 0 { g } else { mu * mb[i] + g };
            b[i] -= lr * mb[i];
        }
    }
    let got: BTreeMap<String, Vec<f32>> = params::values(&net)
        .into_iter()
        .map(|(i, v)| (i.name, v))
        .collect();
    for (name, want) in [("fc1.weight", &w), ("fc1.bias", &b)] {
        for (g, e) in got[name].iter().zip(want.iter()) {
            assert!(
                (*g as f64 - e).abs() < 1e-5,
                "{name}: {g} vs hand-derived {e}"
            );
        }
    }
}

/// One SGD step with L2-SP-Fisher: w1 = w − lr (∇CE + α F̃ ⊙ (w − w0)) with
/// F̃ = F / mean_S(F) + ε (`--fisher-normalize mean`) or F + ε (`none`); the mean runs over
/// every regularized entry of S (here weight and bias), computed by hand below.
#[test]
fn sgd_with_l2_sp_fisher_uses_normalized_weights_and_floor() {
    use sptune::fisher::{Estimator, Fisher};
    use sptune::regularizer::FisherNormalize;
    let (c, k, n) = (3usize, 2usize, 4usize);
    let (lr, alpha, eps) = (0.2, 0.7, 0.05);
    let spec = linear_spec(k, c);
    let w_init: Vec<f32> = vec![0.3, -0.2, 0.1, 0.4, -0.5, 0.2];
    let b_init: Vec<f32> = vec![0.1, -0.1, 0.0];
    let w0: Vec<f32> = vec![0.0, 0.1, -0.1, 0.2, 0.0, 0.3];
    let b0: Vec<f32> = vec![0.2, 0.0, -0.2];
    let fw: Vec<f32> = vec![0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
    let fb: Vec<f32> = vec![2.0, 0.0, 1.0];
    let x: Vec<f32> = vec![1.0, 0.5, -0.3, 0.8, 0.2, -1.0, 0.0, 0.4];
    let y = vec![0usize, 1, 2, 1];
    let dev = Device::flex().autodiff();
    let start = ckpt(vec![
        ("fc1.weight", vec![c, k], w_init.clone()),
        ("fc1.bias", vec![c], b_init.clone()),
    ]);
    let reference = ckpt(vec![
        ("fc1.weight", vec![c, k], w0.clone()),
        ("fc1.bias", vec![c], b0.clone()),
    ]);
    let fisher = Fisher {
        tensors: [
            ("fc1.weight".to_string(), (vec![c, k], fw.clone())),
            ("fc1.bias".to_string(), (vec![c], fb.clone())),
        ]
        .into_iter()
        .collect(),
        estimator: Estimator::Exact,
        samples: 1,
        mc_samples: 0,
        path: None,
    };
    let mean = (fw.iter().chain(&fb).map(|v| *v as f64).sum::<f64>()) / 9.0;
    for (how, scale) in [
        (FisherNormalize::Mean, 1.0 / mean),
        (FisherNormalize::None, 1.0),
    ] {
        let (net, _) = load_into(spec.init(&dev).unwrap(), &spec, &start, false).unwrap();
        let scaling = FisherScaling {
            normalize: how,
            max: None,
            floor: eps,
        };
        let sp = StartingPoint::new(reference.clone(), &[])
            .with_fisher(fisher.clone(), scaling)
            .unwrap();
        let cfg = PenaltyConfig {
            scheme: Scheme::L2SpFisher,
            alpha,
            beta: 0.0,
            anchor: Anchor::All,
        };
        let penalty = Penalty::new(&net, Some(&sp), cfg, &|_| false, &dev).unwrap();
        let mut opt = Sgd::new(0.9);
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 1, 1, k]), &dev);
        let yt = Tensor::<1, Int>::from_data(
            TensorData::new(y.iter().map(|v| *v as i64).collect::<Vec<_>>(), [n]),
            &dev,
        );
        let loss = CrossEntropyLossConfig::new()
            .init(&dev)
            .forward(net.forward(xt), yt);
        let mut grads = GradientsParams::from_grads(loss.backward(), &net);
        penalty.apply(&net, &mut grads, false);
        let net = opt.step(lr, net, grads);
        let f = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
        let (gw, gb) = ce_grad(&f(&w_init), &f(&b_init), &f(&x), &y, c, k);
        let got: BTreeMap<String, Vec<f32>> = params::values(&net)
            .into_iter()
            .map(|(i, v)| (i.name, v))
            .collect();
        for (name, w, w0, fi, g) in [
            ("fc1.weight", &w_init, &w0, &fw, &gw),
            ("fc1.bias", &b_init, &b0, &fb, &gb),
        ] {
            for j in 0..w.len() {
                let ft = fi[j] as f64 * scale + eps;
                let want = w[j] as f64 - lr * (g[j] + alpha * ft * (w[j] - w0[j]) as f64);
                let v = got[name][j] as f64;
                assert!(
                    (v - want).abs() < 1e-5,
                    "{how:?} {name}[{j}]: {v} vs {want}"
                );
            }
        }
    }
    // a Fisher scheme without Fisher weights is refused
    let (net, _) = load_into(spec.init(&dev).unwrap(), &spec, &start, false).unwrap();
    let cfg = PenaltyConfig {
        scheme: Scheme::GlSpFisher,
        alpha: 0.01,
        beta: 0.01,
        anchor: Anchor::All,
    };
    let sp = StartingPoint::new(reference, &[]);
    let e = Penalty::new(&net, Some(&sp), cfg, &|_| false, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--fisher"), "{e}");
}

fn tiny_resnet(classes: usize) -> ModelSpec {
    ModelSpec {
        arch: "resnet18".into(),
        classes: (0..classes).map(|c| c.to_string()).collect(),
        input: [1, 8, 8],
        width: 4,
        small_stem: true,
        hidden: vec![],
        mean: vec![0.5],
        std: vec![0.25],
    }
}

fn random_dataset(n: usize, classes: usize) -> Dataset {
    let images: Vec<f32> = (0..n * 64).map(|i| ((i as f32) * 0.618).fract()).collect();
    Dataset {
        images,
        labels: (0..n).map(|i| i % classes).collect(),
        classes: (0..classes).map(|c| c.to_string()).collect(),
        channels: 1,
        height: 8,
        width: 8,
    }
}

fn snapshot(net: &sptune::models::Net) -> BTreeMap<String, (Kind, Vec<f32>)> {
    params::values(net)
        .into_iter()
        .map(|(i, v)| (i.name, (i.kind, v)))
        .collect()
}

#[test]
fn frozen_stages_are_bit_identical_and_their_bn_statistics_fixed() {
    let spec = tiny_resnet(3);
    let dev = Device::flex().autodiff();
    dev.seed(3);
    let net = spec.init(&dev).unwrap();
    let before = snapshot(&net);
    let reference = ckpt(
        params::values(&net)
            .into_iter()
            .map(|(i, v)| (Box::leak(i.name.into_boxed_str()) as &str, i.shape, v))
            .collect(),
    );
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 8,
        lr: 0.05,
        reg: Scheme::L2Sp,
        alpha: 0.01,
        freeze: Some(1),
        ..Default::default()
    };
    let ds = random_dataset(24, 3);
    let (net, logs) = train::fit(
        net,
        &spec,
        Some(&StartingPoint::new(reference, &[])),
        &ds,
        None,
        &cfg,
        &dev,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(logs.len(), 2);
    let after = snapshot(&net.valid());
    let frozen = train::frozen_predicate(&spec, Some(1));
    let (mut n_frozen, mut n_moved) = (0, 0);
    for (name, (kind, v)) in &before {
        let a = &after[name].1;
        if frozen(name) {
            n_frozen += 1;
            assert!(
                v.iter().zip(a).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name} ({kind:?}) changed though frozen"
            );
        } else if name.starts_with("layer2")
            && (name.ends_with("conv1.weight") || name.ends_with("running_mean"))
        {
            n_moved += 1;
            assert!(v != a, "{name} did not change though trained");
        }
    }
    assert!(
        n_frozen >= 4 * 2 + 4 * 4,
        "expected stem + layer1 tensors to be frozen, got {n_frozen}"
    );
    assert!(
        n_moved >= 4,
        "layer2 convs and BN statistics must move, checked {n_moved}"
    );
}

#[test]
fn roles_follow_reference_anchor_and_head() {
    let spec = tiny_resnet(3);
    let dev = Device::flex().autodiff();
    let src_spec = tiny_resnet(5);
    let src = src_spec.init(&dev).unwrap();
    let reference = ckpt(
        params::values(&src)
            .into_iter()
            .map(|(i, v)| (Box::leak(i.name.into_boxed_str()) as &str, i.shape, v))
            .collect(),
    );
    let (net, report) = load_into(spec.init(&dev).unwrap(), &spec, &reference, true).unwrap();
    assert_eq!(report.replaced_head, vec!["fc.weight", "fc.bias"]);
    for (anchor, bn_role) in [(Anchor::All, "shared"), (Anchor::Weights, "shared-free")] {
        let cfg = PenaltyConfig {
            scheme: Scheme::GlSp,
            alpha: 1.0,
            beta: 0.01,
            anchor,
        };
        let sp = StartingPoint::new(reference.clone(), &report.replaced_head);
        let penalty = Penalty::new(&net, Some(&sp), cfg, &|_| false, &dev).unwrap();
        let roles: BTreeMap<String, &str> = penalty.roles().into_iter().collect();
        assert_eq!(roles["fc.weight"], "new");
        assert_eq!(roles["fc.bias"], "new");
        assert_eq!(roles["layer3.1.conv2.weight"], "shared");
        assert_eq!(roles["layer3.1.bn2.weight"], bn_role);
        assert_eq!(roles["bn1.bias"], bn_role);
        assert!(
            !roles.contains_key("bn1.running_mean"),
            "buffers are never optimized"
        );
    }
}

#[test]
fn divergence_is_reported_not_saved() {
    let spec = ModelSpec {
        input: [1, 8, 8],
        ..linear_spec(64, 3)
    };
    let dev = Device::flex().autodiff();
    // lr·β ≥ 2(1 + μ): refused before the first step (the β-L2 alone would diverge)
    let cfg = TrainConfig {
        epochs: 50,
        batch_size: 4,
        lr: 1e30,
        ..TrainConfig::pretrain()
    };
    let net = spec.init(&dev).unwrap();
    let ds = random_dataset(12, 3);
    let err = train::fit(net, &spec, None, &ds, None, &cfg, &dev, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("diverge") && msg.contains("--lr"), "{msg}");
    assert!(!msg.contains('\n'));
    // a non-finite loss during training (an infinite pixel) stops with the step named
    let mut ds = random_dataset(12, 3);
    ds.images[5] = f32::INFINITY;
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 4,
        ..TrainConfig::pretrain()
    };
    let net = spec.init(&dev).unwrap();
    let err = train::fit(net, &spec, None, &ds, None, &cfg, &dev, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("diverged") && msg.contains("loss is"), "{msg}");
    assert!(!msg.contains('\n'));
}

/// `--bn auto`: frozen only when fine-tuning an architecture whose BatchNorm momentum is below
/// 0.05 (EfficientNet-Lite's is 0.01, torchvision ResNets' 0.1); explicit modes pass through.
#[test]
fn bn_auto_freezes_only_low_momentum_finetuning() {
    use sptune::train::BnMode;
    let eff = ModelSpec {
        arch: "efficientnet-lite0".into(),
        ..tiny_resnet(3)
    };
    let res = tiny_resnet(3);
    assert_eq!(BnMode::Auto.resolve(&eff, true), BnMode::Frozen);
    assert_eq!(BnMode::Auto.resolve(&eff, false), BnMode::Train);
    assert_eq!(BnMode::Auto.resolve(&res, true), BnMode::Train);
    assert_eq!(BnMode::Train.resolve(&eff, true), BnMode::Train);
    assert_eq!(BnMode::Frozen.resolve(&res, false), BnMode::Frozen);
    // the stored side before the center crop: ImageNet's 256 for 224, the side below 128 px
    assert_eq!(sptune::data::stored_side(224), 256);
    assert_eq!(sptune::data::stored_side(32), 32);
    assert_eq!(sptune::data::stored_side(28), 28);
}

/// `recalibrate_bn`: the stem BatchNorm's running mean / variance become the average over the
/// batches (file order, 4 + 4 + 2 images) of the per-channel mean / biased variance of its
/// input, recomputed here from the stem convolution's output captured by a forward hook; a
/// frozen stem keeps its statistics.
#[test]
fn recalibration_averages_batch_statistics() {
    use burn::nn::BatchNorm;
    use burn::nn::conv::Conv2d;
    use sptune::models::Hook;

    /// Records the input of the first BatchNorm of each forward pass.
    struct FirstBn(Vec<Vec<f32>>, bool);
    impl Hook for FirstBn {
        fn conv2d(&mut self, m: &Conv2d, x: Tensor<4>) -> Tensor<4> {
            m.forward(x)
        }
        fn batch_norm(&mut self, m: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
            if !self.1 {
                self.0.push(
                    x.clone()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec()
                        .unwrap(),
                );
                self.1 = true;
            }
            m.forward(x)
        }
        fn linear(&mut self, m: &burn::nn::Linear, x: Tensor<2>) -> Tensor<2> {
            m.forward(x)
        }
    }

    let spec = tiny_resnet(3);
    let ds = random_dataset(10, 3);
    let dev = Device::flex().autodiff();
    let net = spec.init(&dev).unwrap();
    // materialize every (lazily initialized) tensor once, so each copy below has the same
    let vals: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = params::values(&net)
        .into_iter()
        .map(|(i, v)| (i.name, (i.shape, v)))
        .collect();
    let net = params::assign(net, &vals);
    // expected: per batch, per channel (width 4) mean and biased variance of conv1's output
    let opts = spec.batch_options(false);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let eval = net.valid();
    let (mut mean, mut var) = (vec![0f64; 4], vec![0f64; 4]);
    let chunks: Vec<Vec<usize>> = vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]];
    for idx in &chunks {
        let (x, _) = sptune::data::make_batch(&ds, idx, &opts, &mut rng, &Device::flex()).unwrap();
        let mut h = FirstBn(Vec::new(), false);
        eval.forward_with(x, &mut h);
        let v = &h.0[0];
        let per = v.len() / (idx.len() * 4); // h*w
        for c in 0..4 {
            let vals: Vec<f64> = (0..idx.len())
                .flat_map(|n| v[(n * 4 + c) * per..(n * 4 + c + 1) * per].iter())
                .map(|x| *x as f64)
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let s = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / vals.len() as f64;
            mean[c] += m / chunks.len() as f64;
            var[c] += s / chunks.len() as f64;
        }
    }
    let stats = |net: &sptune::models::Net| -> (Vec<f32>, Vec<f32>) {
        let v: BTreeMap<String, Vec<f32>> = params::values(net)
            .into_iter()
            .map(|(i, v)| (i.name, v))
            .collect();
        (v["bn1.running_mean"].clone(), v["bn1.running_var"].clone())
    };
    let before = stats(&net);
    // (clones share BatchNorm running-state storage: rebuild a second copy from `vals`)
    let net2 = params::assign(spec.init(&dev).unwrap(), &vals);
    let tuned = train::recalibrate_bn(net, &spec, &ds, 4, &dev).unwrap();
    let (rm, rv) = stats(&tuned);
    for c in 0..4 {
        assert!(
            (rm[c] as f64 - mean[c]).abs() < 1e-4 * (1.0 + mean[c].abs()),
            "mean {c}: {} vs {}",
            rm[c],
            mean[c]
        );
        assert!(
            (rv[c] as f64 - var[c]).abs() < 1e-4 * (1.0 + var[c]),
            "var {c}: {} vs {}",
            rv[c],
            var[c]
        );
    }
    assert_ne!(rm, before.0, "statistics moved");
    // a frozen stem keeps its statistics
    let frozen = train::frozen_predicate(&spec, Some(0));
    let net = train::apply_freeze(net2, &frozen, false);
    let tuned = train::recalibrate_bn(net, &spec, &ds, 4, &dev).unwrap();
    assert_eq!(stats(&tuned), before);
}

/// `backbone_lr_mult`: on the first step SGD with momentum moves each weight by `lr·g` (the
/// momentum buffer starts at the gradient), so with the multiplier m every tensor of the
/// backbone moves by exactly m times its move at m = 1 and the new head's moves are unchanged.
/// One epoch of one batch, same seed and data, m = 1 and m = 0.1.
#[test]
fn backbone_lr_multiplier_scales_every_update_but_the_new_heads() {
    let spec = tiny_resnet(3);
    let dev = Device::flex().autodiff();
    let ds = random_dataset(8, 3);
    let src_spec = tiny_resnet(5);
    dev.seed(11);
    let src = src_spec.init(&dev).unwrap();
    let reference = ckpt(
        params::values(&src)
            .into_iter()
            .map(|(i, v)| (Box::leak(i.name.into_boxed_str()) as &str, i.shape, v))
            .collect(),
    );
    // one starting network for both runs: the device's random state is shared with the tests
    // running beside this one, so a second initialization could differ; burn initializes
    // parameters lazily (the new head here), so read them all once before cloning
    let (net0, report) = load_into(spec.init(&dev).unwrap(), &spec, &reference, true).unwrap();
    let _ = snapshot(&net0);
    let run = |mult: f64| {
        let net = net0.clone();
        let before = snapshot(&net);
        let sp = StartingPoint::new(reference.clone(), &report.replaced_head);
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 8,
            lr: 0.05,
            reg: Scheme::None,
            beta: 0.0,
            bn: train::BnMode::Frozen,
            backbone_lr_mult: mult,
            ..Default::default()
        };
        let (net, _) =
            train::fit(net, &spec, Some(&sp), &ds, None, &cfg, &dev, &mut |_| {}).unwrap();
        let after = snapshot(&net.valid());
        before
            .into_iter()
            .filter(|(_, (k, _))| *k == Kind::Param)
            .map(|(n, (_, b))| {
                let d: Vec<f64> = after[&n]
                    .1
                    .iter()
                    .zip(&b)
                    .map(|(a, b)| (a - b) as f64)
                    .collect();
                (n, d)
            })
            .collect::<BTreeMap<String, Vec<f64>>>()
    };
    let (full, slow) = (run(1.0), run(0.1));
    let mut moved = 0;
    for (name, d1) in &full {
        let m = if name.starts_with("fc.") { 1.0 } else { 0.1 };
        for (a, b) in slow[name].iter().zip(d1) {
            assert!(
                (a - m * b).abs() <= 1e-6 + 1e-3 * b.abs(),
                "{name}: moved {a}, expected {m} x {b}"
            );
        }
        moved += d1.iter().filter(|v| v.abs() > 0.0).count();
    }
    assert!(moved > 100, "the step moved almost nothing");
}

/// The fused update (`Sgd::step_penalized`: the penalty's gradient inside SGD's one pass per
/// tensor on the CPU) against `Penalty::apply` then `Sgd::step` on burn's ops (`BurnOps`
/// held), every scheme, three steps with momentum 0.9 on a tiny ResNet (conv kernels,
/// BatchNorm vectors, biases fused; the linear head on burn's ops in both). The elementwise
/// schemes must give the same bits (the same float operations in the same order); the group
/// schemes, whose norms are summed in another order, agree to 1e-4 of each tensor's largest
/// value.
#[test]
fn fused_update_matches_penalty_then_step_on_burn_ops() {
    use sptune::fisher::Fisher;
    use sptune::kernels::BurnOps;
    use sptune::train::sgd::fused_updates;
    let ad = Device::flex().autodiff();
    let spec = tiny_resnet(3);
    // the starting point and the network to fine-tune from this test's own generator (the
    // device's is shared with concurrent tests): w0 uniform in ±0.5, w = w0 ± [0.02, 0.06)
    // (no value at w0, where L1-SP's and the group schemes' gradients jump)
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let table = params::table(&spec.init(&ad).unwrap());
    let (mut t0, mut t1) = (Vec::new(), Vec::new());
    for info in &table {
        let n = info.numel();
        let w0: Vec<f32> = match info.name.rsplit('.').next() {
            Some("running_var") => vec![1.0; n],
            Some("running_mean") => vec![0.0; n],
            _ => (0..n).map(|_| uniform() - 0.5).collect(),
        };
        let w: Vec<f32> = w0
            .iter()
            .map(|v| {
                let d = 0.02 + 0.04 * uniform();
                if info.kind == Kind::Buffer {
                    *v
                } else if uniform() < 0.5 {
                    v - d
                } else {
                    v + d
                }
            })
            .collect();
        t0.push((info.name.as_str(), info.shape.clone(), w0));
        t1.push((info.name.as_str(), info.shape.clone(), w));
    }
    let load = |t| {
        load_into(spec.init(&ad).unwrap(), &spec, &ckpt(t), false)
            .unwrap()
            .0
    };
    let (source, net0) = (load(t0), load(t1));
    let start = StartingPoint::of_network(&source, &spec.head_names());
    // Fisher weights: any positive values, w0² + 1e-3
    let fisher = Fisher::stand_in(start.source(), |w| w * w + 1e-3);
    let start = start.with_fisher(fisher, FisherScaling::default()).unwrap();
    let ds = random_dataset(6, 3);
    let x = Tensor::<4>::from_data(TensorData::new(ds.images.clone(), [6, 1, 8, 8]), &ad);
    let labels: Vec<i64> = ds.labels.iter().map(|&l| l as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [6]), &ad);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let grads = |net: &sptune::models::Net| {
        GradientsParams::from_grads(
            loss_fn
                .forward(net.forward(x.clone()), y.clone())
                .backward(),
            net,
        )
    };
    for scheme in [
        Scheme::None,
        Scheme::L2,
        Scheme::L2Sp,
        Scheme::L1Sp,
        Scheme::L2SpFisher,
        Scheme::GlSp,
        Scheme::GlSpFisher,
    ] {
        let cfg = PenaltyConfig {
            scheme,
            alpha: 0.3,
            beta: 0.05,
            anchor: Anchor::All,
        };
        let penalty = Penalty::new(&net0, Some(&start), cfg, &|_| false, &ad).unwrap();
        let (mut a, mut b) = (net0.clone(), net0.clone());
        let (mut opt_a, mut opt_b) = (Sgd::new(0.9), Sgd::new(0.9));
        let fused_before = fused_updates();
        for _ in 0..3 {
            let mut ga = grads(&a);
            {
                let _burn = BurnOps::hold();
                penalty.apply(&a, &mut ga, false);
                a = opt_a.step(0.05, a, ga);
            }
            let gb = grads(&b);
            b = opt_b.step_penalized(0.05, b, gb, &penalty);
        }
        assert!(
            fused_updates() > fused_before,
            "{scheme:?}: nothing went through the fused pass"
        );
        let (sa, sb, s0) = (snapshot(&a), snapshot(&b), snapshot(&net0));
        let mut moved = false;
        for (name, (kind, va)) in &sa {
            if *kind != Kind::Param {
                continue;
            }
            let vb = &sb[name].1;
            moved |= *va != s0[name].1;
            if matches!(scheme, Scheme::GlSp | Scheme::GlSpFisher) {
                let m = va.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
                for (p, q) in va.iter().zip(vb) {
                    assert!((p - q).abs() <= 1e-4 * m, "{scheme:?} {name}: {p} vs {q}");
                }
            } else {
                assert!(va == vb, "{scheme:?} {name}: not the same bits");
            }
        }
        assert!(moved, "{scheme:?}: the steps moved nothing");
    }
}
