//! Coordinator configuration (TOML): identity, data dir, NATS, topology, ingest and API settings,
//! validated so that every problem is reported at once.

pub mod api;
pub mod load;

use std::path::{Path, PathBuf};

use opsfleet_bus::{NatsConfig, TopologyConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use api::ApiConfig;
pub use load::{ConfigErrors, Problem};

/// `[ingest]`: how the event stream is consumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Most messages per consumer batch (one fold under the fleet's lock). While a commit
    /// flushes, the batches that arrive are gathered into the next commit (one flush, one
    /// ack), up to 16 of them.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Redelivery delay of an unacked message; must exceed the slowest flush.
    #[serde(default = "default_ack_wait", with = "humantime_serde")]
    pub ack_wait: std::time::Duration,
    /// Projection rows are persisted (a snapshot) at most this many commits apart; the log is
    /// the source of truth and a restart folds the entries after the snapshot.
    #[serde(default = "default_snapshot_batches")]
    pub snapshot_batches: u32,
    /// ... and at most this long apart (also at start and on a clean stop).
    #[serde(default = "default_snapshot_interval", with = "humantime_serde")]
    pub snapshot_interval: std::time::Duration,
}

fn default_batch_max() -> usize {
    1000
}
fn default_ack_wait() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}
fn default_snapshot_batches() -> u32 {
    64
}
fn default_snapshot_interval() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

impl IngestConfig {
    /// Every semantic problem as `(key, reason)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |key: &str, reason: &str| out.push((key.to_owned(), reason.to_owned()));
        if !(1..=100_000).contains(&self.batch_max) {
            push("batch_max", "must be between 1 and 100000");
        }
        if self.ack_wait < std::time::Duration::from_secs(1) {
            push("ack_wait", "must be at least 1s");
        }
        if !(1..=10_000).contains(&self.snapshot_batches) {
            push("snapshot_batches", "must be between 1 and 10000");
        }
        if self.snapshot_interval.is_zero() {
            push("snapshot_interval", "must be more than 0s");
        }
        out
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_max: default_batch_max(),
            ack_wait: default_ack_wait(),
            snapshot_batches: default_snapshot_batches(),
            snapshot_interval: default_snapshot_interval(),
        }
    }
}

/// A validated coordinator config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorConfig {
    /// Unique name; a subject token (also names the durable consumer `coord-<name>`).
    pub name: String,
    /// Deployment colour for blue/green (`blue`, `green`, ...); informational.
    pub color: String,
    pub data_dir: PathBuf,
    pub nats: NatsConfig,
    pub topology: TopologyConfig,
    pub ingest: IngestConfig,
    /// `[http]`: /healthz, /readyz and /metrics; absent = no listener.
    #[serde(default)]
    pub http: Option<crate::http::HttpConfig>,
    /// `[notify]`: notification routes; none = dry-run lines on stdout.
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// `[alerts]`: rules, dead-man factors, evaluation cadence.
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    /// `[api]`: unidentified requests (off by default) and the deadline cap.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[groups]`: active/standby groups (automatic activation and failover).
    #[serde(default)]
    pub groups: crate::groups::GroupsConfig,
    /// `[console]`: the web console on the `[http]` listener; absent = no console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<crate::console::ConsoleConfig>,
    /// `[[drills]]`: drills the active coordinator runs on a schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<crate::drills::DrillConfig>,
}

impl CoordinatorConfig {
    /// Reads and validates `file`, collecting every problem.
    pub fn load(file: &Path) -> Result<Self, ConfigErrors> {
        load::load(file)
    }

