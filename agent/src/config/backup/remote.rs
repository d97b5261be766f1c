//! `[modules.jobs.remote]`: where a backup job's archives are copied after each run (a second
//! local path such as a mounted NAS), how often local and remote are reconciled, and its
//! semantic checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Kind of remote destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteKind {
    /// A second directory (e.g. a mounted NAS): archives are copied there and read back.
    Path,
}

/// `[modules.jobs.remote]`: a copy of every archive off the job's destination.
///
/// ```toml
/// [modules.jobs.remote]
/// type = "path"
/// path = "/mnt/nas/backups/app"
/// reconcile_every = "1h"
/// ```
///
/// After each successful run the new archive, then its manifest, are copied (a hidden
/// `.partial` file renamed into place) and read back: size and sha256 must equal the
/// manifest's. Complete local archives the remote lacks (an earlier copy failed) are copied
/// too. The job's retention (`keep_days`, `keep_count`) is then applied to the remote copies.
/// Every `reconcile_every` the agent compares both sides (`backup_discrepancy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    #[serde(rename = "type")]
    pub kind: RemoteKind,
    /// `type = "path"`: absolute directory receiving the copies (created if missing).
    pub path: PathBuf,
    /// Time between two reconciliations of local and remote archives.
    #[serde(default = "default_reconcile_every", with = "humantime_serde")]
    pub reconcile_every: Duration,
}

fn default_reconcile_every() -> Duration {
    Duration::from_secs(3600)
}

impl RemoteConfig {
    /// Short description for events and logs (never a credential): `path:/mnt/nas/app`.
    pub fn label(&self) -> String {
        match self.kind {
            RemoteKind::Path => format!("path:{}", self.path.display()),
        }
    }

    /// Problems with keys relative to `remote`, given the job's destination and sources.
    pub(super) fn problems(
        &self,
        destination: &std::path::Path,
        sources: &[PathBuf],
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let p = &self.path;
        if !p.is_absolute() {
            out.push(("path".into(), format!("must be an absolute path: {p:?}")));
        } else {
            if destination.is_absolute()
                && (p.starts_with(destination) || destination.starts_with(p))
            {
                out.push((
                    "path".into(),
                    format!(
                        "{p:?} and the destination {destination:?} contain one another; the copy must be elsewhere"
                    ),
                ));
            }
            for (i, s) in sources.iter().enumerate() {
                if s.is_absolute() && p.starts_with(s) {
                    out.push((
                        "path".into(),
                        format!("is inside sources[{i}] ({s:?}); a run would archive its copies"),
                    ));
                }
            }
        }
        if self.reconcile_every.is_zero() {
            out.push(("reconcile_every".into(), "must be greater than 0".into()));
        }
        out
    }
}
