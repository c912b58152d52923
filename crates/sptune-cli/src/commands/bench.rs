//! `sptune bench`: train-step time of plain fine-tuning and of each scheme on ResNet-18.
//!
//! Every variant gets its own copy of the same network and the same batch; steps are
//! interleaved round-robin (plain, l2, l2-sp, ...) so machine noise hits all variants alike.
//! Printed per variant: median full-step time, median optimizer-update time, and the ratio
//! of each to plain SGD measured in the same run. The penalty value is not computed in these
//! steps (the trainer computes it once per epoch). `--burn-ops` adds the plain step on burn's
//! own ops (the own kernels switched off by [`sptune::kernels::BurnOps`]); `--bn frozen` runs
//! every BatchNorm with its running statistics, as `finetune --bn frozen`. `--eval N` times
//! evaluation instead (see [`eval`]).

use std::process::ExitCode;
use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use serde_json::json;
use sptune::fisher::Fisher;
use sptune::models::ModelSpec;
use sptune::regularizer::{Anchor, FisherScaling, Penalty, PenaltyConfig, Scheme, StartingPoint};
use sptune::train::{BnMode, Sgd};

use super::Global;
use crate::args::BenchArgs;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The benchmarked model: `--arch` with 10 classes on 3-channel `--size` images, the small
/// stem up to 64 px, no input normalization.
fn spec(a: &BenchArgs) -> ModelSpec {
    ModelSpec {
        arch: a.arch.clone(),
        classes: (0..10).map(|i| i.to_string()).collect(),
        input: [3, a.size, a.size],
        width: a.width,
        small_stem: a.size <= 64,
        hidden: vec![],
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
    }
}

