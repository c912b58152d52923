//! Where a study's sources live and which one a trial uses (`[source] seeds`): source 0 has
//! the names of a one-source study (`source.safetensors`, `final/l2/seed1`), source `k > 0`
//! adds `-sK` / `/sourceK` / `_sourceK`.

use std::path::{Path, PathBuf};

use super::StudyConfig;
use super::store::Trial;

/// The checkpoint of source `k` (`[source] seeds`): the given one, or `source.safetensors`
/// and `source-s1.safetensors`, ... as the study pretrained them.
pub fn source_path(cfg: &StudyConfig, dir: &Path, k: u64) -> PathBuf {
    match &cfg.source.init {
        Some(p) => p.clone(),
        None => dir.join(format!("source{}.safetensors", source_suffix(k))),
    }
}

pub(super) fn fisher_path(dir: &Path, k: u64) -> PathBuf {
    dir.join(format!("source{}.fisher.safetensors", source_suffix(k)))
}

/// `-s1`, `-s2`, ... for sources past the first (whose names are those of a one-source study).
fn source_suffix(k: u64) -> String {
    if k == 0 {
        String::new()
    } else {
        format!("-s{k}")
    }
}

/// `/source1`, ... in a trial's key, for sources past the first.
pub(super) fn source_key(k: u64) -> String {
    if k == 0 {
        String::new()
    } else {
        format!("/source{k}")
    }
}

/// `_source1`, ... in a final's file name, for sources past the first.
pub(super) fn source_infix(k: u64) -> String {
    if k == 0 {
        String::new()
    } else {
        format!("_source{k}")
    }
}

/// The source a trial fine-tunes (`params.source`, 0 when absent).
pub fn source_of(t: &Trial) -> u64 {
    t.params["source"].as_u64().unwrap_or(0)
}

/// A trial's pairing unit: (source, seed). Final runs of different schemes with the same unit
/// start from the same source and see the same batches.
pub fn unit_of(t: &Trial) -> (u64, u64) {
    (source_of(t), t.seed)
}
