//! HTTP(S) downloads (ureq with rustls; the system's CA bundle, else Mozilla's roots) for the
//! data sets and the pretrained weights.
//!
//! [`download`] streams the body into a temporary file in the destination's folder, checks it
//! (SHA-256 and a caller's check, where given) and only then renames it into place: a failed,
//! interrupted or corrupt download never leaves a file under the destination's name. A
//! progress bar goes to stderr when it is a terminal and progress is not turned off (see
//! [`crate::runtime::set_quiet`]). Errors are one line naming the URL.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};

use crate::{Error, Result, util};

/// Time to set up a connection (DNS, TCP, TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the response headers, and for each read of the body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Further tries after a network error or a 5xx status.
const RETRIES: u32 = 2;
/// Where systems keep their CA bundle (Debian/Ubuntu, Fedora/RHEL, Alpine/macOS).
const CA_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A caller's check of the complete download (its temporary path); the reason on failure.
pub type Verify<'a> = &'a dyn Fn(&Path) -> std::result::Result<(), String>;

/// What a download must satisfy before it is renamed into place, and how it shows.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// The expected SHA-256 (lowercase hex) of the body, or a prefix of it.
    pub sha256: Option<&'a str>,
    /// A further check of the downloaded file (e.g. that it gunzips).
    pub verify: Option<Verify<'a>>,
    /// Never show a progress bar (it is also hidden when stderr is not a terminal).
    pub quiet: bool,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("sha256", &self.sha256)
            .field("verify", &self.verify.map(|_| "fn"))
            .field("quiet", &self.quiet)
            .finish()
    }
}

/// Downloads `url` to `dest` (whose folder must exist): into a temporary sibling, renamed over
/// `dest` only once the body is complete and passed the checks of `opts`. Returns the number
/// of bytes. On failure nothing is left behind, and the error is one line naming `url` (for a
/// digest mismatch also the expected and the actual SHA-256). The temporary name is unique per
/// process and call ([`util::tmp_sibling`]), so concurrent downloads of one file do not mix.
pub fn download(url: &str, dest: &Path, opts: &Options<'_>) -> Result<u64> {
    let fail = |why: String| Error::Other(format!("{url}: {why}"));
    let tmp = util::tmp_sibling(dest);
    let label = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = fetch_checked(url, &tmp, &label, opts).and_then(|n| {
        std::fs::rename(&tmp, dest)
            .map(|_| n)
            .map_err(|e| format!("{}: {e}", dest.display()))
    });
    result.map_err(|why| {
        let _ = std::fs::remove_file(&tmp);
        fail(crate::data::one_line(why))
    })
}

/// Streams `url` into `tmp` and runs the checks; the reason on failure.
fn fetch_checked(
    url: &str,
    tmp: &Path,
    label: &str,
    opts: &Options<'_>,
) -> std::result::Result<u64, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("not an http:// or https:// address".into());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(concat!("sptune/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(root_certs()).build())
        .build()
        .into();
    let mut tries = 0;
    let response = loop {
        match agent.get(url).call() {
            Ok(r) => break r,
            Err(e) if tries < RETRIES && transient(&e) => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(tries.into()));
            }
            Err(ureq::Error::StatusCode(code)) => return Err(format!("HTTP status {code}")),
            Err(e) => return Err(e.to_string()),
        }
    };
    let body = response.into_body();
    let bar = progress_bar(body.content_length(), label, opts.quiet);
    let mut reader = body.into_reader();
    let mut hasher = Sha256::new();
    let mut stream = || -> std::result::Result<u64, String> {
        let file = File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut out = BufWriter::new(file);
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            total += n as u64;
            bar.inc(n as u64);
        }
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(total)
    };
    let streamed = stream();
    bar.finish_and_clear();
    let total = streamed?;
    if let Some(want) = opts.sha256 {
        check_digest(&hex(&hasher.finalize()), want)
            .map_err(|why| format!("{why}; nothing was kept"))?;
    }
    if let Some(verify) = opts.verify {
        verify(tmp)?;
    }
    Ok(total)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 of the file at `path` in lowercase hex (read in chunks).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks the SHA-256 of the file at `path` against `expected` (hex, either case; a full
/// digest or, for torchvision files, the prefix their names carry). A mismatch is one line
/// naming the file, the expected and the actual digest.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    check_digest(&actual, expected)
        .map_err(|why| Error::Other(format!("{}: {why}", path.display())))
}

/// `actual` (lowercase hex) against `expected` (a digest or a prefix of at least 8 hex
/// digits); the reason on mismatch.
pub(crate) fn check_digest(actual: &str, expected: &str) -> std::result::Result<(), String> {
    let want = expected.trim().to_ascii_lowercase();
    let well_formed = (8..=64).contains(&want.len()) && want.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(format!(
            "expected SHA-256 {expected:?} is not 8 to 64 hex digits"
        ));
    }
    if actual.starts_with(&want) {
        Ok(())
    } else {
        Err(format!("SHA-256 mismatch: expected {want}, got {actual}"))
    }
}

