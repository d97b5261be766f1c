//! `HostPolicy`: the `[policy]` section plus what the config file itself already uses (each
//! module's kind, its log paths, janitor roots, backup sources, destinations and pre_backup
//! commands, command probes), and the pure decisions about a remote module config or restore target. Symlinks
//! are resolved through a `resolve` function (the file system in the agent, a table in tests).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::{glob_base, is_under, lexical, normalise, PolicyConfig};
use crate::config::{
    AgentConfig, BackupConfig, HealthConfig, ModuleConfig, ProbeType, RemoteConfig, RemoteKind,
    RemoteOp, ServiceConfig,
};

/// Where a remote config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// A `config_apply` / `config_rollback` command from the active coordinator.
    Command,
    /// The admin HTTP routes (Unix socket or token-guarded TCP): never a kind change, never a
    /// new command probe, whatever `[policy]` says.
    Admin,
}

/// One rule a remote change breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule, as the config file spells it: `policy.log_paths`, `policy.allow_kind_change`.
    pub rule: &'static str,
    /// The offending key of the remote config (`paths[0]`, `jobs[1].sources[0]`, `type`), or
    /// `target` for a restore.
    pub key: String,
    pub reason: String,
}

impl Violation {
    /// `(key, "refused by <rule>: <reason>")`, as a config problem.
    pub fn problem(&self) -> (String, String) {
        (
            self.key.clone(),
            format!("refused by {}: {}", self.rule, self.reason),
        )
    }
}

