//! `service_config_apply` / `service_config_rollback`: a declared config file of a service
//! replaced atomically, checked with the app's own check, applied (reload or restart) and
//! health gated; on any failure the previous content comes back.
//!
//! The new content is written to a temp file beside the old one (same directory, the old
//! file's mode and owner), the service's `check` runs on it (`{file}` = the temp path, killed after
//! `check_timeout`); refused → the temp file is removed and nothing else changed. Accepted →
//! renamed over the old file through the shared `ConfigBoard` (so the service module does
//! not report the write as drift) and applied through the service module's reload or
//! restart (`ControlHandle::service_op`, which waits for the service to be ready when it
//! declares a probe). That failing → the previous content is put back the same way and the
//! service reloaded (restarted) again. Each change is a `ServiceConfigSnapshot` with the
//! command's id (`applied` / `rolled_back`, `restored`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use opsfleet_proto::pb;
use opsfleet_report::error_chain;

use super::exec::Execution;
use super::CommandHandler;
use crate::config::{AppConfigFiles, ConfigApply, ModuleConfig};
use crate::modules::service::command::resolve_user;
use crate::modules::service::config_board::{fingerprint, BoardError, ConfigWrite, FindError};
use crate::modules::service::ServiceOp;

/// How much of the check's output a failed command carries.
const OUTPUT_EXCERPT: usize = 2000;

/// Why a config change failed; the command's failure reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigCommandError {
    #[error("service {service:?} declares no config files ([modules.config])")]
    NoConfig { service: String },
    #[error("service {service:?} declares several config files, name one: {files}")]
    WhichFile { service: String, files: String },
    #[error("{file} is not a declared config file of service {service:?} (declared: {files})")]
    NotDeclared {
        service: String,
        file: String,
        files: String,
    },
    #[error(
        "fingerprint mismatch: the content's sha256 is {computed}, the command says {claimed:?}"
    )]
    Fingerprint { computed: String, claimed: String },
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("cannot write the new content beside {file}")]
    Temp {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the check refused the new content of {file} ({status}); {file} is unchanged: {output}"
    )]
    CheckRefused {
        file: String,
        status: String,
        output: String,
    },
    #[error("cannot run the check {program:?}; {file} is unchanged")]
    CheckSpawn {
        file: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the check did not finish within {timeout:?}; {file} is unchanged")]
    CheckTimeout { file: String, timeout: Duration },
    #[error(transparent)]
    Board(#[from] BoardError),
    #[error("{op} after writing {file} ({fingerprint}) failed: {reason}; {restored}")]
    ApplyFailed {
        op: &'static str,
        file: String,
        fingerprint: String,
        reason: String,
        restored: String,
    },
}

type Result<T> = std::result::Result<T, ConfigCommandError>;

/// A change to make: which file, to what, why.
struct Change<'a> {
    id: &'a str,
    service: &'a str,
    cfg: AppConfigFiles,
    /// The service's `user` (its check runs as it).
    user: Option<String>,
    file: PathBuf,
    content: Vec<u8>,
    cause: &'static str,
}

impl Change<'_> {
    /// `content` written to this change's file for `cause`.
    fn write<'w>(&'w self, content: &'w [u8], cause: &'w str) -> ConfigWrite<'w> {
        ConfigWrite {
            service: self.service,
            file: &self.file,
            content,
            cause,
            command_id: self.id,
            keep: self.cfg.keep,
        }
    }
}

impl CommandHandler {
    pub(super) async fn service_config_apply(
        &self,
        id: &str,
        c: &pb::ServiceConfigApply,
    ) -> Execution {
        self.run_change(self.apply_change(id, c)).await
    }

    pub(super) async fn service_config_rollback(
        &self,
        id: &str,
        c: &pb::ServiceConfigRollback,
    ) -> Execution {
        self.run_change(self.rollback_change(id, c)).await
    }

    /// Makes `change` (when it could be prepared); the result and the snapshots it published.
    async fn run_change(&self, change: Result<Change<'_>>) -> Execution {
        let mut bodies = Vec::new();
        let result = match change {
            Ok(ch) => self.change_config(ch, &mut bodies).await,
            Err(e) => Err(e),
        };
        Execution {
            result: result.map_err(|e| error_chain(&e)),
            bodies,
        }
    }

