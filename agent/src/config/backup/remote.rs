//! `[modules.jobs.remote]`: where a backup job's archives are copied after each run (a second
//! local path such as a mounted NAS), how often local and remote are reconciled, and its
//! semantic checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod s3;
pub use s3::credentials_file_problem;
use s3::s3_problems;

/// Kind of remote destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteKind {
    /// A second directory (e.g. a mounted NAS): archives are copied there and read back.
    Path,
    /// An S3 bucket (AWS or an S3-compatible server through `endpoint`).
    S3,
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
    #[serde(default)]
    pub path: PathBuf,
    /// `type = "s3"`: the bucket.
    #[serde(default)]
    pub bucket: String,
    /// `type = "s3"`: key prefix of the objects (`hosts/db-01/app`), no leading `/`.
    #[serde(default)]
    pub prefix: String,
    /// `type = "s3"`: base URL of an S3-compatible server (path-style addressing); AWS when unset.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `type = "s3"`: the region (signing); `us-east-1` when unset.
    #[serde(default = "default_region")]
    pub region: String,
    /// `type = "s3"`: file holding `aws_access_key_id = …` and `aws_secret_access_key = …`
    /// (mode 0600 or stricter); else the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` env.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// `type = "s3"`: allow a plain `http://` endpoint that is not on loopback.
    #[serde(default)]
    pub allow_http: bool,
    /// Time between two reconciliations of local and remote archives.
    #[serde(default = "default_reconcile_every", with = "humantime_serde")]
    pub reconcile_every: Duration,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_reconcile_every() -> Duration {
    Duration::from_secs(3600)
}

impl RemoteConfig {
    /// Short description for events and logs (never a credential): `path:/mnt/nas/app`.
    pub fn label(&self) -> String {
        match self.kind {
            RemoteKind::Path => format!("path:{}", self.path.display()),
            RemoteKind::S3 => {
                let key = self.prefix.trim_matches('/');
                let at = self
                    .endpoint
                    .as_deref()
                    .map_or_else(String::new, |e| format!("@{}", e.trim_end_matches('/')));
                if key.is_empty() {
                    format!("s3://{}{at}", self.bucket)
                } else {
                    format!("s3://{}/{key}{at}", self.bucket)
                }
            }
        }
    }

    /// Problems with keys relative to `remote`, given the job's destination and sources.
    pub(super) fn problems(
        &self,
        destination: &std::path::Path,
        sources: &[PathBuf],
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match self.kind {
            RemoteKind::Path => self.path_problems(destination, sources, &mut out),
            RemoteKind::S3 => s3_problems(self, &mut out),
        }
        if self.reconcile_every.is_zero() {
            out.push(("reconcile_every".into(), "must be greater than 0".into()));
        }
        out
    }

    fn path_problems(
        &self,
        destination: &std::path::Path,
        sources: &[PathBuf],
        out: &mut Vec<(String, String)>,
    ) {
        let s3_only = [
            ("bucket", !self.bucket.is_empty()),
            ("prefix", !self.prefix.is_empty()),
            ("endpoint", self.endpoint.is_some()),
            ("region", self.region != default_region()),
            ("credentials_file", self.credentials_file.is_some()),
            ("allow_http", self.allow_http),
        ];
        for (k, set) in s3_only {
            if set {
                out.push((k.into(), "only for type = \"s3\"".into()));
            }
        }
        let p = &self.path;
        if p.as_os_str().is_empty() {
            out.push(("path".into(), "is required for type = \"path\"".into()));
        } else if !p.is_absolute() {
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
    }
}
