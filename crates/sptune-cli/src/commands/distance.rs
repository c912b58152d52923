//! `sptune distance`: how far `--to` moved from `--from`, per tensor and in total, with the
//! -SP penalties at α = 1 (see [`sptune::eval::distance`]).

use std::process::ExitCode;

use serde_json::json;

use super::Global;
use crate::args::DistanceArgs;

/// Runs `sptune distance`.
pub fn run(a: DistanceArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let d =
        sptune::eval::distance::distance_between(&a.from, &a.to, a.fisher.as_deref(), a.anchor)?;
    if g.json {
        let v = json!({
            "tensors": d.tensors,
            "total": {"l2": d.total_l2, "rel": d.total_rel},
            "penalty": d.penalty,
            "new": {"names": d.new.names, "l2": d.new.l2},
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<40} {:>10} {:>12} {:>10}",
            "tensor", "numel", "|w-w0|", "rel"
        );
        for t in &d.tensors {
            println!(
                "{:<40} {:>10} {:>12.5} {:>10.5}",
                t.name, t.numel, t.l2, t.rel
            );
        }
        println!("total |w-w0| {:.5} (rel {:.5})", d.total_l2, d.total_rel);
        println!(
            "penalties at alpha=1: l2-sp {:.5}  l1-sp {:.5}  gl-sp {:.5}",
            d.penalty.l2_sp, d.penalty.l1_sp, d.penalty.gl_sp
        );
        if let (Some(l2f), Some(glf)) = (d.penalty.l2_sp_fisher, d.penalty.gl_sp_fisher) {
            println!("with raw Fisher weights: l2-sp-fisher {l2f:.5}  gl-sp-fisher {glf:.5}");
        }
        println!(
            "new part: {} ({} tensors), 1/2|w|^2 = {:.5}",
            d.new.names.join(", "),
            d.new.names.len(),
            d.new.l2
        );
    }
    Ok(ExitCode::SUCCESS)
}
