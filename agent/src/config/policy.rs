//! `[policy]`: what a REMOTE change may do on this host (config apply / rollback commands, the
//! admin HTTP routes, restore commands). It lives only in the agent's own config file; no
//! command or admin route can change it. Defaults are the safe ones: no kind change, no new
//! command probes, no new paths beyond those the file already uses, no remote restore.
//!
//! This file owns the section, its checks and path normalisation; `check` owns the decisions
//! about one remote module config or restore target (`HostPolicy`).

mod check;

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use check::{fs_resolve, HostPolicy, Surface, Violation};

/// `[policy]` of the agent config. Every list holds absolute paths (prefixes): a remote path
/// is allowed when, normalised, it is one of them or lies below one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A remote config may give a module another kind (`type`) than the file gives it.
    /// Never over the admin HTTP routes.
    #[serde(default)]
    pub allow_kind_change: bool,
    /// A remote config may carry `command` health probes other than those the file already
    /// has (same argv). Never over the admin HTTP routes.
    #[serde(default)]
    pub allow_command_probes: bool,
    /// Where remote `log` configs may read (besides the file's own log paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_paths: Vec<PathBuf>,
    /// Where remote `janitor` configs may delete (besides the file's own roots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub janitor_roots: Vec<PathBuf>,
    /// What remote `backup` configs may archive (besides the file's own sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_sources: Vec<PathBuf>,
    /// Where remote `backup` configs may write archives (besides the file's own destinations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_destinations: Vec<PathBuf>,
    /// Where `restore` commands may write. Empty: no remote restore at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_targets: Vec<PathBuf>,
}

/// The path lists of `[policy]`, as `(key, paths)`.
fn lists(p: &PolicyConfig) -> [(&'static str, &[PathBuf]); 5] {
    [
        ("log_paths", &p.log_paths),
        ("janitor_roots", &p.janitor_roots),
        ("backup_sources", &p.backup_sources),
        ("backup_destinations", &p.backup_destinations),
        ("restore_targets", &p.restore_targets),
    ]
}

impl PolicyConfig {
    /// Whether this is the default (then it is left out of the canonical form, so the
    /// fingerprint of a file without `[policy]` does not change).
    pub fn is_default(&self) -> bool {
        *self == PolicyConfig::default()
    }

    /// Problems as `(key, reason)`, keys relative to `[policy]` (`restore_targets[0]`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, paths) in lists(self) {
            for (i, p) in paths.iter().enumerate() {
                if let Err(reason) = lexical(p) {
                    out.push((format!("{key}[{i}]"), reason));
                }
            }
        }
        out
    }
}

/// `path` without `.` components, if it is absolute and has no `..` (which could climb out of
/// an allowed directory once symlinks are involved); else why not. Pure.
pub fn lexical(path: &Path) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err("must be an absolute path".to_owned());
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => return Err("must not contain `..`".to_owned()),
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `path` made absolute-canonical: lexical checks, then the longest existing ancestor is
/// resolved through `resolve` (symlinks followed; `None` = does not exist) and the rest is
/// appended. Pure given `resolve`.
pub fn normalise(
    path: &Path,
    resolve: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    let clean = lexical(path)?;
    let mut existing = clean.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        if let Some(real) = resolve(existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return Ok(out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            // The root itself did not resolve: nothing exists, keep the lexical form.
            _ => return Ok(clean),
        }
    }
}

/// Whether `path` is `root` or lies below it (component-wise, both normalised). Pure.
pub fn is_under(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// The directory part of a log path or glob before its first component holding a glob
/// character (`*`, `?`, `[`), and whether anything followed. Pure.
pub fn glob_base(pattern: &str) -> (PathBuf, bool) {
    let mut base = PathBuf::new();
    let mut globbed = false;
    for c in Path::new(pattern).components() {
        let text = c.as_os_str().to_string_lossy();
        if globbed || text.contains(['*', '?', '[']) {
            globbed = true;
            continue;
        }
        base.push(c);
    }
    (base, globbed)
}

#[cfg(test)]
mod tests;
