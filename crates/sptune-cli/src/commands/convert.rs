//! `sptune convert IN OUT --arch A`: a checkpoint (PyTorch `.pth`/`.pt` or safetensors) to an
//! sptune safetensors checkpoint with metadata, reporting applied / missing / unused /
//! mismatched tensors.

use std::process::ExitCode;

use serde_json::json;
use sptune::models::checkpoint::convert;

use super::Global;
use crate::args::ConvertArgs;

/// Runs `sptune convert`.
pub fn run(a: ConvertArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let (spec, report) = convert(&a.input, &a.output, a.arch.as_deref(), &g.device)?;
    if g.json {
        let v = json!({"input": a.input, "output": a.output, "spec": spec, "report": report});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} -> {} ({}, {} classes, input {:?}): {}",
            a.input.display(),
            a.output.display(),
            spec.arch,
            spec.num_classes(),
            spec.input,
            report.summary()
        );
        for (what, names) in [("missing", &report.missing), ("unused", &report.unused)] {
            if !names.is_empty() {
                println!("{what}: {}", names.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