    /// The new content of an apply, for a declared file, checked against its fingerprint.
    fn apply_change<'a>(&self, id: &'a str, c: &'a pb::ServiceConfigApply) -> Result<Change<'a>> {
        let (cfg, user) = self.declared_config(&c.service)?;
        let file = pick_file(&c.service, &cfg, &c.file)?;
        check_fingerprint(&c.content, &c.fingerprint)?;
        Ok(Change {
            id,
            service: &c.service,
            cfg,
            user,
            file,
            content: c.content.clone().into_bytes(),
            cause: "applied",
        })
    }

    /// A kept content of a declared file, found by fingerprint (or prefix).
    fn rollback_change<'a>(
        &self,
        id: &'a str,
        c: &'a pb::ServiceConfigRollback,
    ) -> Result<Change<'a>> {
        let (cfg, user) = self.declared_config(&c.service)?;
        let file = pick_file(&c.service, &cfg, &c.file)?;
        let board = self.control.service_configs();
        let (_, content) = board.find(&c.service, &file, c.fingerprint.trim())?;
        Ok(Change {
            id,
            service: &c.service,
            cfg,
            user,
            file,
            content,
            cause: "rolled_back",
        })
    }

    /// The `[modules.config]` of service `service` in the host's file, and the user the
    /// service runs as (its check runs as that user too).
    fn declared_config(&self, service: &str) -> Result<(AppConfigFiles, Option<String>)> {
        let found = self.config.modules.iter().find_map(|m| match m {
            ModuleConfig::Service(s) if m.name() == service => {
                s.config.clone().map(|c| (c, s.user.clone()))
            }
            _ => None,
        });
        found.ok_or_else(|| ConfigCommandError::NoConfig {
            service: service.to_owned(),
        })
    }

    /// Temp file, check, replace, apply; on an apply failure the previous content back.
    async fn change_config(
        &self,
        ch: Change<'_>,
        bodies: &mut Vec<pb::event::Body>,
    ) -> Result<String> {
        let shown = ch.file.display().to_string();
        let temp = write_temp(&ch.file, ch.id, &ch.content)?;
        if let Err(e) = run_check(&ch.cfg, &ch.file, &temp, ch.user.as_deref()).await {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        let board = self.control.service_configs();
        let replaced = board
            .replace(&ch.write(&ch.content, ch.cause), &temp)
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })?;
        bodies.extend(
            replaced
                .snapshots
                .into_iter()
                .map(pb::event::Body::ServiceConfig),
        );
        let op = match ch.cfg.apply {
            ConfigApply::Reload => ServiceOp::Reload,
            ConfigApply::Restart => ServiceOp::Restart,
        };
        let short = fingerprint(&ch.content)[..12].to_owned();
        let reason = match self.control.service_op(ch.service, op).await {
            Ok(detail) => return Ok(format!("{shown}: {short} {} ({detail})", ch.cause)),
            Err(e) => error_chain(&e),
        };
        let restored = match replaced.previous {
            Some(previous) => self.put_back(&ch, previous, op, bodies).await,
            None => match (self.control.service_configs()).remove(&ch.write(&[], "restored")) {
                Ok(snapshot) => {
                    bodies.push(pb::event::Body::ServiceConfig(snapshot));
                    format!("{shown} did not exist before and was removed")
                }
                Err(e) => format!("{shown} did not exist before and cannot be removed: {e}"),
            },
        };
        Err(ConfigCommandError::ApplyFailed {
            op: op.as_str(),
            file: shown,
            fingerprint: short,
            reason,
            restored,
        })
    }

    /// The previous content back (`restored`) and the service reloaded again; says how it went.
    async fn put_back(
        &self,
        ch: &Change<'_>,
        previous: Vec<u8>,
        op: ServiceOp,
        bodies: &mut Vec<pb::event::Body>,
    ) -> String {
        let short = fingerprint(&previous)[..12].to_owned();
        let board = self.control.service_configs();
        let back = write_temp(&ch.file, ch.id, &previous).and_then(|temp| {
            let r = board.replace(&ch.write(&previous, "restored"), &temp);
            r.map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                ConfigCommandError::from(e)
            })
        });
        match back {
            Ok(r) => bodies.extend(r.snapshots.into_iter().map(pb::event::Body::ServiceConfig)),
            Err(e) => {
                return format!(
                    "the previous content {short} could NOT be put back: {}",
                    error_chain(&e)
                )
            }
        }
        match self.control.service_op(ch.service, op).await {
            Ok(_) => format!(
                "the previous content {short} is back and the service {}ed",
                op.as_str()
            ),
            Err(e) => format!(
                "the previous content {short} is back but {} failed again: {}",
                op.as_str(),
                error_chain(&e)
            ),
        }
    }
}

