//! `sptune interpolate`: thin over [`sptune::interpolate::run`].

use std::process::ExitCode;

use sptune::interpolate::{InterpolateConfig, parse_sweep};

use super::Global;
use crate::args::InterpolateArgs;

/// Saves θ(a) (`--at A --out M`) or prints target and source accuracy along `--sweep`.
pub fn run(a: InterpolateArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let at = match (&a.at, &a.sweep) {
        (Some(x), None) => vec![*x],
        (None, Some(s)) => parse_sweep(s)?,
        _ => anyhow::bail!("interpolate needs --at A (with --out M) or --sweep LIST"),
    };
    let o = sptune::interpolate::run(
        &InterpolateConfig {
            from: a.from,
            to: a.to,
            at,
            out: a.out,
            data: a.data,
            per_class: a.per_class,
            seed: a.seed,
            source_data: a.source_data,
        },
        &g.device,
    )?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("| a | target acc (%) | source acc (%) | forgetting (points) |");
    println!("|---|---|---|---|");
    for p in &o.points {
        let (s, f) = match (p.source_acc, o.source_before) {
            (Some(s), Some(b)) => (
                format!("{:.2}", 100.0 * s),
                format!("{:.2}", 100.0 * (b - s)),
            ),
            _ => ("-".into(), "-".into()),
        };
        println!("| {} | {:.2} | {s} | {f} |", p.a, 100.0 * p.target_acc);
    }
    if let Some(out) = &o.out {
        println!("saved {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
