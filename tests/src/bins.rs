//! Locates the real `ops-agent`, `ops-coordinator` and `opsctl` binaries in the cargo target dir.
//!
//! Search order: `$OPSFLEET_BIN_DIR`; the profile dir of the running test executable
//! (`target/<profile>/deps/<test>` → `target/<profile>`); `$CARGO_TARGET_DIR/debug`;
//! `<workspace>/target/debug`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The agent daemon.
pub const AGENT: &str = "ops-agent";
/// The coordinator daemon.
pub const COORDINATOR: &str = "ops-coordinator";
/// The operator CLI.
pub const OPSCTL: &str = "opsctl";

/// Directories that may hold the workspace binaries, most specific first.
pub fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("OPSFLEET_BIN_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(parent) = exe.parent() {
            if parent.file_name().is_some_and(|n| n == "deps") {
                if let Some(profile_dir) = parent.parent() {
                    dirs.push(profile_dir.to_path_buf());
                }
            } else {
                dirs.push(parent.to_path_buf());
            }
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(Path::new(&target).join("debug"));
    }
    dirs.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug"),
    );
    dirs
}

/// Full path of one workspace binary, or an error telling how to build it.
pub fn bin(name: &str) -> Result<PathBuf> {
    let dirs = candidate_dirs();
    for dir in &dirs {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "binary `{name}` not found (searched {}); build them first: cargo build --workspace --bins \
         (scripts/test.sh does this)",
        searched.join(", ")
    )
}
