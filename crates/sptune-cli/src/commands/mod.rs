//! One file per command; each takes its parsed arguments and returns an exit code.

mod bench;
mod bench_fisher;
mod convert;
mod demo;
mod distance;
mod eval;
pub mod fisher;
mod interpolate;
mod predict;
mod scenes;
mod segment;
mod study;
pub mod train;
mod weights;

use std::process::ExitCode;

use crate::args::{Cli, Command};

/// Global options every command sees.
pub struct Global {
    /// Compute threads of this process (0 = all cores).
    pub threads: usize,
    /// The compute device.
    pub device: burn::tensor::Device,
    /// Print JSON.
    pub json: bool,
    /// Hide progress bars.
    pub quiet: bool,
}

/// Lowers `--jobs` to the machine's cores (more processes would only contend, and each
/// holds its own copy of the data), with a note; returns the count.
fn cap_jobs(jobs: &mut usize) -> usize {
    let cores = sptune::runtime::available_threads();
    if *jobs > cores {
        eprintln!(
            "note: --jobs {jobs} lowered to {cores}, the number of threads this machine runs at once"
        );
        *jobs = cores;
    }
    *jobs
}

/// Dispatches the command.
pub fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    // --jobs N: the cores are shared among the N worker processes, at most one per core
    let jobs = match &mut cli.command {
        Command::Study(a) => cap_jobs(&mut a.jobs),
        Command::Auto(a) => cap_jobs(&mut a.jobs),
        _ => 1,
    };
    let (requested, lowered) = sptune::runtime::cap_threads(cli.threads);
    if lowered {
        eprintln!(
            "note: --threads {} lowered to {requested}, the number of threads this machine runs at once",
            cli.threads
        );
    }
    let threads = if jobs > 1 && requested == 0 {
        (sptune::runtime::available_threads() / jobs).max(1)
    } else {
        requested
    };
    sptune::runtime::set_threads(threads)?;
    sptune::runtime::set_cache_budget_mb(cli.cache_mb);
    sptune::runtime::set_max_pixels(cli.max_pixels);
    sptune::runtime::set_max_data_mb(cli.max_data_mb);
    let g = Global {
        threads,
        device: sptune::runtime::device(&cli.device)?,
        json: cli.json,
        quiet: cli.quiet || cli.json,
    };
    sptune::runtime::set_quiet(g.quiet);
    match cli.command {
        Command::Pretrain(a) => train::pretrain(a, &g),
        Command::Finetune(a) => train::finetune(a, &g),
        Command::Eval(a) => eval::run(a, &g),
        Command::Interpolate(a) => interpolate::run(a, &g),
        Command::Distance(a) => distance::run(a, &g),
        Command::Convert(a) => convert::run(a, &g),
        Command::Predict(a) => predict::run(a, &g),
        Command::Scenes(a) => scenes::run(a, &g),
        Command::Segment(a) => segment::run(a, &g),
        Command::Weights(a) => weights::run(a, &g),
        Command::Fisher(a) => fisher::run(a, &g),
        Command::Demo(a) => demo::run(a, &g),
        Command::Bench(a) => bench::run(a, &g),
        Command::BenchFisher(a) => bench_fisher::run(a, &g),
        Command::Study(a) => study::run(a, &g),
        Command::Auto(a) => study::auto(a, &g),
        Command::Report(a) => study::report(a, &g),
        Command::Runs(a) => study::runs(a, &g),
    }
}

/// One line per class: its IoU, or `-` when the class is absent from truth and prediction.
pub(crate) fn print_ious(classes: &[String], iou: &[Option<f64>]) {
    for (c, v) in classes.iter().zip(iou) {
        match v {
            Some(v) => println!("IoU {c}: {:.2}%", 100.0 * v),
            None => println!("IoU {c}: - (absent)"),
        }
    }
}

/// The forgetting line of `eval` and `segment`.
pub(crate) fn print_forgetting(f: &sptune::eval::Forgetting) {
    println!(
        "source task: {:.2}% before, {:.2}% after fine-tuning: forgetting {:.2} points",
        100.0 * f.source_acc,
        100.0 * f.after_acc,
        f.drop_points
    );
}
