//! Small shared helpers.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Writes a file atomically: the bytes go to a temporary sibling which is renamed over
/// `path` only once fully written, so a failure never leaves a half-written output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_sibling(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// `dir/.name.PID.N.tmp` beside `path`: unique per process (the pid) and per call (`N`, a
/// process-wide counter), so concurrent writers of the same file, in one process or several,
/// never share a temporary file.
pub fn tmp_sibling(path: &Path) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// An option with a fixed set of values (`--reg`, `--bn`, ...): one list of variants, one
/// spelling each. The spelling is also the serde name (kebab-case) and, with the `clap` feature,
/// clap's `ValueEnum` name; a test checks that the three agree.
pub trait Choice: Sized + Copy + 'static {
    /// Every value, in the order help texts list them.
    const ALL: &'static [Self];
    /// The spelling of one value.
    fn name(self) -> &'static str;
    /// Parses a spelling; the error names the option `what` and lists the allowed values.
    fn parse_for(what: &str, s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let list: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                Error::invalid(what, format!("{s:?}; expected one of {}", list.join(", ")))
            })
    }
}
