//! `sptune eval`: test accuracy on the model's classes; with `--source`, the forgetting of
//! the source task (source head on the fine-tuned body, see
//! [`sptune::eval::forgetting`]). A segmentation network (`sptune segment --out`) is
//! evaluated on a mask folder instead: IoU per class, mIoU, pixel accuracy
//! ([`sptune::segmentation::run::evaluate_saved`]).

use std::process::ExitCode;

use sptune::run::EvalConfig;
use sptune::segmentation::run::{SegEvalConfig, evaluate_saved};

use super::Global;
use crate::args::EvalArgs;

/// Runs `sptune eval`.
pub fn run(a: EvalArgs, g: &Global) -> anyhow::Result<ExitCode> {
    if sptune::segmentation::saved::probe(&a.model) {
        return segmentation(a, g);
    }
    let e = sptune::run::evaluate(
        &EvalConfig {
            model: a.model,
            arch: a.arch,
            source: a.source,
            data: a.data,
            source_data: a.source_data,
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
        if !g.quiet {
            eprintln!("{}", e.images);
        }
        if let Some(f) = &e.forgetting {
            super::print_forgetting(f);
        }
        if let Some(d) = &e.decomposition {
            println!(
                "of which BatchNorm running statistics {:.2} points and weights {:.2} points \
                 (source accuracy {:.2}% with the source's own statistics put back)",
                d.statistics_points,
                d.weights_points,
                100.0 * d.after_acc_source_stats
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sptune eval` of a segmentation network.
fn segmentation(a: EvalArgs, g: &Global) -> anyhow::Result<ExitCode> {
    if a.data == "fashion-mnist" {
        anyhow::bail!(
            "{} is a segmentation network: give --data a folder with images/ and masks/ (or \
             its parent holding test/, as `sptune scenes` writes)",
            a.model.display()
        );
    }
    let cfg = SegEvalConfig {
        model: a.model,
        data: a.data.into(),
        source: a.source.map(|s| {
            let data = a.source_data.unwrap_or_else(|| "fashion-mnist".into());
            (s, data)
        }),
    };
    let e = evaluate_saved(&cfg, &g.device)?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(ExitCode::SUCCESS);
    }
    super::print_ious(&e.classes, &e.iou);
    println!(
        "mIoU {:.2}%, pixel accuracy {:.2}% ({} images in {})",
        100.0 * e.miou,
        100.0 * e.pixel_accuracy,
        e.images,
        e.data.display()
    );
    if let Some(f) = &e.forgetting {
        super::print_forgetting(f);
    }
    Ok(ExitCode::SUCCESS)
}
