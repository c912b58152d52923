//! `sptune predict --model M [--arch A] [--json] IMAGE...`: the top classes of each image
//! ([`sptune::run::predict`]).

use std::process::ExitCode;

use super::Global;
use crate::args::PredictArgs;

/// Runs `sptune predict`.
pub fn run(a: PredictArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let out = sptune::run::predict(&a.model, a.arch.as_deref(), &a.images, a.top, &g.device)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &out {
            let tops: Vec<String> = p
                .top
                .iter()
                .map(|t| format!("{} ({}) {:.2}%", t.class, t.name, 100.0 * t.prob))
                .collect();
            println!("{}: {}", p.image.display(), tops.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
