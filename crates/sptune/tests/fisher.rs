//! The diagonal Fisher: the batched per-example path against the batch-1 loop,
//! against the closed form of linear softmax regression, and the Monte Carlo estimator against
//! the exact one within a tolerance derived from its variance. Also the Fisher file checks.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::Device;
use sptune::data::Dataset;
use sptune::fisher::{
    self, Batch1Loop, CpuEngine, Engine, Estimator, Fisher, FisherOptions, ProbeEngine, batch1,
};
use sptune::models::checkpoint::Checkpoint;
use sptune::models::{ModelSpec, Net};
use sptune::params::{self, Kind};

/// Deterministic pseudo-random numbers in [0, 1) (64-bit LCG, top bits).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn spec(
    arch: &str,
    input: [usize; 3],
    hidden: Vec<usize>,
    classes: usize,
    small: bool,
) -> ModelSpec {
    ModelSpec {
        arch: arch.into(),
        classes: (0..classes).map(|c| format!("c{c}")).collect(),
        input,
        width: 4,
        small_stem: small,
        hidden,
        mean: vec![0.3; input[0]],
        std: vec![0.5; input[0]],
    }
}

/// A network with every tensor (BatchNorm statistics included) set to seeded random values,
/// so that eval-mode BatchNorm is not the identity.
fn random_net(spec: &ModelSpec, seed: u64, scale: f64) -> Net {
    let dev = Device::flex();
    let net = spec.init(&dev).unwrap();
    let mut rng = Lcg(seed);
    let mut vals = HashMap::new();
    for (info, v) in params::values(&net) {
        let fan = (v.len() / info.shape[0]).max(1) as f64;
        let new: Vec<f32> = v
            .iter()
            .map(|_| {
                let u = rng.next();
                if info.name.ends_with("running_var") {
                    (0.5 + u) as f32
                } else if info.kind == Kind::Buffer || info.name.ends_with("bias") {
                    (0.4 * (u - 0.5)) as f32
                } else if info.name.contains("bn") || info.name.ends_with(".1.weight") {
                    (0.5 + u) as f32 // BatchNorm scale
                } else {
                    (scale * (u - 0.5) * (12.0 / fan).sqrt()) as f32
                }
            })
            .collect();
        vals.insert(info.name.clone(), (info.shape.clone(), new));
    }
    params::assign(net, &vals)
}

fn dataset(spec: &ModelSpec, n: usize, seed: u64) -> Dataset {
    let [c, h, w] = spec.input;
    let mut rng = Lcg(seed);
    let images = (0..n * c * h * w).map(|_| rng.next() as f32).collect();
    let labels = (0..n).map(|i| (i * 7 + 1) % spec.num_classes()).collect();
    Dataset::new(images, labels, spec.classes.clone(), c, h, w).unwrap()
}

fn opts(estimator: Estimator, batch: usize) -> FisherOptions {
    FisherOptions {
        estimator,
        mc_samples: 1,
        batch_size: batch,
        seed: 3,
    }
}

/// Every entry within `rel` of the reference, relative to the largest entry of its tensor
/// (entries are sums of squares, so the tensor's scale is the meaningful yardstick for tiny
/// ones) and to itself.
fn assert_close(a: &Fisher, b: &Fisher, rel: f64) {
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    let mut worst = 0.0f64;
    for (name, (shape, va)) in &a.tensors {
        let (sb, vb) = &b.tensors[name];
        assert_eq!(shape, sb, "{name}");
        let max = vb.iter().fold(0.0f64, |m, v| m.max(*v as f64));
        assert!(max > 0.0, "{name}: reference Fisher is all zero");
        for (j, (x, y)) in va.iter().zip(vb).enumerate() {
            let err = (*x as f64 - *y as f64).abs() / (*y as f64).abs().max(1e-3 * max);
            worst = worst.max(err);
            assert!(
                err <= rel,
                "{name}[{j}]: batched {x} vs reference {y} ({err:e})"
            );
        }
    }
    eprintln!("largest relative difference {worst:e}");
}

fn batched_equals_batch1_loop(spec: &ModelSpec, n: usize, batch: usize, est: Estimator) {
    batched_equals_batch1_loop_within(spec, n, batch, est, 1e-5);
}

