//! Path rules of the host policy: whether a path (symlinks resolved by the given resolver) or
//! a log glob's directory lies under allowed roots, and the violation saying why not.

use std::path::{Path, PathBuf};

use super::super::{glob_base, is_under, lexical, normalise};
use super::Violation;

/// Path checks against allowed roots, with one symlink resolver.
pub(super) struct PathRule<'a> {
    pub(super) resolve: &'a dyn Fn(&Path) -> Option<PathBuf>,
}

impl PathRule<'_> {
    fn roots(&self, lists: &[&[PathBuf]]) -> Vec<PathBuf> {
        lists
            .iter()
            .flat_map(|l| l.iter())
            .filter_map(|r| normalise(r, self.resolve).ok())
            .collect()
    }

    /// A violation of `rule` unless `path` (normalised) is under one of `policy` or `file`.
    pub(super) fn check(
        &self,
        rule: &'static str,
        key: String,
        path: &Path,
        policy: &[PathBuf],
        file: &[PathBuf],
    ) -> Option<Violation> {
        let real = match normalise(path, self.resolve) {
            Ok(p) => p,
            Err(reason) => {
                return Some(Violation {
                    rule,
                    key,
                    reason: format!("{path:?} {reason}"),
                })
            }
        };
        let roots = self.roots(&[policy, file]);
        if roots.iter().any(|r| is_under(&real, r)) {
            return None;
        }
        Some(Violation {
            rule,
            key,
            reason: format!(
                "{} is not under {rule} ({}){}",
                shown(path, &real),
                listed(policy),
                if rule == "policy.restore_targets" {
                    String::new()
                } else {
                    " nor under a path of the config file's own modules".to_owned()
                }
            ),
        })
    }

    /// A log path or glob: its directory part before any glob character must lie under one
    /// of `policy` (paths the file itself reads were let through before).
    pub(super) fn log(&self, key: &str, pattern: &str, policy: &[PathBuf]) -> Option<Violation> {
        let rule = "policy.log_paths";
        if let Err(reason) = lexical(Path::new(pattern)) {
            return Some(Violation {
                rule,
                key: key.to_owned(),
                reason: format!("{pattern:?} {reason}"),
            });
        }
        let (base, _) = glob_base(pattern);
        let real = normalise(&base, self.resolve).unwrap_or(base.clone());
        if self.roots(&[policy]).iter().any(|r| is_under(&real, r)) {
            return None;
        }
        Some(Violation {
            rule,
            key: key.to_owned(),
            reason: format!(
                "{pattern:?}{} is not under {rule} ({}) nor a path the config file reads",
                if real.as_path() == Path::new(pattern) {
                    String::new()
                } else {
                    format!(" (reads below {})", real.display())
                },
                listed(policy)
            ),
        })
    }
}

fn shown(path: &Path, real: &Path) -> String {
    if path == real {
        format!("{path:?}")
    } else {
        format!("{path:?} (resolves to {real:?})")
    }
}

fn listed(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        "empty".to_owned()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
