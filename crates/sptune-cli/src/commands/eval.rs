//! `sptune eval`: test accuracy on the model's classes; with `--source`, the forgetting of
//! the source task (source head on the fine-tuned body, see
//! [`sptune::eval::forgetting`]).

use std::process::ExitCode;

use sptune::run::EvalConfig;

use super::Global;
use crate::args::EvalArgs;

/// Runs `sptune eval`.
pub fn run(a: EvalArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let e = sptune::run::evaluate(
        &EvalConfig {
            model: a.model,
            arch: a.arch,
            source: a.source,
            data: a.data,
            resize: a.resize,
        },
        &g.device,
    )?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        println!(
            "test accuracy {:.2}% ({} images, classes {})",
            100.0 * e.test_acc,
            e.test_images,
            e.classes.join(",")
        );
        if let Some(f) = &e.forgetting {
            println!(
                "source task: {:.2}% before, {:.2}% after fine-tuning: forgetting {:.2} points",
                100.0 * f.source_acc,
                100.0 * f.after_acc,
                f.drop_points
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
