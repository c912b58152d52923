//! `sptune demo`: the main job on the embedded default data set, the `fashion-mnist-quick`
//! study preset ([`sptune::study::StudyConfig::preset`]): pretrain a narrow ResNet-18 on
//! Fashion-MNIST 0-4, then for each of the seven schemes choose α (and β) on a validation split
//! of the 5-9 task's 20 images per class and fine-tune over seeds; print the table (target
//! accuracy and source forgetting with 95 % intervals, paired differences to L2) and write the
//! report (HTML with plots, Markdown, CSV) into `--out-dir`.

use std::process::ExitCode;

use sptune::study::{self, RunOptions, StudyConfig};

use super::Global;
use crate::args::DemoArgs;

/// Runs the demo.
pub fn run(a: DemoArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let mut cfg = StudyConfig::preset("fashion-mnist-quick")?;
    cfg.name = "demo".into();
    if let Some(n) = a.seeds {
        cfg.seeds = n;
    }
    if let Some(n) = a.trials {
        cfg.search.trials = n;
    }
    if let Some(n) = a.epochs {
        cfg.train.epochs = n;
    }
    if let Some(s) = a.schemes {
        cfg.schemes = s;
    }
    cfg.target.data = a.data.clone();
    if let Some(p) = cfg.source.pretrain.as_mut() {
        p.data.data = a.data;
    }
    let quiet = g.quiet;
    let t0 = std::time::Instant::now();
    let o = study::run(
        &cfg,
        &a.out_dir,
        &g.device,
        RunOptions::default(),
        &mut |l| {
            if !quiet {
                eprintln!("{l}");
            }
        },
    )?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&o.results)?);
    } else {
        println!("{}", o.markdown);
        println!(
            "{:.0} s; report: {}",
            t0.elapsed().as_secs_f64(),
            study::report_path(&a.out_dir).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