fn batched_equals_batch1_loop_within(
    spec: &ModelSpec,
    n: usize,
    batch: usize,
    est: Estimator,
    rel: f64,
) {
    let dev = Device::flex();
    let net = random_net(spec, 11, 1.0);
    let ds = dataset(spec, n, 5);
    let o = opts(est, batch);
    let slow = Batch1Loop
        .compute(&net, spec, &ds, &o, &dev, &mut |_| {})
        .unwrap();
    // every parameter, no buffer
    let names: Vec<_> = params::table(&net)
        .into_iter()
        .filter(|i| i.kind == Kind::Param)
        .map(|i| i.name)
        .collect();
    for (path, fast) in fast_paths(&net, spec, &ds, &o) {
        eprintln!("{path}:");
        assert_eq!(fast.samples, n);
        assert_eq!(fast.tensors.len(), names.len());
        assert!(!fast.tensors.keys().any(|k| k.contains("running")));
        assert_close(&fast, &slow, rel);
    }
}

/// The Fisher by both batched engines: burn's probe path and the CPU engine (which must take
/// every architecture on the CPU, and be `fisher::compute`'s choice there, so these tests cannot
/// silently skip it).
fn fast_paths(
    net: &Net,
    spec: &ModelSpec,
    ds: &Dataset,
    o: &FisherOptions,
) -> Vec<(&'static str, Fisher)> {
    let dev = Device::flex();
    assert!(CpuEngine.supports(net, &dev), "{}", spec.arch);
    assert_eq!(fisher::engine(net, &dev), "cpu-engine");
    let engines: [&dyn Engine; 2] = [&ProbeEngine, &CpuEngine];
    engines
        .into_iter()
        .map(|e| {
            let f = e.compute(net, spec, ds, o, &dev, &mut |_| {}).unwrap();
            (e.name(), f)
        })
        .collect()
}

#[test]
fn exact_matches_batch1_loop_on_small_resnet18() {
    // batch 4 over 6 examples: a partial last batch
    let s = spec("resnet18", [1, 8, 8], vec![], 3, true);
    batched_equals_batch1_loop(&s, 6, 4, Estimator::Exact);
}

#[test]
fn exact_matches_batch1_loop_where_the_training_kernels_would_transform() {
    // 8 images of 16 px, width 8: 128 tiles of 4x4 in the first stage's batch, enough for the
    // training kernels' Winograd transforms (never at batch 1); the batched paths must use the
    // direct products, or their float32 error, squared, moves the Fisher past 1e-5 (with the
    // transforms it failed on layer3.1.conv1.weight at 1.4e-5)
    let s = ModelSpec {
        width: 8,
        ..spec("resnet18", [1, 16, 16], vec![], 3, true)
    };
    batched_equals_batch1_loop(&s, 8, 8, Estimator::Exact);
}

#[test]
fn exact_matches_batch1_loop_on_resnet50_with_strided_stem() {
    // 7x7/2 stem with padding 3, max-pool, bottlenecks with downsample: 16 px RGB
    let s = spec("resnet50", [3, 16, 16], vec![], 4, false);
    batched_equals_batch1_loop(&s, 3, 3, Estimator::Exact);
}

#[test]
fn exact_matches_batch1_loop_on_mlp() {
    let s = spec("mlp", [1, 5, 5], vec![7, 6], 4, false);
    batched_equals_batch1_loop(&s, 9, 4, Estimator::Exact);
}

#[test]
fn empirical_matches_true_label_loop() {
    let s = spec("resnet18", [1, 8, 8], vec![], 3, true);
    batched_equals_batch1_loop(&s, 5, 2, Estimator::Empirical);
    let s = spec("mlp", [1, 4, 4], vec![5], 3, false);
    batched_equals_batch1_loop(&s, 7, 3, Estimator::Empirical);
}

