//! Small shared helpers.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Writes a file atomically: the bytes go to a temporary sibling which is renamed over
/// `path` only once fully written, so a failure never leaves a half-written output. An
/// existing `path` that is not a regular file (a device, FIFO, socket or directory) is never
/// replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    refuse_special(path)?;
    let tmp = tmp_sibling(path);
    // written in full before it replaces `path`; on any error (a full disk, EIO) the
    // temporary file is removed and `path` keeps its last complete content
    let written = std::fs::write(&tmp, bytes);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Errors when `path` exists and is not a regular file (symbolic links followed).
fn refuse_special(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::invalid(
            "output",
            format!("{} is a directory", path.display()),
        )),
        Ok(m) if !m.is_file() => Err(Error::invalid(
            "output",
            format!(
                "{} is not a regular file (a device, FIFO or socket); sptune never replaces one",
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether `a` and `b` name the same existing file (same device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Whether `path` (existing or not) lies inside the existing folder `dir`, symbolic links
/// resolved: its nearest existing ancestor, resolved, with the rest of `path` appended, starts
/// with `dir` resolved. `..` components in the part that does not exist yet are not resolved.
pub fn inside(path: &Path, dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let mut rest = Vec::new();
    let mut at = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => return false,
        }
    };
    loop {
        if let Ok(real) = at.canonicalize() {
            let full = rest.iter().rev().fold(real, |p: PathBuf, c| p.join(c));
            return full.starts_with(&dir);
        }
        match (at.file_name().map(|n| n.to_os_string()), at.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                at = parent.to_path_buf();
            }
            _ => return false,
        }
    }
}

/// The one rule of every command that writes: an output is never one of the inputs it reads.
/// `inputs` holds files and folders: an output file that is the same file as an input file
/// (device and inode, so another spelling, a hard link or a symbolic link is seen through), or
/// that lies inside an input data folder where the data would read it
/// ([`crate::data::would_read`]: an image, an IDX file, `classes.txt`), is refused with an
/// error naming both.
pub fn refuse_input(path: &Path, inputs: &[&Path]) -> Result<()> {
    refuse_input_as(path, inputs, false)
}

/// [`refuse_input`] for an output folder (a run or study directory): also refused inside an
/// ImageFolder data folder, where it would be read as a class.
pub fn refuse_input_dir(path: &Path, inputs: &[&Path]) -> Result<()> {
    refuse_input_as(path, inputs, true)
}

fn refuse_input_as(path: &Path, inputs: &[&Path], is_dir: bool) -> Result<()> {
    for i in inputs {
        if i.is_dir() {
            if inside(path, i) && crate::data::would_read(i, path, is_dir) {
                return Err(Error::invalid(
                    "--out",
                    format!(
                        "{} lies inside {}, a data folder this command reads, which would \
                         read it; write it elsewhere",
                        path.display(),
                        i.display()
                    ),
                ));
            }
        } else if same_file(path, i) {
            return Err(Error::invalid(
                "--out",
                format!(
                    "{} is also the input {}; write the result elsewhere",
                    path.display(),
                    i.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks an output file before any work starts, so a bad path never wastes a run: it is not
/// a directory or a special file, not one of `inputs` nor inside an input folder
/// ([`refuse_input`]), and its nearest existing folder is a folder where a file can be created
/// (probed with an empty file, removed at once).
pub fn check_output(path: &Path, inputs: &[&Path]) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid("--out", "an empty path"));
    }
    refuse_special(path).map_err(|e| match e {
        Error::Invalid { msg, .. } => Error::invalid("--out", msg),
        e => e,
    })?;
    refuse_input(path, inputs)?;
    let mut folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    while !folder.exists() {
        match folder.parent() {
            Some(p) if !p.as_os_str().is_empty() => folder = p.to_path_buf(),
            _ => {
                folder = PathBuf::from(".");
                break;
            }
        }
    }
    if !folder.is_dir() {
        return Err(Error::invalid(
            "--out",
            format!(
                "{}: {} is not a directory",
                path.display(),
                folder.display()
            ),
        ));
    }
    let probe = folder.join(format!(".sptune-probe.{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::invalid(
            "--out",
            format!(
                "{}: cannot create files in {}: {e}",
                path.display(),
                folder.display()
            ),
        )),
    }
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

/// `msg` on one line: control characters (a newline or carriage return that a parser quotes
/// back from the input, say) escaped as Rust escapes them (`\n`, `\r`, `\u{1b}`); everything
/// else kept. For messages that echo what a file holds.
pub fn escape_controls(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `e` with the messages of a format, checkpoint or value error passed through
/// [`escape_controls`]: for readers whose messages quote names and values from the file (tensor
/// names, pickle globals), so that the error stays one line.
pub fn one_line_error(e: Error) -> Error {
    match e {
        Error::Format { path, msg } => Error::Format {
            path,
            msg: escape_controls(&msg),
        },
        Error::Checkpoint { path, msg } => Error::Checkpoint {
            path,
            msg: escape_controls(&msg),
        },
        Error::Invalid { what, msg } => Error::Invalid {
            what: escape_controls(&what),
            msg: escape_controls(&msg),
        },
        e => e,
    }
}

/// Largest checkpoint file read whole (safetensors, Fisher files): 16 GiB.
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;
/// Largest image file read (PNG/JPEG): 256 MiB; its pixels are bounded separately by
/// [`crate::runtime::max_pixels`].
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;
/// Largest text file read (TOML configs and study files): 16 MiB.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

/// Opens an input file for reading after checking that it is a regular file (not a device
/// such as `/dev/zero`, a FIFO or a directory, which could be read without end) of at most
/// `max_bytes` bytes; returns the file and its length. The check is made on the opened handle,
/// so the file checked is the file read.
pub fn open_input(path: &Path, max_bytes: u64) -> Result<(std::fs::File, u64)> {
    // a FIFO would block in open itself: refuse what is visibly not a regular file first
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    if meta.len() > max_bytes {
        return Err(Error::format(
            path,
            format!(
                "file is {} bytes, over the limit of {max_bytes} bytes for this kind of input",
                meta.len()
            ),
        ));
    }
    Ok((file, meta.len()))
}

fn not_regular(path: &Path, meta: &std::fs::Metadata) -> Error {
    if meta.is_dir() {
        // what reading a directory reports: "Is a directory (os error 21)"
        #[cfg(unix)]
        return Error::io(path, std::io::Error::from_raw_os_error(libc::EISDIR));
        #[cfg(not(unix))]
        return Error::io(path, std::io::ErrorKind::IsADirectory.into());
    }
    Error::format(
        path,
        "is not a regular file (a device, FIFO or socket); inputs must be regular files",
    )
}

/// The whole content of the input file `path`: a regular file of at most `max_bytes` bytes
/// (see [`open_input`]). At most `max_bytes` are read even if the file grows meanwhile.
pub fn read_input(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let (file, len) = open_input(path, max_bytes)?;
    let mut out = Vec::with_capacity(len as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::io(path, e))?;
    if out.len() as u64 > max_bytes {
        return Err(Error::format(
            path,
            format!("file grew past the limit of {max_bytes} bytes while being read"),
        ));
    }
    Ok(out)
}

/// [`read_input`] as UTF-8 text, at most [`MAX_TEXT_BYTES`].
pub fn read_input_text(path: &Path) -> Result<String> {
    let bytes = read_input(path, MAX_TEXT_BYTES)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}
