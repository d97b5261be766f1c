//! `type = "log"` module config: the files and globs to tail, the match patterns, traceback
//! grouping, excerpt cap, per-file rate limit and per-run read budget, and their checks.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `type = "log"`: tails files (and globs) and reports lines matching patterns.
///
/// ```toml
/// [[modules]]
/// type = "log"
/// paths = ["/var/log/app/*.log"]
/// [[modules.patterns]]
/// name = "oom"
/// regex = 'Out of memory: Killed process \d+'
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Instance name; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_log_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Absolute file paths or glob patterns (`*`, `?`, `[..]`, `**`).
    pub paths: Vec<String>,
    /// Checked in order; a line reports the first pattern it matches.
    #[serde(default = "default_patterns")]
    pub patterns: Vec<PatternConfig>,
    /// Where to start in files already present at the module's very first scan (no saved
    /// cursor yet). Files that appear later are always read from their start.
    #[serde(default = "default_start_at")]
    pub start_at: StartAt,
    /// Most bytes read from all files in one run; a larger backlog is read over several runs.
    #[serde(default = "default_max_bytes_per_run")]
    pub max_bytes_per_run: u64,
    /// Most bytes of matched text carried in one event (cut on a UTF-8 boundary).
    #[serde(default = "default_max_excerpt_bytes")]
    pub max_excerpt_bytes: usize,
    /// Length of the file prefix whose hash tells a reused inode or a truncated file.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// Group a Python traceback (header, indented lines, final exception line) into one event.
    #[serde(default = "default_group_tracebacks")]
    pub group_tracebacks: bool,
    /// A traceback still incomplete after this long is reported as it is.
    #[serde(default = "default_multiline_timeout", with = "humantime_serde")]
    pub multiline_timeout: Duration,
    /// Most lines in one traceback group; longer ones are cut into several events.
    #[serde(default = "default_max_group_lines")]
    pub max_group_lines: usize,
    /// Matches reported per file per `rate_window`; the rest are counted and reported in one
    /// `log_suppressed` event when the window ends. 0 = no limit.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u64,
    #[serde(default = "default_rate_window", with = "humantime_serde")]
    pub rate_window: Duration,
    /// How long a rotated-away (renamed or deleted) file is still read after its last growth.
    #[serde(default = "default_rotate_wait", with = "humantime_serde")]
    pub rotate_wait: Duration,
}

/// One `[[modules.patterns]]` entry: exactly one of `contains` and `regex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// Reported as the event's `pattern`.
    pub name: String,
    /// Plain substring (case-sensitive).
    #[serde(default = "default_none", skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Regular expression (Rust `regex` syntax).
    #[serde(default = "default_none", skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// `start_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    Beginning,
    End,
}

fn default_name() -> Option<String> {
    None
}
fn default_none() -> Option<String> {
    None
}
fn default_log_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_patterns() -> Vec<PatternConfig> {
    vec![
        PatternConfig {
            name: "error".to_owned(),
            contains: Some("ERROR".to_owned()),
            regex: None,
        },
        PatternConfig {
            name: "traceback".to_owned(),
            contains: Some("Traceback".to_owned()),
            regex: None,
        },
    ]
}
fn default_start_at() -> StartAt {
    StartAt::Beginning
}
fn default_max_bytes_per_run() -> u64 {
    8 * 1024 * 1024
}
fn default_max_excerpt_bytes() -> usize {
    2048
}
fn default_fingerprint_bytes() -> usize {
    256
}
fn default_group_tracebacks() -> bool {
    true
}
fn default_multiline_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_group_lines() -> usize {
    200
}
fn default_rate_limit() -> u64 {
    100
}
fn default_rate_window() -> Duration {
    Duration::from_secs(60)
}
fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

/// Smallest accepted `max_bytes_per_run` (a whole line of a usual log must fit).
pub const MIN_BYTES_PER_RUN: u64 = 4096;

