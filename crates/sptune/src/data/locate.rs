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
    /// HTTPS folders holding the four `.gz` IDX files, tried in order.
    mirrors: &'static [&'static str],
    /// The SHA-256 of each IDX file's unpacked bytes, in [`IDX_FILES`] order, if pinned.
    sha256: Option<&'static [&'static str; 4]>,
    hint: &'static str,
}

/// SHA-256 of the unpacked Fashion-MNIST IDX files (train images, train labels, test images,
/// test labels). The digest is of the IDX bytes, not of the `.gz` file: distributions
/// recompress the files (Debian's `.gz` files differ from upstream's in the gzip header alone),
/// and what must not change is the data. Computed from Debian's `dataset-fashion-mnist`
/// (0.0~git20200523.55506a9-1); a test checks them against `/usr/share/datasets/fashion-mnist`.
pub(crate) const FASHION_MNIST_SHA256: [&str; 4] = [
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
];

const NAMED: [Named; 2] = [
    Named {
        name: "fashion-mnist",
        // upstream's S3 bucket (its website endpoint is plain HTTP only, the REST endpoint
        // serves the same objects over HTTPS), then the copy Keras downloads
        mirrors: &[
            "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        ],
        sha256: Some(&FASHION_MNIST_SHA256),
        hint: "install the Debian package `dataset-fashion-mnist` \
               (apt-get install dataset-fashion-mnist) or pass --data DIR",
    },
    Named {
        name: "mnist",
        mirrors: &["https://ossci-datasets.s3.amazonaws.com/mnist/"],
        sha256: None,
        hint: "put the four MNIST IDX files in a directory and pass --data DIR",
    },
];

/// Resolves the `--data` value.
///
/// `fashion-mnist` (or `mnist`): the first of `$SPTUNE_DATA/NAME`,
/// `/usr/share/datasets/NAME` (Debian package `dataset-fashion-mnist`) and `./data/NAME`
/// that holds the four IDX files (plain or `.gz`). When none does, the missing `.gz` files
/// are downloaded over HTTPS into `./data/NAME` (with [`crate::download`]: each to a temporary
/// file, checked to gunzip and, for Fashion-MNIST, that the unpacked bytes have the pinned
/// SHA-256, then renamed); when that fails the error says how to install the data.
///
/// Any other value is a directory: [`DataSource::Idx`] when it holds the four IDX files,
/// else [`DataSource::ImageFolder`].
pub fn resolve_data(spec: &str) -> Result<DataSource> {
    if let Some(named) = NAMED.iter().find(|n| n.name == spec) {
        let candidates = named_candidates(named.name);
        let local = Path::new("data").join(named.name);
        let from = Remote {
            mirrors: named.mirrors,
            sha256: named.sha256,
        };
        return resolve_named(named.name, &candidates, &local, &from, named.hint)
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

/// The folders a named set is looked for in, in order: `$SPTUNE_DATA/NAME`,
/// `/usr/share/datasets/NAME`, `./data/NAME`.
fn named_candidates(name: &str) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(root) = std::env::var_os("SPTUNE_DATA").filter(|v| !v.is_empty()) {
        candidates.push(PathBuf::from(root).join(name));
    }
    candidates.push(Path::new("/usr/share/datasets").join(name));
    candidates.push(Path::new("data").join(name));
    candidates
}

/// The folder a `--data` value reads, when it exists, without downloading anything: for a
/// named set the first candidate folder of [`resolve_data`] that exists, else the value
/// itself when it is a directory. For the output check ([`crate::util::refuse_input`]).
pub fn data_folder(spec: &str) -> Option<PathBuf> {
    if NAMED.iter().any(|n| n.name == spec) {
        return named_candidates(spec).into_iter().find(|c| c.is_dir());
    }
    let dir = PathBuf::from(spec);
    dir.is_dir().then_some(dir)
}

/// The class names a `--data` value gives, found without decoding images or downloading:
/// `None` for a named set that is not on this machine yet (it is downloaded when first read).
/// Errors as loading would: a missing folder, missing IDX files, a class folder without images.
pub fn peek_classes(spec: &str) -> Result<Option<Vec<String>>> {
    if NAMED.iter().any(|n| n.name == spec) {
        let found = named_candidates(spec)
            .into_iter()
            .find(|c| has_idx_files(c));
        return found
            .map(|dir| super::idx::idx_class_names(&dir))
            .transpose();
    }
    match resolve_data(spec)? {
        DataSource::Idx(dir) => super::idx::idx_class_names(&dir).map(Some),
        DataSource::ImageFolder(dir) => {
            super::image_folder::image_folder_class_names(&dir).map(Some)
        }
    }
}

/// Whether data read from `folder` would read `path` inside it (for the output check,
/// [`crate::util::refuse_input`]): a file named like an IDX file (plain or `.gz`), an image
/// (`.png`, `.jpg`, `.jpeg`) or `classes.txt`; or, for a folder output (`is_dir`), any folder
/// inside an ImageFolder layout, where it would become a class. Other files (a checkpoint
/// beside the IDX files) are not read.
pub fn would_read(folder: &Path, path: &Path, is_dir: bool) -> bool {
    if is_dir {
        return !has_idx_files(folder);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    IDX_FILES
        .iter()
        .any(|f| name == *f || name == format!("{f}.gz"))
        || [".png", ".jpg", ".jpeg"].iter().any(|e| name.ends_with(e))
        || name == "classes.txt"
}

/// Where the `.gz` IDX files of a named set can be downloaded from.
pub(crate) struct Remote<'a> {
    /// Folders (URLs), tried in order for each file.
    pub mirrors: &'a [&'a str],
    /// SHA-256 of each unpacked IDX file, in [`IDX_FILES`] order.
    pub sha256: Option<&'a [&'a str; 4]>,
}