/// `content`'s sha256 is `claimed` (the issuer's; a mismatch means the content was altered
/// or cut on its way).
fn check_fingerprint(content: &str, claimed: &str) -> Result<()> {
    let computed = fingerprint(content.as_bytes());
    if computed.eq_ignore_ascii_case(claimed.trim()) {
        return Ok(());
    }
    Err(ConfigCommandError::Fingerprint {
        computed,
        claimed: claimed.to_owned(),
    })
}

/// The declared file `named` (empty: the only one).
fn pick_file(service: &str, cfg: &AppConfigFiles, named: &str) -> Result<PathBuf> {
    let files = || {
        (cfg.files.iter())
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if named.trim().is_empty() {
        return match cfg.files.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(ConfigCommandError::WhichFile {
                service: service.to_owned(),
                files: files(),
            }),
        };
    }
    let wanted = Path::new(named.trim());
    match cfg.files.iter().find(|f| f.as_path() == wanted) {
        Some(f) => Ok(f.clone()),
        None => Err(ConfigCommandError::NotDeclared {
            service: service.to_owned(),
            file: named.to_owned(),
            files: files(),
        }),
    }
}

/// `content` in a new `.<name>.<id>.<random>.opsfleet-new` beside `file` (the old file's mode
/// and owner, else 0600), fsynced. The temp file is created exclusively and never through a
/// symlink (the directory may be writable by the app's user); a declared file that is itself
/// a symlink is refused.
fn write_temp(file: &Path, id: &str, content: &[u8]) -> Result<PathBuf> {
    let shown = || file.display().to_string();
    let err = |source| ConfigCommandError::Temp {
        file: shown(),
        source,
    };
    let old = match std::fs::symlink_metadata(file) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(err(std::io::Error::other(
                "it is a symbolic link; a declared config file must be a regular file",
            )))
        }
        Ok(m) => Some(m),
        Err(_) => None,
    };
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let tag: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    // The random tail of a UUIDv7 (its first 48 bits are the time).
    let random = uuid::Uuid::now_v7().simple().to_string();
    let temp = file.with_file_name(format!(
        ".{}.{tag}.{}.opsfleet-new",
        name.unwrap_or_default(),
        &random[random.len() - 12..]
    ));
    let mode = old
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(mode)
        .open(&temp)
        .map_err(err)?;
    let written = f
        .write_all(content)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| same_owner(&f, old.as_ref()))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(err(e));
    }
    Ok(temp)
}

/// `f` owned like the old file (when there is one and the owner differs): the app may read
/// its config under its own user. Not permitted (an agent not running as root) → the change
/// is refused rather than leaving the app a file it may not read.
fn same_owner(f: &std::fs::File, old: Option<&std::fs::Metadata>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Some(old), now) = (old, f.metadata()?) else {
        return Ok(());
    };
    if (old.uid(), old.gid()) == (now.uid(), now.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(f, Some(old.uid()), Some(old.gid()))
}

