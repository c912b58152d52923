//! Helpers shared by the CLI's integration tests: the binary under test, one run of it, and a
//! path as an argument.

#![allow(dead_code)] // not every test file uses every helper

use std::path::Path;
use std::process::Command;

/// The `sptune` binary, quiet (no progress bars).
pub fn sptune() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sptune"));
    c.arg("--quiet");
    c
}

/// What one run printed and returned.
pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub stdout: String,
}

/// `sptune ARGS`, waited for.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let o = sptune().args(args).output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
    }
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
