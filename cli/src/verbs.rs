//! The command verbs beyond pause/resume: `backup run`, `backup verify`, `restore`, `config apply`,
//! `config rollback` and `app` — their flags and the `CommandAction` each one makes. Issuing, waiting,
//! progress and the result table are the shared path in opsctl's `issue.rs` (`run_request`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use opsfleet_proto::api::CommandAction;

/// Why a verb could not build its request.
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    #[error("cannot read the module config {path}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the module config {path} is empty")]
    EmptyConfig { path: PathBuf },
    #[error("--target {target:?} is a relative path; give an absolute directory on the host (e.g. /srv/restore/app)")]
    RelativeTarget { target: String },
    #[error("--arg {name} is given twice; give each argument once")]
    DuplicateArg { name: String },
}

/// `opsctl backup run`: which backup job to run now.
#[derive(Args, Debug, Clone, Default)]
pub struct BackupRunArgs {
    /// The job to run (default: every job of the backup module).
    #[arg(long)]
    pub job: Option<String>,
    /// The backup module instance (default: the agent's only backup module, or the one
    /// holding --job).
    #[arg(long)]
    pub module: Option<String>,
}

impl BackupRunArgs {
    pub fn request(self) -> CommandAction {
        CommandAction::BackupRun {
            module: self.module,
            job: self.job,
        }
    }
}

/// `opsctl backup verify`: which job's restore test to run now.
#[derive(Args, Debug, Clone, Default)]
pub struct BackupVerifyArgs {
    /// The backup job whose newest archive is tested.
    pub job: String,
    /// The backup module instance (default: the agent's only backup module, or the one
    /// holding the job).
    #[arg(long)]
    pub module: Option<String>,
}

impl BackupVerifyArgs {
    pub fn request(self) -> CommandAction {
        CommandAction::RestoreTest {
            module: self.module,
            job: self.job,
        }
    }
}

/// `opsctl restore`: which archive to restore where.
#[derive(Args, Debug, Clone, Default)]
pub struct RestoreArgs {
    /// Archive file name as `opsctl backups --archives` lists it
    /// (`<job>-<timestamp>.tar.zst`), or `latest` for the job's newest complete archive (as
    /// `ops-agent restore` defaults to; the job is then --job, or the module's only job).
    #[arg(long)]
    pub archive: String,
    /// Absolute directory on the agent's host to restore into (created if missing; existing
    /// files are never overwritten). Each source of the job is restored under its base name:
    /// a job with source `/srv/app` restored into `/srv/restore` gives `/srv/restore/app`.
    #[arg(long)]
    pub target: String,
    /// The job (default: the one the archive's name belongs to).
    #[arg(long)]
    pub job: Option<String>,
    /// The backup module instance (default: inferred by the agent).
    #[arg(long)]
    pub module: Option<String>,
}

impl RestoreArgs {
    /// The request; a relative `--target` is refused here (and again by the agent).
    pub fn request(self) -> Result<CommandAction, VerbError> {
        if !Path::new(self.target.trim()).is_absolute() {
            return Err(VerbError::RelativeTarget {
                target: self.target,
            });
        }
        Ok(CommandAction::Restore {
            module: self.module,
            job: self.job,
            archive: self.archive,
            target: self.target,
        })
    }
}

/// `opsctl config apply`: a new config for one module.
#[derive(Args, Debug, Clone)]
pub struct ConfigApplyArgs {
    /// The module instance to reconfigure (its name cannot change).
    pub module: String,
    /// The module's entry as TOML (`type = "disk"`, `name = ...`, ...; a single
    /// `[[modules]]` header line is accepted and dropped). The agent checks it like its config
    /// file; a bad one is rejected with every problem and the old config kept.
    #[arg(long)]
    pub file: PathBuf,
}

impl ConfigApplyArgs {
    pub fn request(self) -> Result<CommandAction, VerbError> {
        let text = read_module_toml(&self.file)?;
        Ok(CommandAction::ConfigApply {
            module: self.module,
            config_toml: text,
            fingerprint: None,
        })
    }
}

/// `opsctl config rollback`: back to a config the log knows.
#[derive(Args, Debug, Clone)]
pub struct ConfigRollbackArgs {
    /// The module instance.
    pub module: String,
    /// The config's 64-hex fingerprint (or a unique prefix of at least 8 hex digits), as
    /// `opsctl config history <module> --host H` lists them.
    #[arg(long)]
    pub to: String,
}

impl ConfigRollbackArgs {
    pub fn request(self) -> CommandAction {
        CommandAction::ConfigRollback {
            module: self.module,
            fingerprint: self.to,
        }
    }
}

/// `opsctl app`: an action for a service's own control endpoint.
#[derive(Args, Debug, Clone)]
pub struct AppArgs {
    /// The service (a `service` module instance whose `[modules.control]` declares the
    /// action).
    pub service: String,
    /// The action, as the service declares it (e.g. `pipeline.pause`, `module.disable`).
    pub action: String,
    /// An argument of the action, `name=value` (e.g. `--arg module=ingest`); repeat for
    /// several. Each name must be declared for the action on the host, or nothing is sent.
    #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = parse_arg)]
    pub args: Vec<(String, String)>,
}

