//! `sptune fisher`: the diagonal Fisher of a source model on its training inputs (see
//! [`sptune::fisher`]), written as safetensors with the model's parameter names.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use sptune::fisher::{self, Estimator, Fisher, FisherOptions};
use sptune::models::checkpoint::{Checkpoint, load_into};
use sptune::task::{self, DataConfig};

use super::Global;
use crate::args::FisherArgs;
use crate::report::Bar;

/// What the command computed.
pub struct Computed {
    /// The Fisher (already written).
    pub fisher: Fisher,
    /// Seconds spent in the computation (data loading excluded).
    pub seconds: f64,
    /// The path that computed it ([`fisher::engine`]).
    pub engine: &'static str,
}

/// Computes the Fisher of the checkpoint `model` on the first `samples` (0 = all) training
/// images of `data` (class selection: the model's own classes unless `data.classes` is set)
/// and writes it to `out` atomically.
pub fn compute_file(
    model: &Path,
    arch: Option<&str>,
    mut data: DataConfig,
    samples: usize,
    opts: &FisherOptions,
    out: &Path,
    g: &Global,
) -> anyhow::Result<Computed> {
    let ckpt = Checkpoint::read(model)?;
    let spec = ckpt.spec_or_infer(arch)?;
    let (net, _) = load_into(spec.init(&g.device)?, &spec, &ckpt, false)?;
    if data.resize == 0 {
        data.resize = sptune::data::stored_side(spec.input[1]);
    }
    if data.classes.trim().is_empty() {
        data.classes = spec.classes.join(",");
    }
    data.per_class = None;
    data.val_fraction = 0.0;
    let t = task::load(&data, spec.input[0])?;
    if t.classes() != spec.classes.as_slice() {
        anyhow::bail!(
            "invalid value for --classes: selects [{}] but {} was trained on [{}] (the Fisher \
             is taken on the source task)",
            t.classes().join(", "),
            model.display(),
            spec.classes.join(", ")
        );
    }
    let ds = if samples > 0 {
        sptune::data::take_first(&t.train, samples)
    } else {
        t.train
    };
    let mut bar = Bar::new(&format!("fisher {}", opts.estimator.name()), g.quiet);
    bar.event(sptune::train::Progress::Start(ds.len() as u64));
    let engine = fisher::engine(&net, &g.device);
    let t0 = std::time::Instant::now();
    let f = fisher::compute(&net, &spec, &ds, opts, &g.device, &mut |done| {
        bar.set_position(done as u64)
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    bar.finish();
    f.save(out, &spec)?;
    Ok(Computed {
        fisher: f,
        seconds,
        engine,
    })
}

/// Runs `sptune fisher`.
pub fn run(a: FisherArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let opts = FisherOptions {
        estimator: Estimator::parse(&a.estimator)?,
        mc_samples: a.mc_samples,
        batch_size: a.batch_size,
        seed: a.seed,
    };
    opts.validate()?;
    let data = DataConfig {
        data: a.data.clone(),
        classes: a.classes.clone().unwrap_or_default(),
        resize: a.resize,
        ..DataConfig::default()
    };
    let c = compute_file(
        &a.model,
        a.arch.as_deref(),
        data,
        a.samples,
        &opts,
        &a.out,
        g,
    )?;
    let f = &c.fisher;
    let (mut total, mut n, mut max) = (0.0f64, 0usize, 0.0f32);
    for (_, v) in f.tensors.values() {
        total += v.iter().map(|x| *x as f64).sum::<f64>();
        n += v.len();
        max = v.iter().fold(max, |m, x| m.max(*x));
    }
    if g.json {
        let v = json!({
            "out": a.out, "estimator": f.estimator.name(), "samples": f.samples,
            "mc_samples": f.mc_samples, "tensors": f.tensors.len(), "parameters": n,
            "mean": total / n.max(1) as f64, "max": max, "seconds": c.seconds, "engine": c.engine,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} Fisher on {} examples: {} tensors, {} parameters, mean {:.3e}, max {:.3e} \
             ({:.1} s, {}) -> {}",
            f.estimator.name(),
            f.samples,
            f.tensors.len(),
            n,
            total / n.max(1) as f64,
            max,
            c.seconds,
            c.engine,
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
