//! One error type for the library; every variant renders as a single line that names the
//! offending file, tensor or value.

use std::path::PathBuf;

/// Everything that can go wrong in sptune.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    // The I/O error is part of the message and deliberately not the `source`: a front end
    // that prints the whole chain would print it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A file exists but its content is not what its format requires.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A user-supplied value is out of range or inconsistent.
    #[error("invalid value for {what}: {msg}")]
    Invalid {
        /// The option or value.
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// A checkpoint does not fit the model it is loaded into.
    #[error("{path}: {msg}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What does not fit.
        msg: String,
    },
    /// Training produced a non-finite value.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
    /// A format error in `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    /// An invalid value for option/value `what`.
    pub fn invalid(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            msg: msg.into(),
        }
    }
}