/// The first candidate holding the IDX files, else a download of them into `download_dir`.
pub(crate) fn resolve_named(
    name: &str,
    candidates: &[PathBuf],
    download_dir: &Path,
    from: &Remote<'_>,
    hint: &str,
) -> Result<PathBuf> {
    if let Some(dir) = candidates.iter().find(|d| has_idx_files(d)) {
        return Ok(dir.clone());
    }
    download_idx(download_dir, from).map_err(|why| {
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

/// Downloads the missing `.gz` IDX files into `dir`, each from the first mirror that serves
/// it, checked to gunzip (and against the pinned digest of its unpacked bytes) before it is
/// renamed into place; the reason on failure (every mirror's, each naming its URL).
fn download_idx(dir: &Path, from: &Remote<'_>) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (i, base) in IDX_FILES.iter().enumerate() {
        if find_idx_file(dir, base).is_some() {
            continue;
        }
        let want = from.sha256.map(|d| d[i]);
        let check = |tmp: &Path| check_unpacked(tmp, want);
        let opts = download::Options {
            verify: Some(&check),
            ..download::Options::default()
        };
        let file = format!("{base}.gz");
        let mut failed = Vec::new();
        for mirror in from.mirrors {
            let url = format!("{}/{file}", mirror.trim_end_matches('/'));
            match download::download(&url, &dir.join(&file), &opts) {
                Ok(_) => break,
                Err(e) => failed.push(e.to_string()),
            }
        }
        if failed.len() == from.mirrors.len() {
            return Err(if failed.is_empty() {
                format!("no address to download {file} from")
            } else {
                failed.join("; ")
            });
        }
    }
    Ok(())
}

/// Checks that the `.gz` file at `path` unpacks to something, and to bytes with the SHA-256
/// `want` when given; the reason on failure.
fn check_unpacked(path: &Path, want: Option<&str>) -> std::result::Result<(), String> {
    let (len, digest) =
        gunzip_sha256(path).map_err(|e| format!("not a valid gzip file: {}", one_line(e)))?;
    if len == 0 {
        return Err("not a valid gzip file: empty".into());
    }
    match want {
        Some(want) => download::check_digest(&digest, want)
            .map_err(|why| format!("unpacked {why}; nothing was kept")),
        None => Ok(()),
    }
}

/// The length and SHA-256 (lowercase hex) of the unpacked bytes of the gzip file at `path`.
pub(crate) fn gunzip_sha256(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut dec = flate2::bufread::MultiGzDecoder::new(file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match dec.read(&mut buf)? {
            0 => break,
            n => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
        }
    }
    Ok((total, download::hex(&hasher.finalize())))
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
        let got = resolve_named(
            "x",
            &cands,
            a.path(),
            &remote(&["file:///nonexistent"]),
            "h",
        )
        .unwrap();
        assert_eq!(got, b.path());
    }

    fn remote<'a>(mirrors: &'a [&'a str]) -> Remote<'a> {
        Remote {
            mirrors,
            sha256: None,
        }
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
        let got = resolve_named("x", &[], &into, &remote(&[&url]), "h").unwrap();
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
        let err = resolve_named("x", &[], dst.path(), &remote(&[&url]), "h")
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
        let from = remote(&["file:///nonexistent/dir"]);
        let err = resolve_named("fashion-mnist", &[], &into, &from, hint)
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
        let err = resolve_named("x", &[], dst.path(), &remote(&[&url]), "h")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid gzip"), "{err}");
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);
    }

    /// The set of `serve_set` with the digests of its unpacked files pinned.
    fn pinned_digests() -> [String; 4] {
        let src = tempfile::tempdir().unwrap();
        write_set(src.path(), ".gz");
        IDX_FILES.map(|b| {
            gunzip_sha256(&src.path().join(format!("{b}.gz")))
                .unwrap()
                .1
        })
    }

    #[test]
    fn pinned_digests_are_checked() {
        let url = serve_set(false);
        let good = pinned_digests();
        let good: [&str; 4] = std::array::from_fn(|i| good[i].as_str());
        let dst = tempfile::tempdir().unwrap();
        let into = dst.path().join("fm");
        let from = Remote {
            mirrors: &[&url],
            sha256: Some(&good),
        };
        resolve_named("x", &[], &into, &from, "h").unwrap();
        assert_eq!(std::fs::read_dir(&into).unwrap().count(), 4);
        // one wrong digest: that file is refused, named with both digests, nothing kept
        let mut bad = good;
        let wrong = "0".repeat(64);
        bad[1] = &wrong;
        let dst = tempfile::tempdir().unwrap();
        let from = Remote {
            mirrors: &[&url],
            sha256: Some(&bad),
        };
        let err = resolve_named("x", &[], dst.path(), &from, "h")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "{url}train-labels-idx1-ubyte.gz: unpacked SHA-256 mismatch: expected {wrong}, got {}",
                good[1]
            )),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        let names: Vec<_> = std::fs::read_dir(dst.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["train-images-idx3-ubyte.gz"]);
    }

    #[test]
    fn a_failing_mirror_falls_back_to_the_next() {
        let good_url = serve_set(false);
        let missing = format!("{}/none/", download::test_server(vec![]));
        let corrupt = serve_set(true);
        let dst = tempfile::tempdir().unwrap();
        let mirrors = [missing.as_str(), corrupt.as_str(), good_url.as_str()];
        let got = resolve_named("x", &[], dst.path(), &remote(&mirrors), "h").unwrap();
        assert_eq!(got, dst.path());
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 4);
        // all failing: each mirror's reason, each naming its URL
        let dst = tempfile::tempdir().unwrap();
        let err = resolve_named("x", &[], dst.path(), &remote(&mirrors[..2]), "h")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "{missing}train-images-idx3-ubyte.gz: HTTP status 404"
            )) && err.contains(&format!(
                "{corrupt}train-images-idx3-ubyte.gz: not a valid gzip"
            )),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 0);
    }

    #[test]
    fn fashion_mnist_digests_match_the_debian_files() {
        let dir = Path::new("/usr/share/datasets/fashion-mnist");
        if !dir.is_dir() {
            println!(
                "note: {} is absent; pinned digests not checked",
                dir.display()
            );
            return;
        }
        for (base, want) in IDX_FILES.iter().zip(FASHION_MNIST_SHA256) {
            let gz = dir.join(format!("{base}.gz"));
            let (_, got) = gunzip_sha256(&gz).unwrap();
            assert_eq!(got, want, "{}", gz.display());
        }
        for named in &NAMED {
            assert!(named.mirrors.iter().all(|m| m.starts_with("https://")));
        }
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
