//! Records the git commit the binary is built from (`sptune --version`: `0.1.0 (abc1234)`),
//! with `-dirty` when the working tree had uncommitted changes; `SPTUNE_GIT_HASH` in the
//! environment overrides it (a build outside a git checkout: "unknown" otherwise).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SPTUNE_GIT_HASH");
    // a new commit or a checkout changes HEAD or the ref it points to
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
        println!("cargo:rerun-if-changed={dir}/index");
    }
    let hash = std::env::var("SPTUNE_GIT_HASH")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            let h = git(&["rev-parse", "--short", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{h}-dirty") } else { h })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SPTUNE_GIT_HASH={hash}");
}
