//! Resolving the `--data` option to a directory and its layout.

use super::idx::{IDX_FILES, find_idx_file, has_idx_files};
use super::one_line;
use crate::{Error, Result, download};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a data set lives and in which layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A directory with the four MNIST-style IDX files; load with
    /// [`load_idx_dir`](super::load_idx_dir).
    Idx(PathBuf),
    /// A directory in torchvision `ImageFolder` layout; load with
    /// [`load_image_folder`](super::load_image_folder) (needs channels and resize).
    ImageFolder(PathBuf),
}

/// A data set known by name.
struct Named {
    name: &'static str,
    url: &'static str,
    hint: &'static str,
}

const NAMED: [Named; 2] = [
    Named {
        name: "fashion-mnist",
        url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        hint: "install the Debian package `dataset-fashion-mnist` \
               (apt-get install dataset-fashion-mnist) or pass --data DIR",
    },
    Named {
        name: "mnist",
        url: "https://ossci-datasets.s3.amazonaws.com/mnist/",
        hint: "put the four MNIST IDX files in a directory and pass --data DIR",
    },
];

/// Resolves the `--data` value.
///
/// `fashion-mnist` (or `mnist`): the first of `$SPTUNE_DATA/NAME`,
/// `/usr/share/datasets/NAME` (Debian package `dataset-fashion-mnist`) and `./data/NAME`
/// that holds the four IDX files (plain or `.gz`). When none does, the missing `.gz` files
/// are downloaded into `./data/NAME` (with [`crate::download`]: each to a temporary file,
/// checked to gunzip, then renamed); when that fails the error says how to install the data.
///
/// Any other value is a directory: [`DataSource::Idx`] when it holds the four IDX files,
/// else [`DataSource::ImageFolder`].
pub fn resolve_data(spec: &str) -> Result<DataSource> {
    if let Some(named) = NAMED.iter().find(|n| n.name == spec) {
        let mut candidates = Vec::new();
        if let Some(root) = std::env::var_os("SPTUNE_DATA").filter(|v| !v.is_empty()) {
            candidates.push(PathBuf::from(root).join(named.name));
        }
        candidates.push(Path::new("/usr/share/datasets").join(named.name));
        let local = Path::new("data").join(named.name);
        candidates.push(local.clone());
        return resolve_named(named.name, &candidates, &local, named.url, named.hint)
            .map(DataSource::Idx);
    }
    let dir = PathBuf::from(spec);
    if !dir.is_dir() {
        return Err(Error::invalid(
            "--data",
            format!(
                "{spec} is not a directory (expected fashion-mnist, or a directory of IDX files or class folders)"
            ),
        ));
    }
    Ok(if has_idx_files(&dir) {
        DataSource::Idx(dir)
    } else {
        DataSource::ImageFolder(dir)
    })
}

/// The first candidate holding the IDX files, else a download of them into `download_dir`.
pub(crate) fn resolve_named(
    name: &str,
    candidates: &[PathBuf],
    download_dir: &Path,
    base_url: &str,
    hint: &str,
) -> Result<PathBuf> {
    if let Some(dir) = candidates.iter().find(|d| has_idx_files(d)) {
        return Ok(dir.clone());
    }
    download_idx(download_dir, base_url).map_err(|why| {
        let searched = candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Error::Other(format!(
            "{name} not found (searched {searched}) and downloading it failed ({why}); {hint}"
        ))
    })?;
    Ok(download_dir.to_path_buf())
}

