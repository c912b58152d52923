//! `sptune eval`: test accuracy on the model's classes; with `--source`, the forgetting of
//! the source task (source head on the fine-tuned body, see
//! [`sptune::eval::forgetting`]).

use std::process::ExitCode;

use burn::module::Module;
use serde_json::json;
use sptune::models::checkpoint::{Checkpoint, load_into};
use sptune::task::{self, DataConfig};

use super::Global;
use crate::args::EvalArgs;

fn data_for(a: &EvalArgs, spec: &sptune::models::ModelSpec) -> DataConfig {
    DataConfig {
        data: a.data.clone(),
        classes: spec.classes.join(","),
        resize: match a.resize {
            0 => sptune::data::stored_side(spec.input[1]),
            r => r,
        },
        ..DataConfig::default()
    }
}

/// Runs `sptune eval`.
pub fn run(a: EvalArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let device = g.device.clone();
    let ckpt = Checkpoint::read(&a.model)?;
    let spec = ckpt.spec_or_infer(a.arch.as_deref())?;
    let (net, _) = load_into(spec.init(&device)?, &spec, &ckpt, false)?;
    let t = task::load(&data_for(&a, &spec), spec.input[0])?;
    let acc = sptune::eval::accuracy(&net.valid(), &spec, &t.test, 256, &device)?;
    let mut out = json!({
        "model": a.model, "classes": spec.classes, "test_images": t.test.len(), "test_acc": acc,
    });
    if let Some(src) = &a.source {
        let s = Checkpoint::read(src)?;
        let sspec = s.spec()?;
        let st = task::load(&data_for(&a, &sspec), sspec.input[0])?;
        let f = sptune::eval::forgetting(&s, &ckpt, &st.test, &device)?;
        out["source"] = json!(src);
        out["forgetting"] = serde_json::to_value(&f)?;
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "test accuracy {:.2}% ({} images, classes {})",
            100.0 * acc,
            t.test.len(),
            spec.classes.join(",")
        );
        if let Some(f) = out.get("forgetting") {
            println!(
                "source task: {:.2}% before, {:.2}% after fine-tuning: forgetting {:.2} points",
                100.0 * f["source_acc"].as_f64().unwrap_or(0.0),
                100.0 * f["after_acc"].as_f64().unwrap_or(0.0),
                f["drop_points"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
