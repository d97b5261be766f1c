//! The flags of opsctl's subcommand groups (`alerts`, `backup`, `service`, `config`),
//! re-exported by `args`.

use clap::{Args, Subcommand};
use opsfleet_cli::{configs, roll, silences, verbs, views};

use super::Targets;

/// `opsctl alerts [FLAGS]` lists; `opsctl alerts ack ID` acknowledges.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsCmd {
    #[command(subcommand)]
    pub action: Option<AlertsAction>,
    #[command(flatten)]
    pub list: views::AlertsArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AlertsAction {
    /// Acknowledge a firing (or pending) alert: shown in `opsctl alerts` until its next
    /// transition. Needs the operator role.
    #[command(after_help = silences::ACK_HELP)]
    Ack(silences::AckArgs),
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Run a backup job now, outside its schedule, and report the archive written.
    Run {
        #[command(flatten)]
        what: verbs::BackupRunArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// Run a job's restore test now (as its `verify_restore` schedule would): its newest
    /// archive (from its remote when it has one) restored into a scratch directory on the
    /// host, verified against its manifest, its `verify_check` run on it, and removed. Done
    /// with the test's result; `opsctl backups` shows it too.
    Verify {
        #[command(flatten)]
        what: verbs::BackupVerifyArgs,
        #[command(flatten)]
        targets: Targets,
    },
}

/// `opsctl service start|stop|restart|reload <svc>` and `opsctl service config ...`.
#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Start a service stopped by `service stop` (or one waiting for its restart backoff);
    /// done once it runs and its health probes say ready.
    #[command(after_help = SERVICE_HELP)]
    Start(ServiceOpTargets),
    /// Stop a service: SIGTERM to its process group, SIGKILL after its `stop_grace`. It
    /// stays stopped, across agent restarts, until `service start`.
    #[command(after_help = SERVICE_HELP)]
    Stop(ServiceOpTargets),
    /// Restart a service (stop with its grace, then start), host by host: each host is done
    /// once the service runs again and is ready by its own probes, before the next host gets
    /// the command.
    #[command(after_help = SERVICE_HELP)]
    Restart(ServiceOpTargets),
    /// Reload a running service: its `reload_signal` (HUP by default) to its process group,
    /// or its `reload_argv` command; done once it is ready again.
    #[command(after_help = SERVICE_HELP)]
    Reload(ServiceOpTargets),
    /// Put a version of a service in place and run it, host by host: each host fetches the
    /// artifact (or uses a release it keeps), checks its sha256, switches `current`, restarts
    /// the service and is done once it is ready again, before the next host gets it.
    #[command(after_help = SERVICE_DEPLOY_HELP)]
    Deploy(ServiceDeployTargets),
    /// A service's own config files: apply a new content, roll back to a kept one, history.
    #[command(subcommand, after_help = opsfleet_cli::service_config::SERVICE_CONFIG_HELP)]
    Config(crate::service_config::ServiceConfigCommand),
    /// Move an active/standby group's active role now (operator role): the old active is
    /// told `standby`, the new one `active`; done once the new one reports it. Prints how long
    /// it took.
    #[command(after_help = opsfleet_cli::groups::GROUPS_HELP)]
    Failover(opsfleet_cli::groups::ServiceFailoverArgs),
    /// Active/standby groups: each member's role, state, health, host liveness and fitness,
    /// and the group's last failovers.
    #[command(after_help = opsfleet_cli::groups::GROUPS_HELP)]
    Groups(opsfleet_cli::groups::GroupsArgs),
}

impl ServiceCommand {
    /// The lifecycle verb and its targets; `None` for `service config`.
    pub fn split(self) -> Option<(roll::ServiceVerb, ServiceOpTargets)> {
        Some(match self {
            ServiceCommand::Start(t) => (roll::ServiceVerb::Start, t),
            ServiceCommand::Stop(t) => (roll::ServiceVerb::Stop, t),
            ServiceCommand::Restart(t) => (roll::ServiceVerb::Restart, t),
            ServiceCommand::Reload(t) => (roll::ServiceVerb::Reload, t),
            ServiceCommand::Deploy(d) => (
                roll::ServiceVerb::Deploy(d.spec),
                ServiceOpTargets {
                    what: d.what,
                    targets: d.targets,
                },
            ),
            ServiceCommand::Config(_) | ServiceCommand::Failover(_) | ServiceCommand::Groups(_) => {
                return None
            }
        })
    }

