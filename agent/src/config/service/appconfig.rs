//! `[modules.config]` of a service: the application's own config files (fingerprinted,
//! snapshotted on every change, applied and rolled back by command), the app's check command
//! and how a new content is applied (reload or restart), with its semantic checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The placeholder of `check` replaced by the path of the content to check.
pub const FILE_PLACEHOLDER: &str = "{file}";

/// How a new config content reaches the running app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigApply {
    /// The service's reload (SIGHUP for a `process` service).
    Reload,
    /// A full restart of the service.
    Restart,
}

impl ConfigApply {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigApply::Reload => "reload",
            ConfigApply::Restart => "restart",
        }
    }
}

/// `[modules.config]`: the declared config files of a service.
///
/// ```toml
/// [modules.config]
/// files = ["/etc/app/app.json"]
/// check = ["/usr/bin/app", "--check-config", "{file}"]
/// apply = "reload"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfigFiles {
    /// The declared files (absolute paths).
    pub files: Vec<PathBuf>,
    /// Program and arguments run on a NEW content before it replaces a file; `{file}` is
    /// replaced by the path of that content. Exit 0 = valid. Empty: no check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check: Vec<String>,
    /// How a new content is applied: `reload` or `restart`.
    #[serde(default = "default_apply")]
    pub apply: ConfigApply,
    /// The check command is killed (and the content refused) after this long.
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub check_timeout: Duration,
    /// Contents kept per file (on this host only) for a rollback.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_apply() -> ConfigApply {
    ConfigApply::Reload
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_keep() -> usize {
    10
}

impl AppConfigFiles {
    /// `files` with every other key at its default.
    pub fn of(files: Vec<PathBuf>) -> Self {
        AppConfigFiles {
            files,
            check: Vec::new(),
            apply: default_apply(),
            check_timeout: default_check_timeout(),
            keep: default_keep(),
        }
    }

    /// Every problem as `(key, reason)`, keys relative to the `config` table.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.files.is_empty() {
            out.push(("files".to_owned(), "at least one file is needed".to_owned()));
        }
        for (i, f) in self.files.iter().enumerate() {
            if !f.is_absolute() || f.file_name().is_none() {
                out.push((
                    format!("files[{i}]"),
                    "must be an absolute file path".to_owned(),
                ));
            }
            if self.files[..i].contains(f) {
                out.push((format!("files[{i}]"), "declared twice".to_owned()));
            }
        }
        if self.check.first().is_some_and(|p| p.is_empty()) {
            out.push((
                "check[0]".to_owned(),
                "the program must not be empty".to_owned(),
            ));
        }
        if !self.check.is_empty() && !self.check.iter().any(|a| a.contains(FILE_PLACEHOLDER)) {
            out.push((
                "check".to_owned(),
                format!("must name the content to check as {FILE_PLACEHOLDER}"),
            ));
        }
        if self.check_timeout.is_zero() {
            out.push((
                "check_timeout".to_owned(),
                "must be greater than 0".to_owned(),
            ));
        }
        if self.keep == 0 {
            out.push(("keep".to_owned(), "must be at least 1".to_owned()));
        }
        out
    }

    /// `check` with `{file}` replaced by `path`.
    pub fn check_argv(&self, path: &std::path::Path) -> Vec<String> {
        let shown = path.to_string_lossy();
        (self.check.iter())
            .map(|a| a.replace(FILE_PLACEHOLDER, &shown))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    #[test]
    fn every_problem_of_a_config_section_is_listed() {
        let toml = r#"
host = "web-01"
[[modules]]
type = "service"
argv = ["app"]
[modules.config]
files = ["rel/app.json", "/etc/app/a.json", "/etc/app/a.json"]
check = ["app", "--check-config"]
check_timeout = "0s"
keep = 0
"#;
        let problems = parse_str(toml).expect_err("invalid config section");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "modules[0].config.files[0]",
            "modules[0].config.files[2]",
            "modules[0].config.check",
            "modules[0].config.check_timeout",
            "modules[0].config.keep",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn a_config_section_loads_with_defaults() {
        let toml = "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nargv = [\"app\"]\n[modules.config]\nfiles = [\"/etc/app/app.json\"]\n";
        let cfg = parse_str(toml).expect("valid");
        let crate::config::ModuleConfig::Service(s) = &cfg.modules[0] else {
            panic!("not a service");
        };
        let c = s.config.as_ref().expect("config section");
        assert_eq!(c.apply, super::ConfigApply::Reload);
        assert_eq!(c.keep, 10);
        assert_eq!(c.check_timeout, std::time::Duration::from_secs(30));
    }

    #[test]
    fn check_argv_replaces_the_placeholder() {
        let mut c = super::AppConfigFiles::of(vec!["/etc/a.json".into()]);
        c.check = vec!["app".into(), "--check={file}".into()];
        let argv = c.check_argv(std::path::Path::new("/etc/.a.json.new"));
        assert_eq!(argv, ["app", "--check=/etc/.a.json.new"]);
    }
}
