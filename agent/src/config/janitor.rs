//! `type = "janitor"`: the janitor module's config (roots, age threshold, include globs,
//! dry run) and its semantic checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::default_name;

/// `type = "janitor"`: age-based pruning of files and empty directories under roots.
///
/// ```toml
/// [[modules]]
/// type = "janitor"
/// interval = "1h"
/// [[modules.roots]]
/// path = "/var/tmp/app-runs"
/// older_than = "7d"
/// include = ["*.log", "runs/**/*.tmp"]
/// dry_run = false
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JanitorConfig {
    /// Instance name; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_janitor_interval", with = "humantime_serde")]
    pub interval: Duration,
    pub roots: Vec<JanitorRootConfig>,
    /// How many removed paths a `janitor` event lists.
    #[serde(default = "default_sample_size")]
    pub sample_size: usize,
}

fn default_janitor_interval() -> Duration {
    Duration::from_secs(3600)
}
fn default_sample_size() -> usize {
    10
}

/// One `[[modules.roots]]` entry.
///
/// A file (or symlink, judged by its own mtime; its target is never touched) is removed when
/// its mtime is older than `older_than` and it matches `include` (when given). A directory is
/// removed when `remove_empty_dirs` is set, its mtime (read before this pass touched it) is
/// older than `older_than`, and it is empty once this pass is done. The root itself is never
/// removed, symlinks are never followed, and nothing outside the canonicalized root is touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JanitorRootConfig {
    /// Absolute directory; not `/`.
    pub path: PathBuf,
    /// Minimum age, e.g. `"7d"`, `"12h"`.
    #[serde(default = "default_older_than", with = "humantime_serde")]
    pub older_than: Duration,
    /// Glob patterns; empty means every file. A pattern without `/` matches the file name, one
    /// with `/` the path relative to the root.
    #[serde(default = "default_include")]
    pub include: Vec<String>,
    /// Report what would be removed, remove nothing.
    #[serde(default = "default_dry_run")]
    pub dry_run: bool,
    #[serde(default = "default_remove_empty_dirs")]
    pub remove_empty_dirs: bool,
}

fn default_older_than() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_include() -> Vec<String> {
    Vec::new()
}
fn default_dry_run() -> bool {
    false
}
fn default_remove_empty_dirs() -> bool {
    true
}

impl JanitorConfig {
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.roots.is_empty() {
            out.push(("roots".to_owned(), "at least one root is needed".to_owned()));
        }
        for (i, root) in self.roots.iter().enumerate() {
            let prefix = format!("roots[{i}]");
            if !root.path.is_absolute() {
                out.push((
                    format!("{prefix}.path"),
                    format!("must be an absolute path: {:?}", root.path),
                ));
            } else if root.path.parent().is_none() || root.path == Path::new("/") {
                out.push((
                    format!("{prefix}.path"),
                    "must not be the file system root".to_owned(),
                ));
            }
            if root.older_than.is_zero() {
                out.push((
                    format!("{prefix}.older_than"),
                    "must be greater than 0".to_owned(),
                ));
            }
            for (j, pat) in root.include.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(pat) {
                    out.push((
                        format!("{prefix}.include[{j}]"),
                        format!("bad glob {pat:?}: {e}"),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_str, ModuleConfig};
    use std::time::Duration;

    const HEAD: &str = "host = \"web-01\"\n[[modules]]\ntype = \"janitor\"\n";

    #[test]
    fn a_root_parses_with_defaults() {
        let text =
            format!("{HEAD}[[modules.roots]]\npath = \"/var/tmp/runs\"\nolder_than = \"3d\"\n");
        let cfg = parse_str(&text).expect("valid");
        let ModuleConfig::Janitor(j) = &cfg.modules[0] else {
            panic!("janitor")
        };
        assert_eq!(j.interval, Duration::from_secs(3600));
        assert_eq!(j.sample_size, 10);
        let r = &j.roots[0];
        assert_eq!(r.older_than, Duration::from_secs(3 * 86_400));
        assert!(!r.dry_run && r.remove_empty_dirs && r.include.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = format!(
            "{HEAD}[[modules.roots]]\npath = \"/\"\nolder_than = \"0s\"\ninclude = [\"ok*\", \"[bad\"]\n[[modules.roots]]\npath = \"relative\"\n"
        );
        let problems = parse_str(&text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "modules[0].roots[0].path",
                "modules[0].roots[0].older_than",
                "modules[0].roots[0].include[1]",
                "modules[0].roots[1].path",
            ],
            "{problems:#?}"
        );
        let problems = parse_str(&format!("{HEAD}roots = []\n")).expect_err("invalid");
        assert_eq!(problems[0].key, "modules[0].roots");
    }
}
