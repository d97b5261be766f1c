//! The toolchain the build asks for is one that can build it: `rust-version` of every
//! workspace crate and the Dockerfile's `rust:` image are at least the highest `rust-version`
//! of any locked dependency (read by `cargo metadata --locked`), and `.dockerignore` keeps the
//! build cache and generated secrets out of the image build's context.

use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use opsfleet_tests::secure::repo_root;

/// `1.89`, `1.89.0` → (1, 89, 0).
fn version(s: &str) -> Result<(u64, u64, u64)> {
    let mut parts = s.trim().split('.').map(str::parse::<u64>);
    let mut next = || parts.next().transpose().map(Option::unwrap_or_default);
    let v = (next()?, next()?, next()?);
    ensure!(v.0 > 0, "not a Rust version: {s:?}");
    Ok(v)
}

#[test]
fn declared_and_image_rust_versions_cover_the_locked_dependencies() -> Result<()> {
    let root = repo_root();
    // Only what a build for this platform compiles (the lock also lists other platforms').
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("rustc -vV")?;
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")?;
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
        ])
        .arg(&host)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata --locked failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .context("workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut needed = ((0, 0, 0), String::new());
    let mut declared = Vec::new();
    for p in meta["packages"].as_array().context("packages")? {
        let name = p["name"].as_str().unwrap_or("?");
        let rv = p["rust_version"].as_str();
        if members.contains(&p["id"].as_str().unwrap_or_default()) {
            let rv =
                rv.with_context(|| format!("workspace crate {name} declares no rust-version"))?;
            declared.push((name.to_owned(), version(rv)?));
        } else if let Some(rv) = rv {
            let v = version(rv)?;
            if v > needed.0 {
                needed = (
                    v,
                    format!("{name} {}", p["version"].as_str().unwrap_or("?")),
                );
            }
        }
    }
    ensure!(
        !declared.is_empty(),
        "no workspace crates in cargo metadata"
    );
    for (name, v) in &declared {
        ensure!(
            *v >= needed.0,
            "{name} declares rust-version {v:?}, but {} needs {:?}",
            needed.1,
            needed.0
        );
    }
    let dockerfile = root.join("deploy/docker/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile)?;
    let Some(image) = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM rust:"))
        .next()
    else {
        bail!("{} builds from no rust: image", dockerfile.display());
    };
    let tag = image.split(['-', ' ']).next().unwrap_or_default();
    ensure!(
        version(tag)? >= needed.0,
        "{} builds with rust:{tag}, but {} needs {:?}",
        dockerfile.display(),
        needed.1,
        needed.0
    );
    Ok(())
}

#[test]
fn the_image_build_context_leaves_out_the_cache_and_the_secrets() -> Result<()> {
    let path = repo_root().join(".dockerignore");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for must in ["target/", "deploy/secrets/", ".cluster/", ".tools/"] {
        ensure!(
            lines.contains(&must),
            "{} does not leave out {must}",
            path.display()
        );
    }
    Ok(())
}