    pub(super) fn targets(&self) -> Option<&Targets> {
        match self {
            ServiceCommand::Start(t)
            | ServiceCommand::Stop(t)
            | ServiceCommand::Restart(t)
            | ServiceCommand::Reload(t) => Some(&t.targets),
            ServiceCommand::Deploy(d) => Some(&d.targets),
            ServiceCommand::Config(c) => c.targets(),
            ServiceCommand::Failover(_) | ServiceCommand::Groups(_) => None,
        }
    }
}

/// A service, how many hosts at a time, and which hosts.
#[derive(Args, Debug)]
pub struct ServiceOpTargets {
    #[command(flatten)]
    pub what: roll::ServiceOpArgs,
    #[command(flatten)]
    pub targets: Targets,
}

/// A deploy: the service, the version, how many hosts at a time, which hosts.
#[derive(Args, Debug)]
pub struct ServiceDeployTargets {
    #[command(flatten)]
    pub what: roll::ServiceOpArgs,
    #[command(flatten)]
    pub spec: roll::DeploySpec,
    #[command(flatten)]
    pub targets: Targets,
}

/// Examples shown by `opsctl service deploy --help`.
pub const SERVICE_DEPLOY_HELP: &str = "\
Each host puts the release in <dir>/releases/<version>/ (its [modules.deploy] section), points
<dir>/current at it and restarts the service; a compose service gets the image tag <version>
and `up -d`. Without --artifact the host must keep the release (going back needs no network:
`opsctl service deploy app --version <previous> --all`). A host that fails after the switch
keeps the new version and says so; the roll stops there (exit 1) and the hosts not attempted
are listed. Each batch is waited for 10m unless --wait says otherwise.

The host's own config must allow it (`remote = [\"deploy\"]` and [modules.deploy] in the
service's entry); the action needs the admin role.

Examples:
  opsctl service deploy app --version 1.4.2 --artifact https://repo.local/app-1.4.2.tar.gz \\
      --sha256 9f2c...e1 --all                          one host at a time, health gated
  opsctl service deploy app --version 1.4.1 --label role=web --max-parallel 2
  opsctl service deploy app --version 1.4.2 --artifact /srv/dist/app-1.4.2.tgz --sha256 9f2c...e1 \\
      --host web-01 --ready-samples 3 -o json";

/// Examples shown by `opsctl service <verb> --help`.
pub const SERVICE_HELP: &str = "\
Hosts are those that have the service (as `opsctl services` lists them) among --host (names or
globs), --label and --all; they are taken in name order, --max-parallel at a time (default 1).
Each batch is waited for (--wait; by default 2m for start, restart and reload, beyond the
default ready_timeout of 60s, and 1m for stop: give more to a service with a longer
ready_timeout) before the next one is sent; the first host that does not complete stops the roll, and every
host not attempted is listed (exit 1). Progress goes to stderr.

The host's own config must allow the action (`remote = [\"restart\", ...]` in the service's
entry); the action needs the operator role.

Examples:
  opsctl service restart app --all                      one host at a time, health gated
  opsctl service restart app --label role=web --max-parallel 2 --wait 3m
  opsctl service stop app --host web-01                 stays stopped until `service start`
  opsctl service reload app --host 'web-*' -o json";

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Replace a module's config; each agent validates it and keeps the old one if it is bad.
    Apply {
        #[command(flatten)]
        what: verbs::ConfigApplyArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// Go back to the module config with this fingerprint, as recorded in the log
    /// (`opsctl config history` lists them).
    Rollback {
        #[command(flatten)]
        what: verbs::ConfigRollbackArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// A module's config on a host: 64-hex fingerprint and TOML (default: the current one).
    ///
    /// With --fingerprint, one it ran before (`config history` lists them). Module configs
    /// are shown as the agent announced them, not redacted: they travel in events every
    /// viewer can read, so they must hold no secrets.
    Show(configs::ConfigShowArgs),
    /// The configs a module ran on a host: fingerprints, dates, `*` on the current one.
    ///
    /// Every config the log kept (up to 8), oldest first, with when each was first and last
    /// seen. These are the fingerprints `config rollback --to` and `config show|diff` take (a
    /// unique prefix of 8+ hex digits is enough).
    History(configs::ConfigReadArgs),
    /// What changed between two configs of a module, line by line.
    ///
    /// `-` lines are only in --from, `+` lines only in --to; by default the previous config
    /// against the current one.
    ///
    /// Example: `opsctl config diff disk --host web-01 --from 3fa2c1d0 --to 9b7e55aa`.
    Diff(configs::ConfigDiffArgs),
}
