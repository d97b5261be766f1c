//! `type = "sentinel"` module config: files whose mtime must stay younger than a max age.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `type = "sentinel"`: freshness of files a job touches when it succeeds (e.g. a backup's
/// "last ok" marker). Each path is fresh, stale or missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// Instance name; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_sentinel_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Absolute file paths.
    pub paths: Vec<PathBuf>,
    /// A file whose mtime is older than this is stale.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_name() -> Option<String> {
    None
}
fn default_sentinel_interval() -> Duration {
    Duration::from_secs(60)
}

impl SentinelConfig {
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.paths.is_empty() {
            out.push(("paths".to_owned(), "at least one path is needed".to_owned()));
        }
        for (i, p) in self.paths.iter().enumerate() {
            if !p.is_absolute() {
                out.push((format!("paths[{i}]"), format!("must be absolute: {p:?}")));
            }
        }
        if self.max_age.is_zero() {
            out.push(("max_age".to_owned(), "must be greater than 0".to_owned()));
        }
        out
    }
}