/// Runs the benchmark.
pub fn run(a: BenchArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let bn_frozen = match a.bn {
        BnMode::Train => false,
        BnMode::Frozen => true,
        other => anyhow::bail!(
            "invalid value for --bn: {}; expected train or frozen",
            sptune::util::Choice::name(other)
        ),
    };
    let device = g.device.clone();
    let ad = device.clone().autodiff();
    if let Some(n) = a.eval {
        return eval(&a, g, n);
    }
    let spec = spec(&a);
    device.seed(7);
    let base = sptune::train::apply_freeze(spec.init(&ad)?, &|_| false, bn_frozen);
    // The starting point w0: the initial weights, so S is the whole network but the head.
    let initial = StartingPoint::of_network(&base, &spec.head_names());
    let x = Tensor::<4>::random(
        [a.batch_size, 3, a.size, a.size],
        Distribution::Normal(0.0, 1.0),
        &ad,
    );
    let labels: Vec<i64> = (0..a.batch_size as i64).map(|i| i % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [a.batch_size]), &ad);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut variants: Vec<(&str, Scheme, f64)> = vec![
        ("plain", Scheme::None, 0.0),
        ("l2", Scheme::L2, 0.01),
        ("l2-sp", Scheme::L2Sp, 0.01),
        ("l1-sp", Scheme::L1Sp, 0.01),
        ("gl-sp", Scheme::GlSp, 0.01),
        ("l2-sp-fisher", Scheme::L2SpFisher, 0.01),
        ("gl-sp-fisher", Scheme::GlSpFisher, 0.01),
    ];
    if a.plain_only {
        variants.truncate(1);
    }
    // the plain step on burn's ops: the last variant, told apart by its name
    const BURN: &str = "plain (burn)";
    if a.burn_ops {
        variants.push((BURN, Scheme::None, 0.0));
    }
    // Fisher weights for the Fisher schemes: any positive values cost the same; w0² + 1e-3.
    let fisher = Fisher::stand_in(initial.source(), |w| w * w + 1e-3);
    let start = initial.with_fisher(fisher, FisherScaling::default())?;
    let mut state: Vec<_> = variants
        .iter()
        .map(|(_, scheme, beta)| {
            let cfg = PenaltyConfig {
                scheme: *scheme,
                alpha: 0.01,
                beta: *beta,
                anchor: Anchor::All,
            };
            let penalty = Penalty::new(&base, Some(&start), cfg, &|_| false, &ad)?;
            Ok((
                Some(base.clone()),
                (penalty, Sgd::new(0.9)),
                Vec::new(),
                Vec::new(),
            ))
        })
        .collect::<sptune::Result<_>>()?;
    if !g.quiet {
        eprintln!(
            "{} (width {}, small stem {}), batch {} @ {} px, BatchNorm {}, {} timed steps per variant (+1 warm-up), round-robin",
            a.arch,
            a.width,
            spec.small_stem,
            a.batch_size,
            a.size,
            sptune::util::Choice::name(a.bn),
            a.steps
        );
    }
    for round in 0..=a.steps {
        for k in 0..state.len() {
            let i = (k + round) % state.len();
            let (slot, opt, full, upd) = &mut state[i];
            // the network is moved into the update, as in training (a clone would share its
            // buffers and make the update copy them)
            let net = slot.take().expect("put back after every step");
            let burn_ops = (variants[i].0 == BURN).then(sptune::kernels::BurnOps::hold);
            let t0 = Instant::now();
            let loss = loss_fn.forward(net.forward(x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            // on an asynchronous device (wgpu) the backward pass may still be running: wait,
            // so that the update column is the update's own time
            ad.sync()
                .map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
            let t1 = Instant::now();
            let (penalty, sgd) = opt;
            let n = sgd.step_penalized(0.01, net, grads, penalty);
            drop(burn_ops);
            // let the lazy/async backends (wgpu) finish before reading the clock
            ad.sync()
                .map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
            let t2 = Instant::now();
            *slot = Some(n);
            if round > 0 {
                full.push((t2 - t0).as_secs_f64());
                upd.push((t2 - t1).as_secs_f64());
            }
        }
    }
    let plain_full = median(&mut state[0].2.clone());
    let plain_upd = median(&mut state[0].3.clone());
    let mut rows = vec![];
    if !g.json {
        println!(
            "{:<13} {:>10} {:>8} {:>12} {:>10}",
            "variant", "step (ms)", "ratio", "update (ms)", "overhead"
        );
    }
    for ((name, _, _), (_, _, full, upd)) in variants.iter().zip(state.iter_mut()) {
        let f = median(full);
        let u = median(upd);
        // The schemes differ from plain SGD only in the update; its extra time over the plain
        // step is the overhead, measured with less noise than the ratio of whole steps.
        let overhead = (u - plain_upd) / plain_full;
        if !g.json {
            println!(
                "{:<13} {:>10.1} {:>8.3} {:>12.2} {:>9.2}%",
                name,
                1e3 * f,
                f / plain_full,
                1e3 * u,
                100.0 * overhead
            );
        }
        rows.push(
            json!({"variant": name, "step_ms": 1e3 * f, "step_ratio": f / plain_full,
            "update_ms": 1e3 * u, "overhead": overhead, "images_per_s": a.batch_size as f64 / f}),
        );
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"arch": a.arch, "width": a.width, "batch": a.batch_size, "size": a.size,
                    "bn": sptune::util::Choice::name(a.bn), "rows": rows})
            )?
        );
    } else {
        println!(
            "ratio = median step / median plain step (noisy); overhead = (update - plain update) / plain step (goal <= 2 %); plain: {:.1} images/s",
            a.batch_size as f64 / plain_full
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench --eval N`: evaluation throughput. The whole evaluation is `sptune::eval::accuracy` on
/// N synthetic 28 px one-channel images (the data pipeline's resize and normalization
/// included); the forward passes alone are the same batches made beforehand and pushed through
/// the network in eval mode. Rounds are interleaved with the burn-ops variant (`--burn-ops`),
/// and the medians over `--steps` rounds (after one warm-up round) are printed.
fn eval(a: &BenchArgs, g: &Global, n: usize) -> anyhow::Result<ExitCode> {
    use sptune::data::{self, Dataset};
    let device = g.device.clone().without_autodiff();
    let spec = spec(a);
    device.seed(7);
    let net = spec.init(&device)?;
    // pixel values from a fixed linear congruential generator: the data do not matter here
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let images: Vec<f32> = (0..n * 28 * 28)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let labels = (0..n).map(|i| i % 10).collect();
    let ds = Dataset::new(images, labels, spec.classes.clone(), 1, 28, 28)?;
    let batch = spec.eval_batch();
    let opts = spec.batch_options(false);
    let mut rng = rand::rng(); // unused: no augmentation
    let idx: Vec<usize> = (0..n).collect();
    let batches = idx
        .chunks(batch)
        .map(|c| Ok(data::make_batch(&ds, c, &opts, &mut rng, &device)?.0))
        .collect::<sptune::Result<Vec<_>>>()?;
    let variants: &[&str] = if a.burn_ops {
        &["own kernels", "burn ops"]
    } else {
        &["own kernels"]
    };
    if !g.quiet {
        eprintln!(
            "evaluation of {} (width {}, small stem {}) at {} px: {n} images in batches of {batch}, {} timed rounds (+1 warm-up)",
            a.arch, a.width, spec.small_stem, a.size, a.steps
        );
    }
    let mut whole = vec![Vec::new(); variants.len()];
    let mut forward = vec![Vec::new(); variants.len()];
    for round in 0..=a.steps {
        for (i, name) in variants.iter().enumerate() {
            let _burn = (*name == "burn ops").then(sptune::kernels::BurnOps::hold);
            let t0 = Instant::now();
            sptune::eval::accuracy(&net, &spec, &ds, batch, &device)?;
            device
                .sync()
                .map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))?;
            let t1 = Instant::now();
            for x in &batches {
                drop(net.forward(x.clone()).into_data());
            }
            let t2 = Instant::now();
            if round > 0 {
                whole[i].push((t1 - t0).as_secs_f64());
                forward[i].push((t2 - t1).as_secs_f64());
            }
        }
    }
    let mut rows = vec![];
    if !g.json {
        println!(
            "{:<12} {:>22} {:>24}",
            "variant", "evaluation (images/s)", "forward alone (images/s)"
        );
    }
    for (i, name) in variants.iter().enumerate() {
        let (w, f) = (median(&mut whole[i]), median(&mut forward[i]));
        let (w, f) = (n as f64 / w, n as f64 / f);
        if !g.json {
            println!("{name:<12} {w:>22.1} {f:>24.1}");
        }
        rows.push(json!({"variant": name, "eval_images_per_s": w, "forward_images_per_s": f}));
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"arch": a.arch, "width": a.width,
                "size": a.size, "images": n, "batch": batch, "rows": rows}))?
        );
    }
    Ok(ExitCode::SUCCESS)
}