/// Linear softmax regression z = W x + b: ∂ log p_c'/∂W[c,k] = (δ_cc' − p_c) x_k, so
/// F[c,k] = mean_i x_ik² Σ_c' p_c'(δ_cc' − p_c)² and F_b[c] = mean_i Σ_c' p_c'(δ_cc' − p_c)²
/// (computed here in f64 from the weights and normalized inputs).
#[test]
fn exact_matches_closed_form_on_linear_softmax() {
    let s = spec("mlp", [1, 3, 3], vec![], 5, false);
    let (k, c, n) = (9, 5, 10);
    let net = random_net(&s, 21, 3.0);
    let ds = dataset(&s, n, 8);
    let vals: BTreeMap<String, Vec<f64>> = params::values(&net)
        .into_iter()
        .map(|(i, v)| (i.name, v.into_iter().map(f64::from).collect()))
        .collect();
    let (w, b) = (&vals["fc1.weight"], &vals["fc1.bias"]);
    let (mut fw, mut fb) = (vec![0.0; c * k], vec![0.0; c]);
    for i in 0..n {
        let x: Vec<f64> = ds
            .image(i)
            .iter()
            .map(|v| (*v as f64 - 0.3) / 0.5)
            .collect();
        let z: Vec<f64> = (0..c)
            .map(|cc| b[cc] + (0..k).map(|kk| w[cc * k + kk] * x[kk]).sum::<f64>())
            .collect();
        let mx = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - mx).exp()).collect();
        let p: Vec<f64> = e.iter().map(|v| v / e.iter().sum::<f64>()).collect();
        for cc in 0..c {
            let s: f64 = (0..c)
                .map(|c2| p[c2] * ((c2 == cc) as u8 as f64 - p[cc]).powi(2))
                .sum();
            fb[cc] += s / n as f64;
            for kk in 0..k {
                fw[cc * k + kk] += x[kk] * x[kk] * s / n as f64;
            }
        }
    }
    let f = fisher::compute(
        &net,
        &s,
        &ds,
        &opts(Estimator::Exact, 4),
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    for (name, want) in [("fc1.weight", &fw), ("fc1.bias", &fb)] {
        let (shape, got) = &f.tensors[name];
        assert_eq!(shape.iter().product::<usize>(), want.len());
        for (j, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * w.abs() + 1e-9,
                "{name}[{j}]: {g} vs closed form {w}"
            );
        }
    }
}

/// The CPU engine caps the rows of an example carried through one backward pass by memory
/// (1000 classes at 224 px); carrying them one, two or all at a time gives the same Fisher.
#[test]
fn engine_rows_in_groups_give_the_same_fisher() {
    let s = spec("resnet50", [3, 16, 16], vec![], 5, false);
    let net = random_net(&s, 11, 1.0);
    let ds = dataset(&s, 3, 5);
    let (dev, o) = (Device::flex(), opts(Estimator::Exact, 2));
    let all = CpuEngine
        .compute(&net, &s, &ds, &o, &dev, &mut |_| {})
        .unwrap();
    for rows in [1, 2] {
        let f = CpuEngine
            .compute_in_groups(&net, &s, &ds, &o, &dev, rows, &mut |_| {})
            .unwrap();
        assert_close(&f, &all, 1e-5);
    }
}

/// `mc` draws its labels example by example from one generator, so they depend on the seed only:
/// burn's probe path at batch 2 (one backward pass per draw) and the CPU engine at batch 5
/// (repeated labels of an example merged into one row) give the same Fisher.
#[test]
fn mc_draws_do_not_depend_on_the_path_or_the_batch_size() {
    let s = spec("resnet18", [1, 8, 8], vec![], 3, true);
    let net = random_net(&s, 11, 1.0);
    let ds = dataset(&s, 5, 5);
    let dev = Device::flex();
    let o = FisherOptions {
        estimator: Estimator::Mc,
        mc_samples: 6,
        batch_size: 2,
        seed: 4,
    };
    let probe = ProbeEngine
        .compute(&net, &s, &ds, &o, &dev, &mut |_| {})
        .unwrap();
    let o5 = FisherOptions {
        batch_size: 5,
        ..o.clone()
    };
    let engine = CpuEngine
        .compute(&net, &s, &ds, &o5, &dev, &mut |_| {})
        .unwrap();
    assert_close(&engine, &probe, 1e-5);
}

