//! The pure part of command handling: what a delivered command gets (duplicate, rejected,
//! expired or accepted) given this host, the ledger's view and `now`, and the validation of an
//! action's payload against the agent's modules.

use std::path::{Path, PathBuf};

use opsfleet_proto::pb::command::Action;
use opsfleet_proto::{pb, subjects};

use crate::config::{AgentConfig, HostPolicy, ModuleConfig, RemoteOp};

/// Reason of a `command_rejected` for a command older than the highest epoch seen.
pub const STALE_EPOCH: &str = "stale epoch";

/// Furthest a command's deadline may lie ahead of this host's clock (the `OPS_CMDS` stream
/// keeps a command for 24 h, so nothing can be meant to start later).
pub const MAX_DEADLINE_AHEAD_MS: i64 = 24 * 3600 * 1000;
/// Clock difference allowed between a coordinator and this host, on top of the above.
pub const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The modules (name, kind) and backup jobs (module, job) a command may name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub modules: Vec<(String, &'static str)>,
    pub backup_jobs: Vec<(String, String)>,
}

impl Catalog {
    pub fn from_config(cfg: &AgentConfig) -> Self {
        let mut catalog = Catalog::default();
        for m in &cfg.modules {
            catalog.modules.push((m.name().to_owned(), m.kind()));
            if let ModuleConfig::Backup(b) = m {
                catalog
                    .backup_jobs
                    .extend(b.jobs.iter().map(|j| (m.name().to_owned(), j.name.clone())));
            }
        }
        catalog
    }

    /// The (module, job) a `backup_run` or `restore` means: either may be empty and is then
    /// inferred — the module from the job (or the only backup module), the job of a restore
    /// from the archive's name (`<job>-<timestamp>.tar.*`). An empty job of a `backup_run`
    /// stays empty (every job of the module). Pure.
    pub fn resolve_backup(
        &self,
        module: &str,
        job: &str,
        archive: Option<&str>,
    ) -> Result<(String, String), String> {
        let job = if job.is_empty() {
            match archive.filter(|a| !a.is_empty()) {
                Some(a) => {
                    let mut jobs: Vec<&str> = self
                        .backup_jobs
                        .iter()
                        .filter(|(m, _)| module.is_empty() || m == module)
                        .filter(|(_, j)| {
                            crate::modules::backup::naming::parse_archive_name(j, a).is_some()
                        })
                        .map(|(_, j)| j.as_str())
                        .collect();
                    jobs.dedup();
                    match jobs.as_slice() {
                        [one] => (*one).to_owned(),
                        [] => return Err(format!("archive {a:?} belongs to no backup job here")),
                        many => {
                            return Err(format!(
                                "archive {a:?} matches several jobs ({}); name one with --job",
                                many.join(", ")
                            ))
                        }
                    }
                }
                None => String::new(),
            }
        } else {
            job.to_owned()
        };
        let backup_modules: Vec<&str> = self
            .modules
            .iter()
            .filter(|(_, kind)| *kind == "backup")
            .map(|(name, _)| name.as_str())
            .collect();
        let module = if !module.is_empty() {
            module.to_owned()
        } else if !job.is_empty() {
            let holders: Vec<&str> = self
                .backup_jobs
                .iter()
                .filter(|(_, j)| *j == job)
                .map(|(m, _)| m.as_str())
                .collect();
            match holders.as_slice() {
                [one] => (*one).to_owned(),
                [] => return Err(format!("no backup job {job:?} on this host")),
                many => {
                    return Err(format!(
                        "backup job {job:?} is in several modules ({}); name one with --module",
                        many.join(", ")
                    ))
                }
            }
        } else {
            match backup_modules.as_slice() {
                [one] => (*one).to_owned(),
                [] => return Err("no backup module on this host".to_owned()),
                many => {
                    return Err(format!(
                        "several backup modules ({}); name one with --module",
                        many.join(", ")
                    ))
                }
            }
        };
        Ok((module, job))
    }

    /// The `(module, job)` a restore reads from: as [`Catalog::resolve_backup`], where an
    /// archive `latest` (or none) names no job and a module's only job is its default.
    pub fn resolve_restore(&self, r: &pb::Restore) -> Result<(String, String), String> {
        let named = restore_archive(r);
        let (module, job) = self.resolve_backup(&r.module, &r.job, named)?;
        if !job.is_empty() {
            return Ok((module, job));
        }
        let jobs: Vec<&str> = self
            .backup_jobs
            .iter()
            .filter(|(m, _)| *m == module)
            .map(|(_, j)| j.as_str())
            .collect();
        match jobs.as_slice() {
            [one] => Ok((module, (*one).to_owned())),
            [] => Err(format!("backup module {module:?} has no jobs")),
            many => Err(format!(
                "restore of the latest archive needs --job: module {module:?} has jobs {}",
                many.join(", ")
            )),
        }
    }