/// The trusted roots: the system's CA bundle as curl and OpenSSL find it (`$SSL_CERT_FILE`,
/// else the usual bundle paths), so a locally installed CA (e.g. an intercepting proxy's) is
/// trusted as before; Mozilla's roots built into the binary when there is none.
fn root_certs() -> RootCerts {
    let bundles = std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .chain(CA_BUNDLES.iter().map(PathBuf::from));
    for bundle in bundles {
        let Ok(pem) = std::fs::read(&bundle) else {
            continue;
        };
        let certs: Vec<Certificate<'static>> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return RootCerts::new_with_certs(&certs);
        }
    }
    RootCerts::WebPki
}

/// Worth another try: network trouble or a server error.
fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::StatusCode(code) => *code >= 500,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed => true,
        _ => false,
    }
}

/// A byte-counting bar on stderr, hidden when quiet or when stderr is not a terminal.
fn progress_bar(len: Option<u64>, label: &str, quiet: bool) -> ProgressBar {
    if quiet || crate::runtime::quiet() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

/// A throw-away HTTP/1.1 server for tests: serves `files` (path -> body) from 127.0.0.1,
/// answers 404 for anything else; runs until the test process ends.
#[cfg(test)]
pub(crate) fn test_server(files: Vec<(String, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // skip the headers
            let mut h = String::new();
            while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = match files.iter().find(|(p, _)| *p == path) {
                Some((_, b)) => ("200 OK", b.as_slice()),
                None => ("404 Not Found", &b"not found"[..]),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_and_checks_sha256() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let url = test_server(vec![("/f.bin".into(), body.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        let hash = sha256_hex(&body);
        let opts = Options {
            sha256: Some(&hash),
            quiet: true,
            ..Options::default()
        };
        let n = download(&format!("{url}/f.bin"), &dest, &opts).unwrap();
        assert_eq!(n, body.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn not_found_is_one_line_and_leaves_nothing() {
        let url = format!("{}/missing.gz", test_server(vec![]));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("missing.gz");
        let err = download(&url, &dest, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&url) && err.contains("404"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn checksum_or_check_failure_leaves_nothing() {
        let url = test_server(vec![("/a".into(), b"hello".to_vec())]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a");
        let wrong = "ab".repeat(32);
        let bad = Options {
            sha256: Some(&wrong),
            ..Options::default()
        };
        let err = download(&format!("{url}/a"), &dest, &bad)
            .unwrap_err()
            .to_string();
        let actual = sha256_hex(b"hello");
        assert!(
            err.starts_with(&format!("{url}/a: SHA-256 mismatch"))
                && err.contains(&format!("expected {wrong}"))
                && err.contains(&format!("got {actual}")),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        let refuse = |_: &Path| Err("refused\nby the check".to_string());
        let checked = Options {
            verify: Some(&refuse),
            ..Options::default()
        };
        let err = download(&format!("{url}/a"), &dest, &checked)
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("refused; by the check"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// SHA-256("abc"), FIPS 180-2 appendix B.1.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn verify_sha256_of_a_local_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc.txt");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), ABC);
        verify_sha256(&p, ABC).unwrap();
        verify_sha256(&p, &ABC.to_ascii_uppercase()).unwrap();
        // a torchvision-style prefix
        verify_sha256(&p, &ABC[..8]).unwrap();
        let wrong = format!("{}0", &ABC[..63]);
        let err = verify_sha256(&p, &wrong).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: SHA-256 mismatch: expected {wrong}, got {ABC}",
                p.display()
            )
        );
        // too short to mean anything, or not hex
        for bad in ["", "ba78", "not-a-digest"] {
            let err = verify_sha256(&p, bad).unwrap_err().to_string();
            assert!(err.contains("hex digits"), "{bad:?}: {err}");
        }
        let err = verify_sha256(&dir.path().join("missing"), ABC)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn interrupted_body_leaves_nothing() {
        use std::io::{BufRead, BufReader};
        // announces 100000 bytes, sends 10 and hangs up
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n0123456789",
                );
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("big.bin");
        let url = format!("http://{addr}/big.bin");
        let opts = Options {
            quiet: true,
            ..Options::default()
        };
        let err = download(&url, &dest, &opts).unwrap_err().to_string();
        assert!(err.starts_with(&url) && !err.contains('\n'), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn temporary_names_are_unique_per_call() {
        let dest = Path::new("/some/dir/w.pth");
        let (a, b) = (util::tmp_sibling(dest), util::tmp_sibling(dest));
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.parent(), dest.parent());
            let name = t.file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with(&format!(".w.pth.{}.", std::process::id()))
                    && name.ends_with(".tmp"),
                "{name}"
            );
        }
        // many threads downloading the same file at once: each gets its own temporary file,
        // every call succeeds and one complete file is left
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let url = format!(
            "{}/same.bin",
            test_server(vec![("/same.bin".into(), body.clone())])
        );
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("same.bin");
        let hash = sha256_hex(&body);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let opts = Options {
                        sha256: Some(&hash),
                        quiet: true,
                        ..Options::default()
                    };
                    download(&url, &dest, &opts).unwrap();
                });
            }
        });
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unsupported_scheme_names_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = "file:///nonexistent/x.gz";
        let err = download(url, &dir.path().join("x.gz"), &Options::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(url) && err.contains("https://"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
