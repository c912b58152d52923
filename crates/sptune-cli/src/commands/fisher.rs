//! `sptune fisher`: the diagonal Fisher of a source model on its training inputs (see
//! [`sptune::fisher`]), written as safetensors with the model's parameter names.

use std::process::ExitCode;

use serde_json::json;
use sptune::Choice;
use sptune::fisher::FisherOptions;
use sptune::run::{FisherConfig, FisherOutcome};
use sptune::task::DataConfig;

use super::Global;
use crate::args::FisherArgs;
use crate::report::Bar;

/// Runs `sptune fisher`.
pub fn run(a: FisherArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let cfg = FisherConfig {
        model: a.model.clone(),
        arch: a.arch.clone(),
        data: DataConfig {
            data: a.data.clone(),
            classes: a.classes.clone().unwrap_or_default(),
            resize: a.resize,
            ..DataConfig::default()
        },
        samples: a.samples,
        options: FisherOptions {
            estimator: a.estimator,
            mc_samples: a.mc_samples,
            batch_size: a.batch_size,
            seed: a.seed,
        },
        out: Some(a.out.clone()),
    };
    let c = fisher_file(&cfg, g)?;
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

/// Runs [`sptune::run::fisher`] with a progress bar.
pub fn fisher_file(cfg: &FisherConfig, g: &Global) -> anyhow::Result<FisherOutcome> {
    let mut bar = Bar::new(&format!("fisher {}", cfg.options.estimator.name()), g.quiet);
    let c = sptune::run::fisher(cfg, &g.device, &mut |done, total| {
        bar.event(sptune::train::Progress::Start(total as u64));
        bar.set_position(done as u64)
    })?;
    bar.finish();
    Ok(c)
}
