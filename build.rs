//! Stamps the build into the binary: `STRATIX_BUILD_VERSION` (the `VERSION` the image is
//! built for, passed as `STRATIX_VERSION`; else the crate's version) and
//! `STRATIX_BUILD_REVISION` (`STRATIX_REVISION`, else the git revision of this checkout, else
//! `unknown`: the Docker context has no `.git`, so the Dockerfile passes it).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STRATIX_VERSION");
    println!("cargo:rerun-if-env-changed=STRATIX_REVISION");
    let version = std::env::var("STRATIX_VERSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| std::env::var("CARGO_PKG_VERSION").unwrap_or_default());
    let revision = std::env::var("STRATIX_REVISION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STRATIX_BUILD_VERSION={}", version.trim());
    println!("cargo:rustc-env=STRATIX_BUILD_REVISION={}", revision.trim());
}

/// The checkout's revision (12 hex digits, `-dirty` with uncommitted changes); rebuilt when
/// the branch moves.
fn git_revision() -> Option<String> {
    let git = Path::new(".git");
    if !git.exists() {
        return None;
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed=.git/{reference}");
    }
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut rev = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    if dirty {
        rev.push_str("-dirty");
    }
    Some(rev)
}