    /// sha256 of the canonical JSON form, hex: identifies a config across hosts.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let (_d, path) = write("name = \"blue\"\ndata_dir = \"/var/lib/x\"\n");
        let cfg = CoordinatorConfig::load(&path).unwrap();
        assert_eq!(cfg.color, "blue");
        assert_eq!(cfg.ingest.batch_max, 1000);
        assert_eq!(cfg.topology.replicas, 1);
        assert_eq!(cfg.fingerprint().len(), 64);
    }

    #[test]
    fn every_problem_is_reported_with_file_line_and_key() {
        let text = "\
name = \"blue.1\"
data_dir = \"/x\"
colour = \"blue\"

[nats]
urls = []

[topology]
replicas = 9

[ingest]
batch_max = 0
ack_wait = \"soon\"
";
        let (_d, path) = write(text);
        let err = CoordinatorConfig::load(&path).unwrap_err();
        let report = err.report();
        let lines: Vec<&str> = report.lines().collect();
        let file = path.display().to_string();
        assert!(
            lines.contains(
                &format!(
                    "{file}:1: name: character '.' not allowed; use letters, digits, '-' and '_'"
                )
                .as_str()
            ),
            "{report}"
        );
        assert!(
            lines.contains(&format!("{file}:3: colour: unknown key").as_str()),
            "{report}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}:6: nats.urls:"))),
            "{report}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}:9: topology.replicas:"))),
            "{report}"
        );
        // ingest fails to deserialise (bad duration) and is reported once, at the bad value.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}:13: ingest.ack_wait:"))
                    && l.contains("duration")),
            "{report}"
        );
        assert_eq!(lines.len(), 5, "{report}");
    }

    #[test]
    fn unknown_field_in_a_section_points_at_its_line() {
        let (_d, path) =
            write("name = \"blue\"\ndata_dir = \"/x\"\n[ingest]\nbatch_max = 5\nbatchmax = 5\n");
        let err = CoordinatorConfig::load(&path).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{}", err.report());
        assert_eq!(err.problems[0].key, "ingest.batchmax");
        assert_eq!(err.problems[0].line, Some(5));
    }

    #[test]
    fn sub_tables_need_no_parent_header_and_keep_their_lines() {
        let text = "\
name = \"blue\"
data_dir = \"/x\"

[alerts.rules.disk_crit]
for = \"1m\"

[[notify.routes]]
name = \"hook\"
kind = \"webhook\"
url = \"http://127.0.0.1:9/alerts\"

[[notify.routes]]
name = \"bad\"
kind = \"pager\"
";
        let (_d, path) = write(text);
        let err = CoordinatorConfig::load(&path).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{}", err.report());
        assert!(
            err.problems[0].key.starts_with("notify"),
            "{}",
            err.report()
        );
        assert!(
            err.problems[0].line.is_some_and(|l| l >= 7),
            "{}",
            err.report()
        );
        let (_d, path) =
            write(&text.replace("\"pager\"", "\"webhook\"\nurl = \"http://127.0.0.1:9/b\""));
        let cfg =
            CoordinatorConfig::load(&path).expect("valid without [alerts] and [notify] lines");
        assert_eq!(cfg.name, "blue");
    }

    #[test]
    fn missing_required_keys_and_syntax_errors_are_reported() {
        let (_d, path) = write("color = \"green\"\n");
        let err = CoordinatorConfig::load(&path).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["name", "data_dir"]);

        let (_d, path) = write("name = \n");
        let err = CoordinatorConfig::load(&path).unwrap_err();
        assert_eq!(err.problems[0].key, "(syntax)");
        assert_eq!(err.problems[0].line, Some(1));
    }

    #[test]
    fn api_section_is_validated_and_defaults_to_identified_only() {
        let (_d, path) = write("name = \"blue\"\ndata_dir = \"/x\"\n");
        let cfg = CoordinatorConfig::load(&path).unwrap();
        assert!(!cfg.api.allow_unidentified);
        let (_d, path) = write(
            "name = \"blue\"\ndata_dir = \"/x\"\n[api]\nallow_unidentified = true\n\
             max_deadline = \"1h\"\n",
        );
        let cfg = CoordinatorConfig::load(&path).unwrap();
        assert!(cfg.api.allow_unidentified);
        assert_eq!(cfg.api.max_deadline, std::time::Duration::from_secs(3600));
        let (_d, path) = write(
            "name = \"blue\"\ndata_dir = \"/x\"\n[api]\nmax_deadline = \"3d\"\nopen = true\n",
        );
        let err = CoordinatorConfig::load(&path).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["api.open"], "{}", err.report());
        let (_d, path) =
            write("name = \"blue\"\ndata_dir = \"/x\"\n[api]\nmax_deadline = \"3d\"\n");
        let err = CoordinatorConfig::load(&path).unwrap_err();
        assert_eq!(err.problems[0].key, "api.max_deadline", "{}", err.report());
        assert_eq!(err.problems[0].line, Some(4), "{}", err.report());
    }

    #[test]
    fn console_problems_are_reported_with_the_rest() {
        let (dir, path) = write("");
        let users = dir.path().join("users.toml");
        std::fs::write(&users, "[[user]]\nname = \"a b\"\nrole = \"root\"\n").unwrap();
        let text = format!(
            "name = \"blue\"\ndata_dir = \"/x\"\n[console]\nusers_file = {:?}\n\
             [http]\nlisten = \"0.0.0.0:9465\"\n",
            users.display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        let err = CoordinatorConfig::load(&path).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["console.insecure_http", "console.users_file"],
            "{}",
            err.report()
        );
        assert!(err.report().contains("user[0]"), "{}", err.report());
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            format!(
                "[[user]]\nname = \"vic\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        let text = format!(
            "name = \"blue\"\ndata_dir = \"/x\"\n[console]\nusers_file = {:?}\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            good.display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        let cfg = CoordinatorConfig::load(&path).unwrap();
        assert!(cfg.console.is_some());
        std::fs::write(
            &path,
            "name = \"blue\"\ndata_dir = \"/x\"\n[console]\nusers_file = \"u\"\n",
        )
        .unwrap();
        let err = CoordinatorConfig::load(&path).unwrap_err();
        assert!(
            err.report().contains("needs an [http] listener"),
            "{}",
            err.report()
        );
    }

    #[test]
    fn drills_are_loaded_and_every_problem_of_every_entry_is_reported() {
        let text = "\
name = \"blue\"
data_dir = \"/x\"

[[drills]]
name = \"notify\"
kind = \"notification_test\"
every = \"7d\"
jitter = \"6h\"

[[drills]]
name = \"restore\"
kind = \"restore_test\"
every = \"1s\"
jitter = \"2s\"

[[drills]]
name = \"app\"
kind = \"app_failover\"
every = \"30d\"
";
        let (_d, path) = write(text);
        let err = CoordinatorConfig::load(&path).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "drills[1].hosts",
                "drills[1].job",
                "drills[1].jitter",
                "drills[2].group"
            ],
            "{}",
            err.report()
        );
        assert!(
            err.report()
                .contains("restore_test needs the backup job to test"),
            "{}",
            err.report()
        );
        let (_d, path) = write(
            &text
                .replace(
                    "kind = \"app_failover\"\n",
                    "kind = \"app_failover\"\ngroup = \"router\"\n",
                )
                .replace(
                    "kind = \"restore_test\"\n",
                    "kind = \"restore_test\"\nhosts = [\"db-*\"]\njob = \"nightly\"\nlabels = { role = \"db\" }\n",
                )
                .replace("jitter = \"2s\"", "jitter = \"0s\""),
        );
        let cfg = CoordinatorConfig::load(&path).expect("valid drills");
        assert_eq!(cfg.drills.len(), 3);
        assert_eq!(
            cfg.drills[0].jitter,
            std::time::Duration::from_secs(6 * 3600)
        );
        assert!(cfg.drills.iter().all(|d| d.enabled));
        let restore = &cfg.drills[1];
        assert_eq!(
            (restore.hosts.as_slice(), restore.job.as_deref()),
            (&["db-*".to_owned()][..], Some("nightly"))
        );
        assert_eq!(restore.labels.get("role").map(String::as_str), Some("db"));
    }

    #[test]
    fn http_tls_needs_cert_and_key() {
        let (_d, path) = write(
            "name = \"blue\"\ndata_dir = \"/tmp/x\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             tls_key = \"k.pem\"\n",
        );
        let err = CoordinatorConfig::load(&path).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["http.tls_cert"]);
    }

    #[test]
    fn a_metrics_token_file_must_hold_a_token() {
        let (_d, path) = write(
            "name = \"blue\"\ndata_dir = \"/tmp/x\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             metrics_token_file = \"/nonexistent/opsfleet-metrics.token\"\n",
        );
        let err = CoordinatorConfig::load(&path).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["http.metrics_token_file"], "{}", err.report());
    }
}