    fn kind_of(&self, module: &str) -> Option<&'static str> {
        self.modules
            .iter()
            .find(|(name, _)| name == module)
            .map(|(_, kind)| *kind)
    }
}

/// The archive a restore names, `None` for the newest (`latest` or empty).
pub fn restore_archive(r: &pb::Restore) -> Option<&str> {
    let a = r.archive.trim();
    (!a.is_empty() && a != LATEST_ARCHIVE).then_some(a)
}

/// The archive name that asks a restore for the newest complete archive of its job.
pub const LATEST_ARCHIVE: &str = "latest";

/// A restore writes only to an absolute path: a relative one would be resolved against the
/// agent's working directory, which no operator chose. Pure.
pub fn restore_target_problem(target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("restore needs a target directory".to_owned());
    }
    (!Path::new(target).is_absolute()).then(|| {
        format!("restore target {target:?} is a relative path; give an absolute directory (e.g. /srv/restore)")
    })
}

/// What a command gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its id was seen before: ack, run nothing, emit nothing.
    Duplicate,
    /// Refused without running (`command_rejected`).
    Rejected { reason: String },
    /// Its deadline passed before it could start (`command_expired`).
    Expired,
    /// Run it (`command_accepted` first).
    Accept,
}

/// The outcome and the highest epoch to persist afterwards (never lower than before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub highest_epoch: u64,
}

impl Verdict {
    /// Whether the command is recorded as seen (everything but a duplicate).
    pub fn records(&self) -> bool {
        self.outcome != Outcome::Duplicate
    }
}

/// Whether a message that reached this agent's command inbox was delivered by its own
/// command consumer: subject `ops.cmd.<host>`, ack metadata naming stream `OPS_CMDS` and
/// consumer `agent-<host>` (`stream`, `consumer` from the reply subject; `None` when it is not
/// a JetStream delivery). Anything else — a push consumer someone pointed at the agent's
/// inbox, a stray publish — is not a command, whatever its payload. Pure.
pub fn delivered_by_own_consumer(host: &str, subject: &str, ack: Option<(&str, &str)>) -> bool {
    let Some((stream, consumer)) = ack else {
        return false;
    };
    subject == subjects::command_subject(host)
        && stream == subjects::COMMANDS_STREAM
        && consumer == super::consumer_name(host)
}

/// Decides about `cmd` in this order: target, seen id, epoch fencing (a higher epoch raises the
/// stored one, whatever follows), deadline (none = 0 and one further out than
/// `MAX_DEADLINE_AHEAD_MS + CLOCK_SKEW_MS` are rejected, `now > deadline` expires), payload
/// (`valid`), accept. `highest_epoch` is the highest epoch persisted so far. Pure.
pub fn decide(
    host: &str,
    cmd: &pb::Command,
    highest_epoch: u64,
    seen: bool,
    now_unix_ms: i64,
    valid: Result<(), String>,
) -> Verdict {
    let verdict = |outcome, highest_epoch| Verdict {
        outcome,
        highest_epoch,
    };
    if cmd.target != host {
        let reason = format!("command for host {:?} delivered to {host:?}", cmd.target);
        return verdict(Outcome::Rejected { reason }, highest_epoch);
    }
    if seen {
        return verdict(Outcome::Duplicate, highest_epoch);
    }
    if cmd.epoch < highest_epoch {
        let reason = STALE_EPOCH.to_owned();
        return verdict(Outcome::Rejected { reason }, highest_epoch);
    }
    let highest_epoch = cmd.epoch;
    if let Err(reason) = deadline_problem(cmd.deadline_unix_ms, now_unix_ms) {
        return verdict(Outcome::Rejected { reason }, highest_epoch);
    }
    if now_unix_ms > cmd.deadline_unix_ms {
        return verdict(Outcome::Expired, highest_epoch);
    }
    match valid {
        Err(reason) => verdict(Outcome::Rejected { reason }, highest_epoch),
        Ok(()) => verdict(Outcome::Accept, highest_epoch),
    }
}