/// Resolves symlinks with the real file system: `None` when the path does not exist. A
/// dangling symlink resolves to its target (lexically), so it cannot smuggle a path in
/// before its target is created.
pub fn fs_resolve(path: &Path) -> Option<PathBuf> {
    if let Ok(real) = std::fs::canonicalize(path) {
        return Some(real);
    }
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_symlink() {
        return Some(path.to_owned());
    }
    let target = std::fs::read_link(path).ok()?;
    let joined = match path.parent() {
        Some(parent) if !target.is_absolute() => parent.join(target),
        _ => target,
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The host's policy and the paths, kinds and probes of its own config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostPolicy {
    policy: PolicyConfig,
    kinds: BTreeMap<String, &'static str>,
    log_paths: Vec<String>,
    janitor_roots: Vec<PathBuf>,
    backup_sources: Vec<PathBuf>,
    backup_destinations: Vec<PathBuf>,
    command_probes: Vec<Vec<String>>,
    /// Files the file's probes read (`ca_file`, a cert probe's `path`) and the URLs it probes
    /// with `insecure = true`: a remote config may repeat these, never add one.
    probe_files: Vec<PathBuf>,
    insecure_urls: Vec<String>,
    /// The `pre_backup` commands of the file's backup jobs: a remote config may only repeat one.
    pre_backup_commands: Vec<Vec<String>>,
    /// The `verify_check` commands of the file's backup jobs: the same rule.
    verify_check_commands: Vec<Vec<String>>,
    /// Service modules of the file by name: a remote config may only repeat them verbatim.
    services: BTreeMap<String, ServiceConfig>,
    /// The S3 remotes of the file's backup jobs: a remote config may only repeat one.
    s3_remotes: Vec<RemoteConfig>,
}

impl HostPolicy {
    /// The policy of an agent config file.
    pub fn from_config(cfg: &AgentConfig) -> Self {
        Self::new(cfg.policy.clone(), &cfg.modules)
    }

    /// `policy` with the file's `modules`.
    pub fn new(policy: PolicyConfig, modules: &[ModuleConfig]) -> Self {
        let mut hp = HostPolicy {
            policy,
            ..HostPolicy::default()
        };
        for m in modules {
            hp.kinds.insert(m.name().to_owned(), m.kind());
            match m {
                ModuleConfig::Log(c) => hp.log_paths.extend(c.paths.iter().cloned()),
                ModuleConfig::Janitor(c) => {
                    hp.janitor_roots
                        .extend(c.roots.iter().map(|r| r.path.clone()));
                }
                ModuleConfig::Backup(c) => {
                    for j in &c.jobs {
                        hp.backup_sources.extend(j.sources.iter().cloned());
                        hp.backup_destinations.push(j.destination.clone());
                        if let Some(r) = &j.remote {
                            match r.kind {
                                RemoteKind::Path => hp.backup_destinations.push(r.path.clone()),
                                RemoteKind::S3 => hp.s3_remotes.push(r.clone()),
                            }
                        }
                        hp.pre_backup_commands
                            .extend(j.pre_backup.iter().map(|p| p.command.clone()));
                        hp.verify_check_commands
                            .extend(j.verify_check.iter().map(|c| c.command.clone()));
                    }
                }
                ModuleConfig::Health(c) => {
                    hp.command_probes.extend(
                        c.probes
                            .iter()
                            .filter(|p| p.probe == ProbeType::Command)
                            .filter_map(|p| p.argv.clone()),
                    );
                    for p in &c.probes {
                        hp.probe_files
                            .extend(p.ca_file.iter().chain(&p.path).cloned());
                        if p.insecure {
                            hp.insecure_urls.extend(p.url.clone());
                        }
                    }
                }
                ModuleConfig::Service(c) => {
                    hp.services.insert(m.name().to_owned(), c.clone());
                }
                _ => {}
            }
        }
        hp
    }

    pub fn policy(&self) -> &PolicyConfig {
        &self.policy
    }

    /// The config file's entry of service `name` (what remote actions on it go by).
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.get(name)
    }

    /// Every rule `cfg`, offered remotely through `surface` for module `name` (now of kind
    /// `current_kind`), breaks; empty = allowed. Pure given `resolve`.
    pub fn check_module(
        &self,
        name: &str,
        current_kind: &str,
        cfg: &ModuleConfig,
        surface: Surface,
        resolve: &dyn Fn(&Path) -> Option<PathBuf>,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let declared = self.kinds.get(name).copied().unwrap_or(current_kind);
        if cfg.kind() != declared && !remote_ok(self.policy.allow_kind_change, surface) {
            out.push(Violation {
                rule: "policy.allow_kind_change",
                key: "type".to_owned(),
                reason: format!(
                    "module {name} is a {declared} module in the config file; {}",
                    match surface {
                        Surface::Admin => "the admin routes never change a module's kind",
                        Surface::Command => "remote configs may not change its kind",
                    }
                ),
            });
        }
        out.extend(self.path_violations(cfg, &PathRule { resolve }));
        if let ModuleConfig::Health(c) = cfg {
            out.extend(self.probe_violations(c, surface));
        }
        if let ModuleConfig::Backup(c) = cfg {
            out.extend(self.pre_backup_violations(c));
        }
        match cfg {
            ModuleConfig::Service(c) => out.extend(self.service_violation(name, c)),
            // Replacing a service by another kind would stop it (and going back start it),
            // whatever its `remote` list says: never, whatever `allow_kind_change` says.
            _ if self.services.contains_key(name) => out.push(Violation {
                rule: "service modules",
                key: "type".to_owned(),
                reason: format!(
                    "{name:?} is a service in the config file; no remote config replaces it by \
                     another kind"
                ),
            }),
            _ => {}
        }
        out
    }

    /// A service runs a program: no remote surface may start or change one (no `[policy]`
    /// allowance exists), only repeat the file's entry of that name as it is.
    fn service_violation(&self, name: &str, c: &ServiceConfig) -> Option<Violation> {
        if self.services.get(name) == Some(c) {
            return None;
        }
        Some(Violation {
            rule: "service modules",
            key: "argv".to_owned(),
            reason: format!(
                "service {name:?} differs from the config file's; services are set in the file only"
            ),
        })
    }

    /// The paths of a log, janitor or backup module outside both the policy and the file.
    fn path_violations(&self, cfg: &ModuleConfig, paths: &PathRule<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        match cfg {
            ModuleConfig::Log(c) => {
                for (i, p) in c.paths.iter().enumerate() {
                    if self.log_paths.contains(p) {
                        continue;
                    }
                    out.extend(paths.log(&format!("paths[{i}]"), p, &self.policy.log_paths));
                }
            }
            ModuleConfig::Janitor(c) => {
                for (i, r) in c.roots.iter().enumerate() {
                    out.extend(paths.check(
                        "policy.janitor_roots",
                        format!("roots[{i}].path"),
                        &r.path,
                        &self.policy.janitor_roots,
                        &self.janitor_roots,
                    ));
                }
            }
            ModuleConfig::Backup(c) => {
                for (i, j) in c.jobs.iter().enumerate() {
                    for (k, s) in j.sources.iter().enumerate() {
                        out.extend(paths.check(
                            "policy.backup_sources",
                            format!("jobs[{i}].sources[{k}]"),
                            s,
                            &self.policy.backup_sources,
                            &self.backup_sources,
                        ));
                    }
                    out.extend(paths.check(
                        "policy.backup_destinations",
                        format!("jobs[{i}].destination"),
                        &j.destination,
                        &self.policy.backup_destinations,
                        &self.backup_destinations,
                    ));
                    // The remote copy is written (and pruned) like the destination; an
                    // S3 bucket (data leaving the host) only as the file names it.
                    if let Some(r) = j.remote.as_ref().filter(|r| r.kind == RemoteKind::S3) {
                        out.extend(s3_remote_violation(i, r, &self.s3_remotes));
                    } else if let Some(r) = &j.remote {
                        out.extend(paths.check(
                            "policy.backup_destinations",
                            format!("jobs[{i}].remote.path"),
                            &r.path,
                            &self.policy.backup_destinations,
                            &self.backup_destinations,
                        ));
                    }
                }
            }
            ModuleConfig::Health(_)
            | ModuleConfig::Heartbeat(_)
            | ModuleConfig::Disk(_)
            | ModuleConfig::Sentinel(_)
            | ModuleConfig::Service(_) => {}
        }
        out
    }

    /// A `pre_backup` step and a `verify_check` run a program: no remote surface may add one
    /// or change its command (no `[policy]` allowance exists), only repeat one of the file's
    /// jobs.
    fn pre_backup_violations(&self, c: &BackupConfig) -> Vec<Violation> {
        let mut out = Vec::new();
        for (i, j) in c.jobs.iter().enumerate() {
            let steps = [
                (
                    "pre_backup",
                    j.pre_backup.as_ref().map(|p| &p.command),
                    &self.pre_backup_commands,
                ),
                (
                    "verify_check",
                    j.verify_check.as_ref().map(|v| &v.command),
                    &self.verify_check_commands,
                ),
            ];
            for (what, command, known) in steps {
                let Some(command) = command.filter(|c| !known.contains(c)) else {
                    continue;
                };
                out.push(Violation {
                    rule: if what == "pre_backup" {
                        "pre_backup commands"
                    } else {
                        "verify_check commands"
                    },
                    key: format!("jobs[{i}].{what}.command"),
                    reason: format!(
                        "{what} command {command:?} is not in the config file (same command); \
                         {what} commands are set in the file only"
                    ),
                });
            }
        }
        out
    }

    /// Command probes whose argv the file does not already run; files a probe would read and
    /// unverified TLS the file does not already have (no `[policy]` key allows those).
    fn probe_violations(&self, c: &HealthConfig, surface: Surface) -> Vec<Violation> {
        let mut out = Vec::new();
        for (i, p) in c.probes.iter().enumerate() {
            for (key, file) in [("ca_file", &p.ca_file), ("path", &p.path)] {
                match file {
                    Some(f) if !self.probe_files.contains(f) => out.push(Violation {
                        rule: "health probe files",
                        key: format!("probes[{i}].{key}"),
                        reason: format!(
                            "{} is not read by a probe of the config file; remote configs may \
                             only repeat the file's probe files",
                            f.display()
                        ),
                    }),
                    _ => {}
                }
            }
            let known_insecure = p
                .url
                .as_ref()
                .is_some_and(|u| self.insecure_urls.contains(u));
            if p.insecure && !known_insecure {
                out.push(Violation {
                    rule: "health probe tls",
                    key: format!("probes[{i}].insecure"),
                    reason: format!(
                        "probe {:?}: insecure = true turns certificate checks off; only the \
                         config file may do that (for this url)",
                        p.name
                    ),
                });
            }
            if p.probe != ProbeType::Command {
                continue;
            }
            let known = p
                .argv
                .as_ref()
                .is_some_and(|a| self.command_probes.contains(a));
            if known || remote_ok(self.policy.allow_command_probes, surface) {
                continue;
            }
            out.push(Violation {
                rule: "policy.allow_command_probes",
                key: format!("probes[{i}]"),
                reason: format!(
                    "command probe {:?} is not in the config file (same argv); {}",
                    p.name,
                    match surface {
                        Surface::Admin => "the admin routes never add command probes",
                        Surface::Command => "remote configs may not add command probes",
                    }
                ),
            });
        }
        out
    }

    /// Whether the file's entry of service `service` allows the remote action `op` (its
    /// `remote` list). A service the file does not declare allows nothing. Pure.
    pub fn check_service_op(&self, service: &str, op: RemoteOp) -> Result<(), Violation> {
        let refuse = |reason: String| Violation {
            rule: "service.remote",
            key: format!("{service}.remote"),
            reason,
        };
        match self.services.get(service) {
            None => Err(refuse(format!(
                "{service:?} is not a service of this host's config file"
            ))),
            Some(s) if s.remote.contains(&op) => Ok(()),
            Some(s) => Err(refuse(format!(
                "the host's config file does not allow {} on service {service:?} (remote = [{}])",
                op.as_str(),
                s.remote
                    .iter()
                    .map(|o| format!("{:?}", o.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Whether a `restore` may write into `target`: it must lie under `policy.restore_targets`
    /// (empty: no remote restore). Pure given `resolve`.
    pub fn check_restore_target(
        &self,
        target: &Path,
        resolve: &dyn Fn(&Path) -> Option<PathBuf>,
    ) -> Result<(), Violation> {
        let paths = PathRule { resolve };
        match paths.check(
            "policy.restore_targets",
            "target".to_owned(),
            target,
            &self.policy.restore_targets,
            &[],
        ) {
            None => Ok(()),
            Some(v) => Err(v),
        }
    }
}

/// A `[policy]` allowance applies to commands only; the admin routes never get it.
fn remote_ok(flag: bool, surface: Surface) -> bool {
    flag && surface == Surface::Command
}

/// Path checks against allowed roots, with one symlink resolver.
struct PathRule<'a> {
    resolve: &'a dyn Fn(&Path) -> Option<PathBuf>,
}

impl PathRule<'_> {
    fn roots(&self, lists: &[&[PathBuf]]) -> Vec<PathBuf> {
        lists
            .iter()
            .flat_map(|l| l.iter())
            .filter_map(|r| normalise(r, self.resolve).ok())
            .collect()
    }

    /// A violation of `rule` unless `path` (normalised) is under one of `policy` or `file`.
    fn check(
        &self,
        rule: &'static str,
        key: String,
        path: &Path,
        policy: &[PathBuf],
        file: &[PathBuf],
    ) -> Option<Violation> {
        let real = match normalise(path, self.resolve) {
            Ok(p) => p,
            Err(reason) => {
                return Some(Violation {
                    rule,
                    key,
                    reason: format!("{path:?} {reason}"),
                })
            }
        };
        let roots = self.roots(&[policy, file]);
        if roots.iter().any(|r| is_under(&real, r)) {
            return None;
        }
        Some(Violation {
            rule,
            key,
            reason: format!(
                "{} is not under {rule} ({}){}",
                shown(path, &real),
                listed(policy),
                if rule == "policy.restore_targets" {
                    String::new()
                } else {
                    " nor under a path of the config file's own modules".to_owned()
                }
            ),
        })
    }

    /// A log path or glob: its directory part before any glob character must lie under one
    /// of `policy` (paths the file itself reads were let through before).
    fn log(&self, key: &str, pattern: &str, policy: &[PathBuf]) -> Option<Violation> {
        let rule = "policy.log_paths";
        if let Err(reason) = lexical(Path::new(pattern)) {
            return Some(Violation {
                rule,
                key: key.to_owned(),
                reason: format!("{pattern:?} {reason}"),
            });
        }
        let (base, _) = glob_base(pattern);
        let real = normalise(&base, self.resolve).unwrap_or(base.clone());
        if self.roots(&[policy]).iter().any(|r| is_under(&real, r)) {
            return None;
        }
        Some(Violation {
            rule,
            key: key.to_owned(),
            reason: format!(
                "{pattern:?}{} is not under {rule} ({}) nor a path the config file reads",
                if real.as_path() == Path::new(pattern) {
                    String::new()
                } else {
                    format!(" (reads below {})", real.display())
                },
                listed(policy)
            ),
        })
    }
}

fn shown(path: &Path, real: &Path) -> String {
    if path == real {
        format!("{path:?}")
    } else {
        format!("{path:?} (resolves to {real:?})")
    }
}

fn listed(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        "empty".to_owned()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A remote config's S3 remote that is not one of the file's (same bucket, prefix,
/// endpoint, region, credentials and `allow_http`; `reconcile_every` may differ): refused,
/// whatever the policy — it would send the host's data elsewhere.
fn s3_remote_violation(i: usize, r: &RemoteConfig, file: &[RemoteConfig]) -> Option<Violation> {
    let same = |f: &RemoteConfig| {
        (
            &f.bucket,
            &f.prefix,
            &f.endpoint,
            &f.region,
            &f.credentials_file,
            f.allow_http,
        ) == (
            &r.bucket,
            &r.prefix,
            &r.endpoint,
            &r.region,
            &r.credentials_file,
            r.allow_http,
        )
    };
    (!file.iter().any(same)).then(|| Violation {
        rule: "s3 remotes",
        key: format!("jobs[{i}].remote"),
        reason: format!(
            "{} is not an S3 remote of the config file; S3 remotes are set in the file only",
            r.label()
        ),
    })
}
