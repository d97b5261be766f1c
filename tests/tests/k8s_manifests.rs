//! Kubernetes and image build assets beyond their cross-references (those are in
//! `deploy_assets.rs`): the Dockerfile's toolchain is the workspace's real minimum Rust,
//! `.dockerignore` keeps build output and secrets out of the context.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::repo_root;

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `1.89` / `1.89.0` → (1, 89, 0).
fn version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// The workspace's `rust-version` is the highest `rust-version` of any package built for Linux
/// (from `cargo metadata`, so a dependency bump that raises it fails here), and the Dockerfile
/// builds with exactly that toolchain.
#[test]
fn rust_version_is_the_locked_minimum_and_the_dockerfile_uses_it() -> Result<()> {
    let root = repo_root();
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(&root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let resolved: std::collections::BTreeSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .context("no resolve graph")?
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let workspace: std::collections::BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .context("no workspace members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut highest = ((0, 0, 0), String::new());
    for p in meta["packages"].as_array().context("no packages")? {
        let id = p["id"].as_str().unwrap_or_default();
        if !resolved.contains(id) || workspace.contains(id) {
            continue;
        }
        if let Some(rv) = p["rust_version"].as_str() {
            let v = version(rv).with_context(|| format!("{id}: rust_version {rv}"))?;
            if v > highest.0 {
                highest = (v, format!("{} {}", p["name"], p["version"]));
            }
        }
    }
    let (want, by) = highest;
    let cargo_toml: toml::Value = toml::from_str(&read(&root.join("Cargo.toml"))?)?;
    let declared = cargo_toml["workspace"]["package"]["rust-version"]
        .as_str()
        .context("no workspace rust-version")?;
    ensure!(
        version(declared) == Some(want),
        "Cargo.toml rust-version {declared}, but {by} needs {want:?}"
    );
    let dockerfile = read(&root.join("deploy/docker/Dockerfile"))?;
    let from = format!("FROM rust:{declared}-");
    ensure!(
        dockerfile.lines().any(|l| l.starts_with(&from)),
        "deploy/docker/Dockerfile does not build with rust:{declared}"
    );
    Ok(())
}

#[test]
fn dockerignore_keeps_build_output_and_secrets_out() -> Result<()> {
    let text = read(&repo_root().join(".dockerignore"))?;
    let entries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for want in ["target", "deploy/secrets", ".cluster", ".tools", ".git"] {
        ensure!(entries.contains(&want), ".dockerignore lacks {want}");
    }
    Ok(())
}