/// `mc` with K labels per example is unbiased for `exact`, with variance
/// Var_j = 1/m² Σ_i (1/K) (Σ_c p_ic g_icj⁴ − (Σ_c p_ic g_icj²)²), computed from the
/// reference's per-class gradients. The standardized errors z_j = (mc_j − exact_j)/√Var_j
/// must look standard (mean z² near 1 for K = 4 and K = 64, none beyond 6 at K = 64), and the
/// error must shrink as K grows.
#[test]
fn mc_converges_to_exact_within_its_variance() {
    let s = spec("mlp", [1, 4, 4], vec![5], 3, false);
    let (n, dev) = (12, Device::flex());
    let net = random_net(&s, 31, 2.0);
    let ds = dataset(&s, n, 9);
    let prep = batch1::Prepared::new(&net, &dev);
    let mut exact: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut var1: BTreeMap<String, Vec<f64>> = BTreeMap::new(); // K = 1
    for i in 0..n {
        let ex = prep.example(&s, &ds, i, None).unwrap();
        let names: Vec<String> = ex.grads[0].keys().cloned().collect();
        for name in names {
            let len = ex.grads[0][&name].len();
            let e = exact.entry(name.clone()).or_insert_with(|| vec![0.0; len]);
            let v = var1.entry(name.clone()).or_insert_with(|| vec![0.0; len]);
            for j in 0..len {
                let m2: f64 = (0..3)
                    .map(|c| ex.probs[c] * ex.grads[c][&name][j].powi(2))
                    .sum();
                let m4: f64 = (0..3)
                    .map(|c| ex.probs[c] * ex.grads[c][&name][j].powi(4))
                    .sum();
                e[j] += m2 / n as f64;
                v[j] += (m4 - m2 * m2) / (n * n) as f64;
            }
        }
    }
    let mut rms = Vec::new();
    for k in [4usize, 64] {
        // twenty independent seeds: the entries of one run are strongly correlated (they share
        // the same few label draws), so one run's mean z² is itself noisy
        let (mut z2, mut count, mut err2, mut worst) = (0.0, 0usize, 0.0, 0.0f64);
        for seed in 0..20 {
            let o = FisherOptions {
                estimator: Estimator::Mc,
                mc_samples: k,
                batch_size: 5,
                seed,
            };
            let f = fisher::compute(&net, &s, &ds, &o, &dev, &mut |_| {}).unwrap();
            assert_eq!(f.mc_samples, k);
            for (name, e) in &exact {
                for (j, ej) in e.iter().enumerate() {
                    let got = f.tensors[name].1[j] as f64;
                    err2 += (got - ej).powi(2);
                    let var = var1[name][j] / k as f64;
                    if var < 1e-12 * ej.max(1e-12).powi(2) {
                        continue; // deterministic entry (same gradient for every class)
                    }
                    let z = (got - ej) / var.sqrt();
                    worst = worst.max(z.abs());
                    z2 += z * z;
                    count += 1;
                }
            }
        }
        let mean_z2 = z2 / count as f64;
        eprintln!("K={k}: mean z² {mean_z2:.3} over {count} entries, largest |z| {worst:.2}");
        assert!((0.6..1.4).contains(&mean_z2), "K={k}: mean z² {mean_z2}");
        if k >= 64 {
            // with many draws the estimate is close to normal; at K = 4 rare classes with
            // large gradients give heavy tails (|z| ≈ 7 was seen), so no bound there
            assert!(worst < 6.0, "K={k}: largest |z| {worst}");
        }
        rms.push(err2.sqrt());
    }
    assert!(
        rms[1] < rms[0] * 0.6,
        "error did not shrink with K: {rms:?}"
    );
}

fn tiny() -> (ModelSpec, Net, Fisher, Checkpoint) {
    let s = spec("mlp", [1, 2, 2], vec![3], 2, false);
    let net = random_net(&s, 1, 1.0);
    let ds = dataset(&s, 4, 2);
    let f = fisher::compute(
        &net,
        &s,
        &ds,
        &opts(Estimator::Exact, 4),
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    let w0 = Checkpoint {
        path: "source.safetensors".into(),
        tensors: params::values(&net)
            .into_iter()
            .map(|(i, v)| (i.name, (i.shape, v)))
            .collect(),
        metadata: Default::default(),
    };
    (s, net, f, w0)
}

#[test]
fn fisher_file_round_trips_and_matches_its_model() {
    let (s, _, f, w0) = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.safetensors");
    f.save(&path, &s).unwrap();
    let back = Fisher::read(&path).unwrap();
    assert_eq!(back.tensors, f.tensors);
    assert_eq!(back.estimator, Estimator::Exact);
    assert_eq!(back.samples, 4);
    back.check_against(&w0).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temp file left"
    );
}