/// Why a deadline is unacceptable on arrival at `now`: missing (0: the command could wait in
/// the stream and run at any later time), or further out than the cap. Pure.
pub fn deadline_problem(deadline_unix_ms: i64, now_unix_ms: i64) -> Result<(), String> {
    if deadline_unix_ms == 0 {
        return Err(
            "refused by deadline: the command has no deadline (deadline_unix_ms = 0); every \
             command must carry one"
                .to_owned(),
        );
    }
    let cap = now_unix_ms.saturating_add(MAX_DEADLINE_AHEAD_MS + CLOCK_SKEW_MS);
    if deadline_unix_ms > cap {
        let ahead = std::time::Duration::from_millis(
            u64::try_from(deadline_unix_ms.saturating_sub(now_unix_ms)).unwrap_or(u64::MAX),
        );
        return Err(format!(
            "refused by deadline: the deadline is {} ahead of this host's clock; at most {} \
             (+ {} clock skew) is accepted",
            humantime::format_duration(ahead),
            humantime::format_duration(std::time::Duration::from_millis(
                MAX_DEADLINE_AHEAD_MS as u64
            )),
            humantime::format_duration(std::time::Duration::from_millis(CLOCK_SKEW_MS as u64)),
        ));
    }
    Ok(())
}

/// What the host's own file says about an action: a restore must write under
/// `policy.restore_targets`; a service action must be in the service's `remote` list (an
/// `app` action also declared by the service, with its arguments). Pure
/// given `resolve` (symlinks).
pub fn check_policy(
    action: Option<&Action>,
    policy: &HostPolicy,
    resolve: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Result<(), String> {
    let refused = |v: crate::config::Violation| format!("refused by {}: {}", v.rule, v.reason);
    match action {
        Some(Action::Restore(r)) => policy
            .check_restore_target(Path::new(&r.target), resolve)
            .map_err(refused),
        // `remote` allows `app`, and the service declares the action and its arguments.
        Some(Action::App(a)) => super::app::permitted(policy, a).map(|_| ()),
        // `remote` allows `role`, the service declares its group, and the command names it.
        Some(Action::ServiceRole(r)) => super::role::permitted(policy, r).map(|_| ()),
        Some(Action::TrafficSwitch(t)) => super::traffic::permitted(policy, t).map(|_| ()),
        Some(a) => match service_remote_op(a) {
            Some((service, op)) => policy.check_service_op(service, op).map_err(refused),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// The service an action names and the `remote` entry it needs; `None` for other actions.
pub fn service_remote_op(action: &Action) -> Option<(&str, RemoteOp)> {
    Some(match action {
        Action::ServiceStart(s) => (&s.service, RemoteOp::Start),
        Action::ServiceStop(s) => (&s.service, RemoteOp::Stop),
        Action::ServiceRestart(s) => (&s.service, RemoteOp::Restart),
        Action::ServiceReload(s) => (&s.service, RemoteOp::Reload),
        Action::App(a) => (&a.service, RemoteOp::App),
        Action::ServiceConfigApply(c) => (&c.service, RemoteOp::Config),
        Action::ServiceConfigRollback(c) => (&c.service, RemoteOp::Config),
        Action::ServiceDeploy(d) => (&d.service, RemoteOp::Deploy),
        Action::ServiceRole(r) => (&r.service, RemoteOp::Role),
        Action::TrafficSwitch(t) => (&t.service, RemoteOp::Switch),
        _ => return None,
    })
}

/// The action's name as `command_issued` spells it.
pub fn action_name(action: Option<&Action>) -> &'static str {
    match action {
        None => "none",
        Some(Action::Pause(_)) => "pause",
        Some(Action::Resume(_)) => "resume",
        Some(Action::Disable(_)) => "disable",
        Some(Action::Enable(_)) => "enable",
        Some(Action::Noop(_)) => "noop",
        Some(Action::BackupRun(_)) => "backup_run",
        Some(Action::RestoreTest(_)) => "restore_test",
        Some(Action::Restore(_)) => "restore",
        Some(Action::ConfigApply(_)) => "config_apply",
        Some(Action::ConfigRollback(_)) => "config_rollback",
        Some(Action::Drain(_)) => "drain",
        Some(Action::Undrain(_)) => "undrain",
        Some(Action::ResumeAll(_)) => "resume_all",
        Some(Action::ServiceStart(_)) => "service_start",
        Some(Action::ServiceStop(_)) => "service_stop",
        Some(Action::ServiceRestart(_)) => "service_restart",
        Some(Action::ServiceReload(_)) => "service_reload",
        Some(Action::App(_)) => "app",
        Some(Action::ServiceConfigApply(_)) => "service_config_apply",
        Some(Action::ServiceConfigRollback(_)) => "service_config_rollback",
        Some(Action::ServiceDeploy(_)) => "service_deploy",
        Some(Action::ServiceRole(_)) => "service_role",
        Some(Action::TrafficSwitch(_)) => "traffic_switch",
    }
}

/// Checks the payload against the catalog: a known module (of kind `backup` with that job for
/// backup_run / restore), a restore target and a non-empty config. Pure.
pub fn validate(action: Option<&Action>, catalog: &Catalog) -> Result<(), String> {
    let known = |module: &str| match catalog.kind_of(module) {
        Some(kind) => Ok(kind),
        None if module.is_empty() => Err("the command names no module".to_owned()),
        None => Err(format!("unknown module {module:?}")),
    };
    let backup_job = |module: &str, job: &str| {
        if known(module)? != "backup" {
            return Err(format!("module {module:?} is not a backup module"));
        }
        if !catalog
            .backup_jobs
            .iter()
            .any(|(m, j)| m == module && j == job)
        {
            return Err(format!("no backup job {job:?} in module {module:?}"));
        }
        Ok(())
    };
    match action {
        None => Err("the command has no action".to_owned()),
        Some(Action::Pause(a) | Action::Resume(a) | Action::Disable(a) | Action::Enable(a)) => {
            known(&a.module).map(|_| ())
        }
        Some(Action::Noop(_) | Action::Drain(_) | Action::Undrain(_) | Action::ResumeAll(_)) => {
            Ok(())
        }
        Some(Action::BackupRun(b)) => {
            let (module, job) = catalog.resolve_backup(&b.module, &b.job, None)?;
            if job.is_empty() {
                if known(&module)? != "backup" {
                    return Err(format!("module {module:?} is not a backup module"));
                }
                return Ok(());
            }
            backup_job(&module, &job)
        }
        Some(Action::RestoreTest(t)) => {
            if t.job.is_empty() {
                return Err("restore_test names no job".to_owned());
            }
            let (module, job) = catalog.resolve_backup(&t.module, &t.job, None)?;
            backup_job(&module, &job)
        }
        Some(Action::Restore(r)) => {
            let (module, job) = catalog.resolve_restore(r)?;
            backup_job(&module, &job)?;
            restore_target_problem(&r.target).map_or(Ok(()), Err)
        }
        Some(Action::ConfigApply(c)) => {
            known(&c.module)?;
            if c.config_toml.trim().is_empty() {
                return Err("config_apply carries no config".to_owned());
            }
            Ok(())
        }
        Some(
            a @ (Action::ServiceStart(_)
            | Action::ServiceStop(_)
            | Action::ServiceRestart(_)
            | Action::ServiceReload(_)
            | Action::App(_)
            | Action::ServiceConfigApply(_)
            | Action::ServiceConfigRollback(_)
            | Action::ServiceDeploy(_)
            | Action::ServiceRole(_)
            | Action::TrafficSwitch(_)),
        ) => {
            let Some((service, _)) = service_remote_op(a) else {
                return Err("the command names no service".to_owned());
            };
            if service.is_empty() {
                return Err("the command names no service".to_owned());
            }
            match catalog.kind_of(service) {
                Some("service") => {}
                Some(kind) => {
                    return Err(format!(
                        "module {service:?} is a {kind} module, not a service"
                    ))
                }
                None => return Err(format!("no service {service:?} on this host")),
            }
            match a {
                Action::App(app) if app.action.trim().is_empty() => {
                    Err("the app command names no action".to_owned())
                }
                Action::ServiceConfigRollback(c) if c.fingerprint.trim().is_empty() => {
                    Err("service_config_rollback names no fingerprint".to_owned())
                }
                Action::ServiceDeploy(d) if d.version.trim().is_empty() => {
                    Err("service_deploy names no version".to_owned())
                }
                Action::ServiceDeploy(d)
                    if crate::config::version_problem(&d.version).is_some() =>
                {
                    let why = crate::config::version_problem(&d.version).unwrap_or_default();
                    Err(format!(
                        "service_deploy: version {:?} refused: {why}",
                        d.version
                    ))
                }
                Action::ServiceDeploy(d)
                    if !d.artifact.trim().is_empty() && d.sha256.trim().is_empty() =>
                {
                    Err("service_deploy gives an artifact without its sha256".to_owned())
                }
                Action::ServiceRole(r) if !matches!(r.role.as_str(), "active" | "standby") => {
                    Err(format!(
                        "service_role: unknown role {:?} (active or standby)",
                        r.role
                    ))
                }
                _ => Ok(()),
            }
        }
        Some(Action::ConfigRollback(c)) => {
            known(&c.module)?;
            if c.config_toml.trim().is_empty() {
                return Err("config_rollback carries no config".to_owned());
            }
            if c.fingerprint.is_empty() {
                return Err("config_rollback names no fingerprint".to_owned());
            }
            Ok(())
        }
    }
}
