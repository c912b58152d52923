//! `sptune predict --model M [--arch A] [--json] IMAGE...`: the top classes of each image
//! ([`sptune::run::predict`]); for a segmentation network, `--out DIR [--panel N] [--truth
//! DIR]`: a colour mask per image ([`sptune::segmentation::run::predict_saved`]).

use std::process::ExitCode;

use super::Global;
use crate::args::PredictArgs;

/// Runs `sptune predict`.
pub fn run(a: PredictArgs, g: &Global) -> anyhow::Result<ExitCode> {
    if sptune::segmentation::saved::probe(&a.model) {
        return segmentation(a, g);
    }
    if a.out.is_some() || a.panel.is_some() || a.truth.is_some() {
        anyhow::bail!(
            "--out, --panel and --truth are for segmentation networks; {} is a classifier",
            a.model.display()
        );
    }
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

/// `sptune predict` with a segmentation network.
fn segmentation(a: PredictArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let Some(out) = a.out else {
        anyhow::bail!(
            "{} is a segmentation network: give --out DIR for its masks",
            a.model.display()
        );
    };
    if a.truth.is_some() && a.panel.is_none() {
        anyhow::bail!("--truth is shown in panels: give --panel N too");
    }
    let cfg = sptune::segmentation::run::SegPredictConfig {
        model: a.model,
        images: a.images,
        out,
        panel: a.panel,
        truth: a.truth,
    };
    let preds = sptune::segmentation::run::predict_saved(&cfg, &g.device)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&preds)?);
    } else {
        for p in &preds {
            let panel = p
                .panel
                .as_ref()
                .map(|q| format!(", {}", q.display()))
                .unwrap_or_default();
            println!("{} -> {}{panel}", p.image.display(), p.mask.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
