//! What a study reads, checked before it starts and fingerprinted so a resume never mixes
//! inputs.
//!
//! - [`preflight`]: the study file's counts and ranges ([`StudyConfig::validate`]), the source
//!   checkpoint exists, each data set is readable and holds the classes asked for. It reads no
//!   image and writes nothing, so a study that cannot start leaves no folder behind.
//! - [`fingerprint`]: the SHA-256 of every file the study reads that it did not make (the
//!   source checkpoint `source.init`, the files of each data folder a loader reads). The
//!   leader records it in the study file; a rerun whose inputs differ is refused with what
//!   changed, or with `--restart-from source` starts over on the new inputs.
//! - [`products`]: the same for what the source phase made (pretrained sources, Fisher files),
//!   recorded when that phase ends and checked on every later start: a file replaced in the
//!   study folder is refused the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::StudyConfig;
use super::sources::{fisher_path, source_path};
use crate::download::sha256_file;
use crate::{Error, Result};

/// Input name -> SHA-256 (hex); for a data folder, of its files' names and digests.
pub type Fingerprint = BTreeMap<String, String>;

/// What a study reads that its folder and outputs must never be or lie in: the source
/// checkpoint (when it is a file) and the folders of the target data, the source task's data
/// and the pretraining data.
pub fn study_inputs(cfg: &StudyConfig) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = cfg
        .source
        .init
        .iter()
        .filter(|p| p.is_file())
        .cloned()
        .collect();
    out.extend(
        data_sets(cfg)
            .into_iter()
            .filter_map(|(_, data, _)| crate::data::data_folder(data)),
    );
    out
}

/// (key, `--data` value, class selection) of each data set the study reads.
fn data_sets(cfg: &StudyConfig) -> Vec<(&'static str, &str, &str)> {
    let mut v = vec![(
        "target",
        cfg.target.data.as_str(),
        cfg.target.classes.as_str(),
    )];
    if let Some(p) = &cfg.source.pretrain {
        v.push((
            "source.pretrain",
            p.data.data.as_str(),
            p.data.classes.as_str(),
        ));
    }
    if let Some(d) = &cfg.source.data {
        v.push((
            "source",
            d.as_str(),
            cfg.source.classes.as_deref().unwrap_or(""),
        ));
    }
    v
}

/// Checks that `cfg` can start (see the module doc); the error names the key.
pub fn preflight(cfg: &StudyConfig) -> Result<()> {
    cfg.validate()?;
    if let Some(init) = &cfg.source.init
        && !init.is_file()
    {
        return Err(Error::invalid(
            "source.init",
            format!("{}: no such file", init.display()),
        ));
    }
    for (key, data, classes) in data_sets(cfg) {
        let keyed = |e: Error| match e {
            Error::Invalid { msg, .. } => Error::invalid(format!("{key}.data"), msg),
            e => e,
        };
        let Some(names) = crate::data::peek_classes(data).map_err(keyed)? else {
            continue; // a named set that is downloaded when first read
        };
        if !classes.trim().is_empty() {
            crate::data::parse_classes(classes, &names).map_err(|e| match e {
                Error::Invalid { msg, .. } => {
                    Error::invalid(format!("{key}.classes"), format!("{msg} (in {data})"))
                }
                e => e,
            })?;
        }
    }
    Ok(())
}

/// The SHA-256 of every file `cfg` reads that the study does not make (see the module doc).
pub fn fingerprint(cfg: &StudyConfig) -> Result<Fingerprint> {
    let mut f = Fingerprint::new();
    if let Some(init) = &cfg.source.init {
        f.insert(
            format!("source.init ({})", init.display()),
            sha256_file(init)?,
        );
    }
    let mut seen = vec![];
    for (key, data, _) in data_sets(cfg) {
        let Some(folder) = crate::data::data_folder(data) else {
            continue;
        };
        if seen.contains(&folder) {
            continue;
        }
        f.insert(
            format!("{key}.data ({})", folder.display()),
            folder_digest(&folder)?,
        );
        seen.push(folder);
    }
    Ok(f)
}

/// The SHA-256 of the files the source phase made in `dir`: each pretrained source and each
/// Fisher file that exists.
pub fn products(cfg: &StudyConfig, dir: &Path) -> Result<Fingerprint> {
    let mut f = Fingerprint::new();
    for k in 0..cfg.source.seeds as u64 {
        let mut files = vec![fisher_path(dir, k)];
        if cfg.source.pretrain.is_some() {
            files.push(source_path(cfg, dir, k));
        }
        for p in files.into_iter().filter(|p| p.is_file()) {
            let name = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            f.insert(name, sha256_file(&p)?);
        }
    }
    Ok(f)
}

/// The inputs that differ between the recorded fingerprint `was` and `now`, in words (empty
/// when none does): `source.init (m.safetensors): sha256 1a2b3c4d… was 5e6f7a8b…`.
pub fn changed(was: &Fingerprint, now: &Fingerprint) -> Vec<String> {
    let short = |h: &str| h.chars().take(12).collect::<String>();
    let mut out = vec![];
    for (k, old) in was {
        match now.get(k) {
            Some(new) if new == old => {}
            Some(new) => out.push(format!("{k}: sha256 {}… was {}…", short(new), short(old))),
            None => out.push(format!("{k}: gone (was sha256 {}…)", short(old))),
        }
    }
    for k in now.keys().filter(|k| !was.contains_key(*k)) {
        out.push(format!("{k}: new"));
    }
    out
}

/// One digest of the files a loader reads in `folder` ([`crate::data::would_read`]), found
/// recursively: the SHA-256 of each file's path (relative, sorted) and digest.
fn folder_digest(folder: &Path) -> Result<String> {
    let mut files = vec![];
    let mut stack = vec![folder.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if crate::data::would_read(folder, &path, false) {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut listing = String::new();
    for p in &files {
        let rel = p.strip_prefix(folder).unwrap_or(p);
        listing.push_str(&format!("{}  {}\n", sha256_file(p)?, rel.display()));
    }
    Ok(crate::download::sha256_hex(listing.as_bytes()))
}
