//! `[modules.deploy]` of a service: where its releases live (`dir`: `releases/<version>/`
//! and the `current` link; `image` for a compose service), how many are kept, how a new one
//! is activated, the bounds of an artifact's download, and the section's checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ServiceManager;

/// Fewest releases kept: the current one and the previous one (a rollback never needs the
/// network).
pub const MIN_KEEP: usize = 2;
/// Longest version name.
pub const VERSION_MAX: usize = 128;

/// How a new release reaches the running service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployActivate {
    /// A full restart (the default).
    Restart,
    /// The service's reload (an app that re-execs itself on SIGHUP).
    Reload,
}

impl DeployActivate {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployActivate::Restart => "restart",
            DeployActivate::Reload => "reload",
        }
    }
}

/// `[modules.deploy]`: versions put in place by `service_deploy` (`opsctl service deploy`,
/// rollouts), with `deploy` in `remote`.
///
/// ```toml
/// [modules.deploy]
/// dir = "/opt/app"          # releases/<version>/ and current -> releases/<version>
/// keep = 3
/// activate = "restart"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// `process`, `systemd`: the releases' directory (absolute). The service's argv / unit
    /// run from `<dir>/current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// `compose`: the image a version is a tag of (`registry.local/app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Releases kept on the host (the current and the previous one always).
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// `restart` or `reload` after the switch.
    #[serde(default = "default_activate")]
    pub activate: DeployActivate,
    /// An artifact's download fails after this long.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// An artifact larger than this is refused (its download stops there).
    #[serde(default = "default_max_artifact_bytes")]
    pub max_artifact_bytes: u64,
    /// A `.tar.gz` / `.tgz` artifact unpacking to more than this (its entries' sizes plus
    /// 512 bytes each) is refused before anything is written.
    #[serde(default = "default_max_unpacked_bytes")]
    pub max_unpacked_bytes: u64,
}

fn default_keep() -> usize {
    3
}
fn default_activate() -> DeployActivate {
    DeployActivate::Restart
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_max_artifact_bytes() -> u64 {
    1 << 30
}
fn default_max_unpacked_bytes() -> u64 {
    4 << 30
}

impl DeployConfig {
    /// A release directory `dir`, every other key at its default.
    pub fn dir(dir: &Path) -> Self {
        DeployConfig {
            dir: Some(dir.to_owned()),
            image: None,
            keep: default_keep(),
            activate: default_activate(),
            fetch_timeout: default_fetch_timeout(),
            max_artifact_bytes: default_max_artifact_bytes(),
            max_unpacked_bytes: default_max_unpacked_bytes(),
        }
    }

    /// Every problem as `(key, reason)`, keys relative to the `deploy` table.
    pub(super) fn problems(&self, manager: ServiceManager) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, r: String| out.push((k.to_owned(), r));
        let m = manager.as_str();
        if manager == ServiceManager::Compose {
            match &self.image {
                None => push("image", "a compose service deploys an image tag: name the image (e.g. \"registry.local/app\")".to_owned()),
                Some(i) if image_problem(i).is_some() => {
                    push("image", image_problem(i).unwrap_or_default())
                }
                Some(_) => {}
            }
            if self.dir.is_some() {
                push(
                    "dir",
                    format!("not used by the {m} manager (it deploys `image`)"),
                );
            }
        } else {
            match &self.dir {
                None => push(
                    "dir",
                    "the releases' directory is needed (absolute)".to_owned(),
                ),
                Some(d) if !d.is_absolute() || d.parent().is_none() => {
                    push("dir", "must be an absolute directory, not /".to_owned())
                }
                Some(_) => {}
            }
            if self.image.is_some() {
                push(
                    "image",
                    format!(
                        "only a compose service deploys an image; this service's manager is {m}"
                    ),
                );
            }
        }
        if self.keep < MIN_KEEP {
            push(
                "keep",
                format!("must be at least {MIN_KEEP} (the current and the previous release)"),
            );
        }
        if self.fetch_timeout.is_zero() {
            push("fetch_timeout", "must be greater than 0".to_owned());
        }
        if self.max_artifact_bytes == 0 {
            push("max_artifact_bytes", "must be greater than 0".to_owned());
        }
        if self.max_unpacked_bytes == 0 {
            push("max_unpacked_bytes", "must be greater than 0".to_owned());
        }
        out
    }
}