/// The service's check on `temp`, as the service's `user` when it has one (it judges content
/// from the network), in a process group of its own that is killed whole on timeout; Ok when
/// it exits 0 (or none is declared).
async fn run_check(
    cfg: &AppConfigFiles,
    file: &Path,
    temp: &Path,
    user: Option<&str>,
) -> Result<()> {
    let argv = cfg.check_argv(temp);
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let shown = file.display().to_string();
    let spawn_err = |source| ConfigCommandError::CheckSpawn {
        file: shown.clone(),
        program: program.clone(),
        source,
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = user {
        let (uid, gid) = resolve_user(user).map_err(spawn_err)?;
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    let group = child.id().and_then(|p| i32::try_from(p).ok());
    let out = match tokio::time::timeout(cfg.check_timeout, child.wait_with_output()).await {
        Err(_) => {
            if let Some(pgid) = group {
                // The group may be gone already.
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            return Err(ConfigCommandError::CheckTimeout {
                file: shown,
                timeout: cfg.check_timeout,
            });
        }
        Ok(Err(source)) => return Err(spawn_err(source)),
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        if !text.is_empty() {
            text.push_str(" | ");
        }
        text.push_str(err.trim());
    }
    Err(ConfigCommandError::CheckRefused {
        file: shown,
        status: out.status.to_string(),
        output: excerpt(&text),
    })
}

/// At most `OUTPUT_EXCERPT` bytes of `text` (on a char boundary), marked when cut.
fn excerpt(text: &str) -> String {
    if text.len() <= OUTPUT_EXCERPT {
        return text.to_owned();
    }
    let mut end = OUTPUT_EXCERPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_file_is_picked_and_several_are_named() {
        let one = AppConfigFiles::of(vec!["/etc/app/app.json".into()]);
        assert_eq!(
            pick_file("app", &one, "").expect("only"),
            Path::new("/etc/app/app.json")
        );
        let two = AppConfigFiles::of(vec!["/etc/app/a.json".into(), "/etc/app/b.json".into()]);
        let e = pick_file("app", &two, "").expect_err("which").to_string();
        assert!(e.contains("/etc/app/a.json, /etc/app/b.json"), "{e}");
        let e = pick_file("app", &two, "/etc/passwd")
            .expect_err("undeclared")
            .to_string();
        assert!(e.contains("not a declared config file"), "{e}");
        assert!(pick_file("app", &two, "/etc/app/b.json").is_ok());
    }

    #[test]
    fn a_content_that_does_not_match_its_fingerprint_is_refused() {
        let fp = fingerprint(b"{}");
        check_fingerprint("{}", &fp.to_uppercase()).expect("same content");
        let e = check_fingerprint("{ }", &fp)
            .expect_err("altered")
            .to_string();
        assert!(e.contains("fingerprint mismatch"), "{e}");
        assert!(check_fingerprint("{}", "").is_err(), "no fingerprint");
    }

    #[tokio::test]
    async fn a_refusing_check_names_its_output_and_a_slow_one_times_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        let temp = write_temp(&file, "c-1", b"{}").expect("temp");
        let mut cfg = AppConfigFiles::of(vec![file.clone()]);
        cfg.check = vec![
            "sh".into(),
            "-c".into(),
            "echo bad config {file} >&2; exit 3".into(),
        ];
        let e = run_check(&cfg, &file, &temp, None)
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("bad config") && e.contains("exit status: 3"),
            "{e}"
        );
        cfg.check = vec!["sh".into(), "-c".into(), "sleep 5 # {file}".into()];
        cfg.check_timeout = Duration::from_millis(200);
        let e = run_check(&cfg, &file, &temp, None).await.expect_err("slow");
        assert!(matches!(e, ConfigCommandError::CheckTimeout { .. }), "{e}");
        cfg.check = vec!["true".into(), "{file}".into()];
        run_check(&cfg, &file, &temp, None).await.expect("accepted");
    }

    #[test]
    fn the_temp_file_has_the_old_mode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        std::fs::write(&file, b"old").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let temp = write_temp(&file, "c-1", b"new").expect("temp");
        assert_eq!(temp.parent(), file.parent());
        let mode = std::fs::metadata(&temp).expect("temp").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // Two writes for the same command never share (or reuse) a temp file.
        let again = write_temp(&file, "c-1", b"new").expect("temp");
        assert_ne!(again, temp);
    }

    #[test]
    fn a_symlinked_config_file_is_refused_and_nothing_is_written_through_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, b"precious").expect("write");
        let file = tmp.path().join("app.json");
        std::os::unix::fs::symlink(&target, &file).expect("symlink");
        let e = write_temp(&file, "c-1", b"new").expect_err("refused");
        assert!(
            e.to_string().contains("symbolic link") || format!("{e:?}").contains("symbolic link"),
            "{e:?}"
        );
        assert_eq!(std::fs::read(&target).expect("read"), b"precious");
    }

    #[tokio::test]
    async fn the_check_runs_as_the_services_user() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIP: running the check as another user needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        let temp = write_temp(&file, "c-1", b"{}").expect("temp");
        let mut cfg = AppConfigFiles::of(vec![file.clone()]);
        cfg.check = vec![
            "sh".into(),
            "-c".into(),
            "test \"$(id -u)\" = 65534 || { echo \"ran as $(id -u)\" >&2; exit 1; } # {file}"
                .into(),
        ];
        run_check(&cfg, &file, &temp, Some("nobody"))
            .await
            .expect("ran as nobody");
        let e = run_check(&cfg, &file, &temp, None)
            .await
            .expect_err("ran as root");
        assert!(format!("{e:?}").contains("ran as 0"), "{e:?}");
    }
}