/// Downloads the missing `.gz` IDX files from `base_url` into `dir`, each checked to gunzip
/// before it is renamed into place; the reason on failure.
fn download_idx(dir: &Path, base_url: &str) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let gunzips =
        |tmp: &Path| check_gzip(tmp).map_err(|e| format!("not a valid gzip file: {}", one_line(e)));
    let opts = download::Options {
        verify: Some(&gunzips),
        ..download::Options::default()
    };
    for base in IDX_FILES {
        if find_idx_file(dir, base).is_some() {
            continue;
        }
        let file = format!("{base}.gz");
        let url = format!("{}/{file}", base_url.trim_end_matches('/'));
        download::download(&url, &dir.join(&file), &opts).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn check_gzip(path: &Path) -> std::io::Result<()> {
    let raw = std::fs::read(path)?;
    let mut dec = flate2::bufread::MultiGzDecoder::new(raw.as_slice());
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    loop {
        match dec.read(&mut buf)? {
            0 => break,
            n => total += n,
        }
    }
    if total == 0 {
        return Err(std::io::Error::other("empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load_idx_dir, write_idx};

    fn write_set(dir: &Path, ext: &str) {
        let imgs = [0u8, 10, 20, 30, 40, 50, 60, 70];
        let labs = [1u8, 0];
        write_idx(
            &imgs,
            &labs,
            2,
            2,
            2,
            &dir.join(format!("train-images-idx3-ubyte{ext}")),
            &dir.join(format!("train-labels-idx1-ubyte{ext}")),
        )
        .unwrap();
        write_idx(
            &imgs[..4],
            &labs[..1],
            1,
            2,
            2,
            &dir.join(format!("t10k-images-idx3-ubyte{ext}")),
            &dir.join(format!("t10k-labels-idx1-ubyte{ext}")),
        )
        .unwrap();
    }

    #[test]
    fn first_candidate_with_files_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let c = tempfile::tempdir().unwrap();
        write_set(b.path(), "");
        write_set(c.path(), ".gz");
        let cands = [
            a.path().to_path_buf(),
            b.path().to_path_buf(),
            c.path().to_path_buf(),
        ];
        let got = resolve_named("x", &cands, a.path(), "file:///nonexistent", "h").unwrap();
        assert_eq!(got, b.path());
    }

    /// A local HTTP server with the `.gz` IDX files of a small set under `/fm/`.
    fn serve_set(corrupt: bool) -> String {
        let src = tempfile::tempdir().unwrap();
        write_set(src.path(), ".gz");
        let files = IDX_FILES
            .iter()
            .map(|b| {
                let body = if corrupt {
                    b"not gzip at all".to_vec()
                } else {
                    std::fs::read(src.path().join(format!("{b}.gz"))).unwrap()
                };
                (format!("/fm/{b}.gz"), body)
            })
            .collect();
        format!("{}/fm/", download::test_server(files))
    }

    #[test]
    fn download_over_http() {
        let url = serve_set(false);
        let dst = tempfile::tempdir().unwrap();
        let into = dst.path().join("fm");
        let got = resolve_named("x", &[], &into, &url, "h").unwrap();
        assert_eq!(got, into);
        let splits = load_idx_dir(&into).unwrap();
        assert_eq!((splits.train.len(), splits.test.len()), (2, 1));
        // no temporary files left behind
        let names: Vec<_> = std::fs::read_dir(&into)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn missing_file_on_the_server_is_a_clear_error() {
        let url = format!("{}/empty/", download::test_server(vec![]));
        let dst = tempfile::tempdir().unwrap();
        let err = resolve_named("x", &[], dst.path(), &url, "h")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{url}train-images-idx3-ubyte.gz: HTTP status 404")),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);
    }

    #[test]
    fn failed_download_says_how_to_install() {
        let dst = tempfile::tempdir().unwrap();
        let into = dst.path().join("fm");
        let hint = NAMED[0].hint;
        let err = resolve_named("fashion-mnist", &[], &into, "file:///nonexistent/dir", hint)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("apt-get install dataset-fashion-mnist"),
            "{err}"
        );
        assert!(err.contains("--data DIR"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn corrupt_download_is_rejected() {
        let url = serve_set(true);
        let dst = tempfile::tempdir().unwrap();
        let err = resolve_named("x", &[], dst.path(), &url, "h")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid gzip"), "{err}");
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);
    }

    #[test]
    fn directory_layouts() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_data(d.path().to_str().unwrap()).unwrap(),
            DataSource::ImageFolder(d.path().to_path_buf())
        );
        write_set(d.path(), ".gz");
        assert_eq!(
            resolve_data(d.path().to_str().unwrap()).unwrap(),
            DataSource::Idx(d.path().to_path_buf())
        );
        let missing = d.path().join("nope");
        let err = resolve_data(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("not a directory"),
            "{err}"
        );
    }
}
