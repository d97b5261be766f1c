//! Helpers of `k8s_manifests.rs`: the kustomization rendered, `kubernetes-validate` found or
//! installed into .tools/venv, Kubernetes quantities and NATS config values.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use opsfleet_tests::secure::repo_root;
use serde::Deserialize as _;
use serde_yaml_ng::Value;

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `1.89` / `1.89.0` → (1, 89, 0).
pub fn version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

pub fn k8s_dir() -> PathBuf {
    repo_root().join("deploy/k8s")
}

/// The files the kustomization lists.
pub fn kustomize_resources() -> Result<Vec<PathBuf>> {
    let k: Value = serde_yaml_ng::from_str(&read(&k8s_dir().join("kustomization.yaml"))?)?;
    k["resources"]
        .as_sequence()
        .context("kustomization has no resources")?
        .iter()
        .map(|r| Ok(k8s_dir().join(r.as_str().context("resource is not a string")?)))
        .collect()
}

/// Every document of the kustomization: `kubectl kustomize` when kubectl is installed (so
/// `images:` and the rest are applied), else the listed files as they are.
pub fn rendered_docs() -> Result<(String, Vec<Value>)> {
    let text = match Command::new("kubectl")
        .args(["kustomize"])
        .arg(k8s_dir())
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout)?,
        Ok(out) => bail!(
            "kubectl kustomize deploy/k8s failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            eprintln!("k8s_manifests: no kubectl; reading the kustomization's files directly");
            let mut all = String::new();
            for f in kustomize_resources()? {
                all.push_str(&read(&f)?);
                all.push_str("\n---\n");
            }
            all
        }
    };
    let mut docs = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = Value::deserialize(d).context("rendered manifests do not parse")?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok((text, docs))
}

/// `kubernetes-validate`: on PATH, in .tools/venv, or installed there now
/// (`python3 -m venv` + pip). None (with a visible message) when it cannot be installed.
pub fn kubernetes_validate() -> Result<Option<PathBuf>> {
    let venv = repo_root().join(".tools/venv");
    let bin = venv.join("bin/kubernetes-validate");
    if bin.is_file() {
        return Ok(Some(bin));
    }
    if Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(Some(PathBuf::from("kubernetes-validate")));
    }
    if !venv.join("bin/pip").is_file() {
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            other => {
                eprintln!(
                    "SKIP kubernetes-validate: cannot create {}: {other:?}",
                    venv.display()
                );
                return Ok(None);
            }
        }
    }
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "kubernetes-validate",
        ])
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .output()
        .context("cannot run pip")?;
    if !out.status.success() || !bin.is_file() {
        eprintln!(
            "SKIP kubernetes-validate: pip install failed (offline?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok(None);
    }
    Ok(Some(bin))
}

pub fn validate(
    tool: &Path,
    version: Option<&str>,
    files: &[PathBuf],
) -> Result<std::process::Output> {
    let mut cmd = Command::new(tool);
    cmd.args(["--strict", "--quiet"]);
    if let Some(v) = version {
        cmd.args(["-k", v]);
    }
    Ok(cmd.args(files).output()?)
}

pub fn kinds<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

pub fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    kinds(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))
        .with_context(|| format!("no {kind} {name}"))
}

/// Quantity like `250m`, `2`, `512Mi`, `1Gi` → base units (cores, bytes).
pub fn quantity(v: &Value) -> Result<f64> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => bail!("not a quantity: {other:?}"),
    };
    for (suffix, f) in [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("m", 0.001),
    ] {
        if let Some(n) = s.strip_suffix(suffix) {
            return Ok(n.parse::<f64>()? * f);
        }
    }
    Ok(s.parse::<f64>()?)
}

/// `8GiB`, `256MiB`, `1GB` in a NATS config → bytes.
pub fn nats_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse()?;
    let unit = match &s[digits..] {
        "" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => bail!("unknown size unit {other:?}"),
    };
    Ok(n * unit)
}

/// `key: value` in a NATS config (first occurrence, comments skipped).
pub fn nats_value<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix(':'))
        .map(str::trim)
}

pub fn seconds(s: &str) -> Result<u64> {
    s.strip_suffix('s')
        .context("durations in seconds (`30s`)")?
        .parse()
        .context("seconds")
}
