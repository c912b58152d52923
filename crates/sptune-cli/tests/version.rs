//! `sptune --version` names the package version and the git commit it was built from (the
//! commit is read here with git itself, as the build script read it).

use std::process::Command;

#[test]
fn version_names_the_version_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_sptune"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("sptune {} (", env!("CARGO_PKG_VERSION"));
    assert!(
        text.starts_with(&want),
        "{text:?} should start with {want:?}"
    );
    if std::env::var("SPTUNE_GIT_HASH").is_ok_and(|h| !h.is_empty()) {
        return; // a build told its commit from outside
    }
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match git {
        Ok(g) if g.status.success() => {
            let hash = String::from_utf8_lossy(&g.stdout).trim().to_string();
            assert!(
                text.contains(&format!("({hash})")) || text.contains(&format!("({hash}-dirty)")),
                "{text:?} should name commit {hash}"
            );
        }
        // not a git checkout: the build could not know its commit either
        _ => assert!(text.contains("(unknown)"), "{text:?}"),
    }
}
