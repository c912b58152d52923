//! `sptune scenes --out DIR`: the built-in segmentation benchmark written to disk
//! ([`sptune::segmentation::scene_splits`], [`sptune::segmentation::write_mask_folder`]).

use std::process::ExitCode;

use sptune::segmentation::{SceneOptions, scene_splits, write_mask_folder};

use super::Global;
use crate::args::ScenesArgs;

/// Runs `sptune scenes`.
pub fn run(a: ScenesArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let data = sptune::data::data_folder(&a.data);
    sptune::util::refuse_input_dir(
        &a.out,
        &data.iter().map(|d| d.as_path()).collect::<Vec<_>>(),
    )?;
    let (train_dir, test_dir) = (a.out.join("train"), a.out.join("test"));
    for d in [&train_dir, &test_dir] {
        if d.exists() {
            anyhow::bail!("{}: already exists (choose a new --out)", d.display());
        }
    }
    let o = SceneOptions {
        count: a.train,
        size: a.size,
        items: a.items,
        seed: a.seed,
        ..SceneOptions::default()
    };
    let (train, test) = scene_splits(&a.data, &a.classes, &o, a.test)?;
    write_mask_folder(&train, &train_dir)?;
    write_mask_folder(&test, &test_dir)?;
    if !g.quiet {
        eprintln!(
            "{} training and {} test scenes of {}x{} px, classes {}: {}",
            train.len(),
            test.len(),
            a.size,
            a.size,
            train.classes.join(", "),
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