#[test]
fn fisher_file_errors_name_the_tensor() {
    let (s, _, f, w0) = tiny();
    let dir = tempfile::tempdir().unwrap();
    // wrong shape, missing tensor, extra tensor
    let mut bad = f.clone();
    bad.tensors.get_mut("fc1.weight").unwrap().0 = vec![4, 3];
    let e = bad.check_against(&w0).unwrap_err().to_string();
    assert!(e.contains("fc1.weight") && e.contains("[4, 3]"), "{e}");
    let mut bad = f.clone();
    bad.tensors.remove("fc2.bias");
    let e = bad.check_against(&w0).unwrap_err().to_string();
    assert!(e.contains("fc2.bias"), "{e}");
    let mut bad = f.clone();
    bad.tensors
        .insert("fc9.weight".into(), (vec![1], vec![1.0]));
    let e = bad.check_against(&w0).unwrap_err().to_string();
    assert!(e.contains("fc9.weight"), "{e}");
    // negative and NaN entries are refused when read
    for v in [-1.0f32, f32::NAN] {
        let mut bad = f.clone();
        bad.tensors.get_mut("fc1.bias").unwrap().1[1] = v;
        let path = dir.path().join("bad.safetensors");
        bad.save(&path, &s).unwrap();
        let e = Fisher::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("bad.safetensors") && e.contains("fc1.bias") && e.contains("index 1"),
            "{e}"
        );
    }
}

#[test]
fn labels_outside_the_model_are_refused() {
    let (s, net, _, _) = tiny();
    let ds = Dataset::new(
        vec![0.5; 4],
        vec![2],
        vec!["a".into(), "b".into(), "c".into()],
        1,
        2,
        2,
    )
    .unwrap();
    let e = fisher::compute(
        &net,
        &s,
        &ds,
        &opts(Estimator::Empirical, 4),
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("label 2"), "{e}");
}

#[test]
fn exact_matches_batch1_loop_on_efficientnet_lite0() {
    // depthwise convolutions (groups = channels) and TF "SAME" padding, asymmetric at stride 2;
    // 16 blocks of float32 on both paths: 1e-4 (1.1e-5 was seen on an entry near 1e-3 of its
    // tensor's largest)
    let s = ModelSpec {
        mean: vec![0.3; 3],
        std: vec![0.5; 3],
        ..spec("efficientnet-lite0", [3, 32, 32], vec![], 3, false)
    };
    batched_equals_batch1_loop_within(&s, 2, 2, Estimator::Exact, 1e-4);
}

/// At its initialization (β = 0, running mean 0) EfficientNet-Lite0 turns images equal to the
/// normalization mean into exact zeros before each ReLU6, where the gradient convention at the
/// kink decides: the CPU engine must pass it as the training path's ReLU6 does (not at 0, as
/// PyTorch's `hardtanh_backward`). Half the images are flat; the engine must match the loop.
#[test]
fn exact_matches_batch1_loop_on_efficientnet_lite0_at_relu6_kinks() {
    let s = ModelSpec {
        mean: vec![0.5; 3],
        std: vec![0.5; 3],
        ..spec("efficientnet-lite0", [3, 32, 32], vec![], 3, false)
    };
    let dev = Device::flex();
    dev.seed(2);
    let net = s.init(&dev).unwrap();
    let mut ds = dataset(&s, 4, 9);
    let per = 3 * 32 * 32;
    for i in [1, 3] {
        ds.images[i * per..(i + 1) * per].fill(0.5);
    }
    let o = opts(Estimator::Exact, 2);
    let slow = Batch1Loop
        .compute(&net, &s, &ds, &o, &dev, &mut |_| {})
        .unwrap();
    for (path, fast) in fast_paths(&net, &s, &ds, &o) {
        eprintln!("{path}:");
        assert_close(&fast, &slow, 1e-4);
    }
}