/// An image reference without a tag or digest: `[registry[:port]/]name[/name...]`. Pure.
fn image_problem(image: &str) -> Option<String> {
    if image.trim().is_empty() {
        return Some("must not be empty".to_owned());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        return Some("the image without a tag or digest (the version is the tag)".to_owned());
    }
    image
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':')))
        .map(|c| format!("character {c:?} not allowed in an image name"))
}

/// Why `version` cannot name a release: a single path component of `[A-Za-z0-9._+-]`, not
/// `.` or `..`, at most `VERSION_MAX` characters. Pure.
pub fn version_problem(version: &str) -> Option<String> {
    if version.is_empty() {
        return Some("the version is empty".to_owned());
    }
    if version.len() > VERSION_MAX {
        return Some(format!(
            "the version is longer than {VERSION_MAX} characters"
        ));
    }
    if version == "." || version == ".." {
        return Some(format!("{version:?} is not a version"));
    }
    version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
        .map(|c| {
            format!("character {c:?} not allowed in a version; use letters, digits, '.', '_', '+' and '-'")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    #[test]
    fn every_problem_of_a_deploy_section_is_listed() {
        let toml = r#"
host = "web-01"
[[modules]]
type = "service"
argv = ["/opt/app/current/bin/app"]
remote = ["deploy"]
[modules.deploy]
dir = "opt/app"
image = "registry.local/app"
keep = 1
fetch_timeout = "0s"
max_artifact_bytes = 0
max_unpacked_bytes = 0
"#;
        let problems = parse_str(toml).expect_err("invalid deploy section");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "modules[0].deploy.dir",
            "modules[0].deploy.image",
            "modules[0].deploy.keep",
            "modules[0].deploy.fetch_timeout",
            "modules[0].deploy.max_artifact_bytes",
            "modules[0].deploy.max_unpacked_bytes",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn deploy_in_remote_needs_the_section_and_compose_needs_an_image() {
        let toml = "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nargv = [\"app\"]\nremote = [\"deploy\"]\n";
        let problems = parse_str(toml).expect_err("no section");
        assert!(
            problems
                .iter()
                .any(|p| p.key == "modules[0].remote" && p.reason.contains("[modules.deploy]")),
            "{problems:?}"
        );
        let toml = r#"
host = "web-01"
[[modules]]
type = "service"
manager = "compose"
compose = { project_dir = "/srv/app", service = "web" }
[modules.deploy]
dir = "/srv/releases"
"#;
        let problems = parse_str(toml).expect_err("compose without image");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"modules[0].deploy.image"), "{keys:?}");
        assert!(keys.contains(&"modules[0].deploy.dir"), "{keys:?}");
        let tagged = toml.replace(
            "dir = \"/srv/releases\"",
            "image = \"registry.local/app:1.0\"",
        );
        let problems = parse_str(&tagged).expect_err("tagged image");
        assert!(
            problems.iter().any(|p| p.key == "modules[0].deploy.image"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_deploy_section_loads_with_defaults() {
        let toml = "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nargv = [\"/opt/app/current/app\"]\nremote = [\"deploy\"]\n[modules.deploy]\ndir = \"/opt/app\"\n";
        let cfg = parse_str(toml).expect("valid");
        let crate::config::ModuleConfig::Service(s) = &cfg.modules[0] else {
            panic!("not a service");
        };
        let d = s.deploy.as_ref().expect("deploy section");
        assert_eq!(d, &DeployConfig::dir(Path::new("/opt/app")));
        assert_eq!(d.keep, 3);
        assert_eq!(d.activate, DeployActivate::Restart);
    }

    #[test]
    fn versions_are_single_safe_path_components() {
        for good in ["1.2.3", "v2", "1.0.0-rc.1+build.7", "2024_01_01"] {
            assert_eq!(version_problem(good), None, "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "/abs", "1 2", "v1\0", "ü"] {
            assert!(version_problem(bad).is_some(), "{bad:?} accepted");
        }
        assert!(version_problem(&"x".repeat(VERSION_MAX)).is_none());
        assert!(version_problem(&"x".repeat(VERSION_MAX + 1)).is_some());
    }
}