impl LogConfig {
    /// A config with every default for `paths` (tests and examples).
    pub fn with_paths(paths: Vec<String>) -> Self {
        LogConfig {
            name: None,
            interval: default_log_interval(),
            paths,
            patterns: default_patterns(),
            start_at: default_start_at(),
            max_bytes_per_run: default_max_bytes_per_run(),
            max_excerpt_bytes: default_max_excerpt_bytes(),
            fingerprint_bytes: default_fingerprint_bytes(),
            group_tracebacks: default_group_tracebacks(),
            multiline_timeout: default_multiline_timeout(),
            max_group_lines: default_max_group_lines(),
            rate_limit: default_rate_limit(),
            rate_window: default_rate_window(),
            rotate_wait: default_rotate_wait(),
        }
    }

    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: String, r: String| out.push((k, r));
        if self.paths.is_empty() {
            push("paths".into(), "at least one file or glob is needed".into());
        }
        for (i, p) in self.paths.iter().enumerate() {
            if !Path::new(p).is_absolute() {
                push(format!("paths[{i}]"), format!("must be absolute: {p:?}"));
            } else if let Err(e) = glob::Pattern::new(p) {
                push(format!("paths[{i}]"), format!("invalid glob {p:?}: {e}"));
            }
        }
        if self.patterns.is_empty() {
            push("patterns".into(), "at least one pattern is needed".into());
        }
        for (i, p) in self.patterns.iter().enumerate() {
            let key = format!("patterns[{i}]");
            if p.name.trim().is_empty() {
                push(format!("{key}.name"), "must not be empty".into());
            } else if self.patterns[..i].iter().any(|q| q.name == p.name) {
                push(
                    format!("{key}.name"),
                    format!("duplicate pattern name {:?}", p.name),
                );
            }
            match (&p.contains, &p.regex) {
                (Some(_), Some(_)) | (None, None) => push(
                    key.clone(),
                    "set exactly one of `contains` and `regex`".into(),
                ),
                (Some(s), None) if s.is_empty() => {
                    push(format!("{key}.contains"), "must not be empty".into())
                }
                (None, Some(r)) => {
                    if let Err(e) = regex::Regex::new(r) {
                        let msg = e.to_string().replace('\n', " ");
                        push(format!("{key}.regex"), format!("invalid regex: {msg}"));
                    }
                }
                _ => {}
            }
        }
        if self.max_bytes_per_run < MIN_BYTES_PER_RUN {
            push(
                "max_bytes_per_run".into(),
                format!("must be at least {MIN_BYTES_PER_RUN}"),
            );
        }
        if self.max_excerpt_bytes < 64 {
            push("max_excerpt_bytes".into(), "must be at least 64".into());
        }
        if !(16..=65536).contains(&self.fingerprint_bytes) {
            push(
                "fingerprint_bytes".into(),
                "must be between 16 and 65536".into(),
            );
        }
        if self.max_group_lines < 2 {
            push("max_group_lines".into(), "must be at least 2".into());
        }
        if self.multiline_timeout.is_zero() {
            push("multiline_timeout".into(), "must be greater than 0".into());
        }
        if self.rate_window.is_zero() {
            push("rate_window".into(), "must be greater than 0".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut c = LogConfig::with_paths(vec!["rel/path".into(), "/var/log/[".into()]);
        c.patterns = vec![
            PatternConfig {
                name: "a".into(),
                contains: None,
                regex: Some("(".into()),
            },
            PatternConfig {
                name: "a".into(),
                contains: Some("x".into()),
                regex: Some("y".into()),
            },
        ];
        c.max_bytes_per_run = 10;
        c.rate_window = Duration::ZERO;
        let keys: Vec<String> = c.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "paths[0]",
                "paths[1]",
                "patterns[0].regex",
                "patterns[1].name",
                "patterns[1]",
                "max_bytes_per_run",
                "rate_window"
            ]
        );
        assert!(LogConfig::with_paths(vec!["/var/log/*.log".into()])
            .problems()
            .is_empty());
    }

    #[test]
    fn parses_from_toml_and_reports_bad_entries_with_lines() {
        let ok = r#"
host = "web-01"
[[modules]]
type = "log"
name = "app"
paths = ["/var/log/app/*.log"]
rate_limit = 10
rate_window = "30s"
[[modules.patterns]]
name = "oom"
regex = 'Killed process \d+'
[[modules]]
type = "sentinel"
paths = ["/var/lib/backup/last-ok"]
max_age = "26h"
"#;
        let cfg = crate::config::parse_str(ok).expect("valid");
        let crate::config::ModuleConfig::Log(log) = &cfg.modules[0] else {
            panic!("{cfg:?}")
        };
        assert_eq!(log.patterns.len(), 1);
        assert_eq!(log.rate_window, Duration::from_secs(30));
        assert_eq!(log.max_bytes_per_run, 8 * 1024 * 1024);
        assert_eq!(cfg.modules[1].name(), "sentinel");

        let bad = r#"
host = "web-01"
[[modules]]
type = "log"
paths = ["relative.log"]
[[modules.patterns]]
name = "x"
regex = "("
[[modules]]
type = "sentinel"
paths = ["/x"]
max_age = "0s"
"#;
        let problems = crate::config::parse_str(bad).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "modules[0].paths[0]",
                "modules[0].patterns[0].regex",
                "modules[1].max_age"
            ],
            "{problems:?}"
        );
        assert!(problems.iter().all(|p| p.line.is_some()), "{problems:?}");
    }
}