impl AppArgs {
    /// The request; an argument given twice is refused.
    pub fn request(self) -> Result<CommandAction, VerbError> {
        let mut args = BTreeMap::new();
        for (name, value) in self.args {
            if args.contains_key(&name) {
                return Err(VerbError::DuplicateArg { name });
            }
            args.insert(name, value);
        }
        Ok(CommandAction::App {
            service: self.service,
            action: self.action,
            args,
        })
    }
}

/// `--arg name=value`: a non-empty name; the value may be empty (pure).
pub fn parse_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not name=value (e.g. module=ingest)")),
    }
}

/// `--label k=v` (pure).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        }
        _ => Err(format!("{s:?} is not k=v (e.g. role=web)")),
    }
}

/// The file's text without a leading `[[modules]]` header line.
pub fn read_module_toml(path: &Path) -> Result<String, VerbError> {
    let text = std::fs::read_to_string(path).map_err(|source| VerbError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    let body = strip_modules_header(&text);
    if body.trim().is_empty() {
        return Err(VerbError::EmptyConfig {
            path: path.to_owned(),
        });
    }
    Ok(body)
}

/// Drops a `[[modules]]` header that opens the text (comments and blank lines before it
/// are kept). Pure.
pub fn strip_modules_header(text: &str) -> String {
    let mut out = Vec::new();
    let mut seen_content = false;
    for line in text.lines() {
        let t = line.trim();
        if !seen_content && t == "[[modules]]" {
            seen_content = true;
            continue;
        }
        if !t.is_empty() && !t.starts_with('#') {
            seen_content = true;
        }
        out.push(line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_modules_header_is_dropped_and_nothing_else() {
        let text = "# disk\n[[modules]]\ntype = \"disk\"\npaths = [\"/\"]\n";
        assert_eq!(
            strip_modules_header(text),
            "# disk\ntype = \"disk\"\npaths = [\"/\"]\n"
        );
        let bare = "type = \"disk\"\n";
        assert_eq!(strip_modules_header(bare), bare);
        // A later header is a second entry: left for the agent to refuse.
        let two = "type = \"disk\"\n[[modules]]\ntype = \"log\"\n";
        assert_eq!(strip_modules_header(two), two);
    }

    #[test]
    fn labels_are_k_equals_v() {
        assert_eq!(
            parse_label("role=web"),
            Ok(("role".to_owned(), "web".to_owned()))
        );
        assert!(parse_label("role").is_err());
        assert!(parse_label("=web").is_err());
        assert!(parse_label("role=").is_err());
    }

    #[test]
    fn app_requests_carry_their_arguments_once() {
        let args = |v: &[&str]| -> Vec<(String, String)> {
            v.iter()
                .map(|a| parse_arg(a).expect("name=value"))
                .collect()
        };
        let r = AppArgs {
            service: "web".to_owned(),
            action: "module.disable".to_owned(),
            args: args(&["module=ingest", "note=a=b", "empty="]),
        }
        .request()
        .expect("valid");
        let CommandAction::App {
            service,
            action,
            args: got,
        } = &r
        else {
            panic!("{r:?}")
        };
        assert_eq!(
            (service.as_str(), action.as_str()),
            ("web", "module.disable")
        );
        assert_eq!(got["module"], "ingest");
        assert_eq!(got["note"], "a=b");
        assert_eq!(got["empty"], "");
        assert!(parse_arg("module").is_err());
        assert!(parse_arg("=x").is_err());
        let twice = AppArgs {
            service: "web".to_owned(),
            action: "module.disable".to_owned(),
            args: args(&["module=a", "module=b"]),
        }
        .request()
        .unwrap_err();
        assert_eq!(
            twice.to_string(),
            "--arg module is given twice; give each argument once"
        );
    }

    #[test]
    fn requests_carry_their_fields() {
        let r = RestoreArgs {
            archive: "app-20260101T000000.000Z.tar.zst".to_owned(),
            target: "/srv/restore".to_owned(),
            ..Default::default()
        }
        .request()
        .expect("absolute target");
        assert!(
            matches!(&r, CommandAction::Restore { target, .. } if target == "/srv/restore"),
            "{r:?}"
        );
        for relative in ["restored", "./r", "srv/restore", ""] {
            let err = RestoreArgs {
                archive: "latest".to_owned(),
                target: relative.to_owned(),
                ..Default::default()
            }
            .request()
            .unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("--target {relative:?} is a relative path")),
                "{err}"
            );
        }
        let b = BackupRunArgs {
            job: Some("app".to_owned()),
            module: None,
        }
        .request();
        assert_eq!(
            b,
            CommandAction::BackupRun {
                module: None,
                job: Some("app".to_owned())
            }
        );
        let rb = ConfigRollbackArgs {
            module: "disk".to_owned(),
            to: "abcd1234".to_owned(),
        }
        .request();
        assert!(
            matches!(&rb, CommandAction::ConfigRollback { fingerprint, .. } if fingerprint == "abcd1234"),
            "{rb:?}"
        );
        let err = ConfigApplyArgs {
            module: "disk".to_owned(),
            file: PathBuf::from("/nonexistent/disk.toml"),
        }
        .request()
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/disk.toml"), "{err}");
    }
}
