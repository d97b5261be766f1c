//! opsctl's flags and subcommands (clap): the connection flags every command shares, the
//! targets of command verbs, and one variant per subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use opsfleet_bus::{NatsConfig, TlsConfig};
use opsfleet_cli::rollout::args::{RolloutCommand, RolloutsArgs};
use opsfleet_cli::rollout::help::ROLLOUTS_HELP;
use opsfleet_cli::{silences, verbs, views};
use opsfleet_proto::api::Role;

mod groups;
pub use groups::*;

/// Operate an opsfleet cluster: fleet status, hosts, alerts, backups, incidents and live events;
/// pause/resume modules, run backups, restore, apply or roll back configs; start, stop, restart,
/// reload or deploy supervised services (rolling, health gated); leader, failover and failover drills;
/// the audit trail.
///
/// Talks to the coordinators over NATS request/reply (`ops.api.*`). Every command accepts
/// `--output json` for scripts.
#[derive(Parser, Debug)]
#[command(name = "opsctl", version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// Examples under `opsctl app --help`.
const APP_EXAMPLES: &str = "Examples:
  opsctl app web pipeline.pause --arg reason=deploy --host web-01
  opsctl app web module.disable --arg module=ingest --label role=web
  opsctl app web pipeline.resume --all -o json

The result column shows each app's answer, e.g. `app answered 200: {\"status\": \"done\"}`.";

/// The exit codes, shown under `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 ok; 1 the operation failed (a command not completed \
on every host, a refusal, no active coordinator for `leader`); 2 usage (bad flags, a missing \
target); 3 cluster unreachable (NATS down, or no coordinator answering). Output cut short by \
its reader (`opsctl events | head`) ends opsctl quietly with 0.";

#[derive(Args, Debug)]
pub struct ConnArgs {
    /// NATS server URL(s); repeat the flag or separate with commas.
    #[arg(
        long = "nats",
        global = true,
        env = "OPS_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    pub urls: Vec<String>,
    /// NATS credentials file (.creds) with your operator identity.
    #[arg(long, global = true, env = "OPS_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// File with your NATS nkey seed (`SU...`), for servers that list users by nkey.
    #[arg(long, global = true, env = "OPS_NATS_NKEY")]
    pub nkey: Option<PathBuf>,
    /// Your operator name as the NATS permissions know it: replies come on `_INBOX.<name>`,
    /// actions go on `ops.api.as.<name>.<role>.command|failover|rollout` and are recorded as
    /// issued by you in that role.
    ///
    /// Roles (each includes the ones before it): viewer reads (status, hosts, commands, audit,
    /// events, rollouts); operator also pauses/resumes/disables/enables modules, runs noop,
    /// drain, backup run, app actions, service start/stop/restart/reload, failover (and the
    /// drill), drill run and rollout pause/resume/abort; admin also runs config apply/rollback, service
    /// config apply/rollback, service deploy, restore and rollout start/promote/undo. Your
    /// NATS identity holds the roles its permissions grant; opsctl acts in the role the action
    /// needs (or --role). A refused action exits non-zero naming the role it
    /// needs. Without --operator, actions go on plain subjects, which coordinators refuse
    /// unless their config says `[api] allow_unidentified = true` (insecure demo setups).
    #[arg(long, global = true, env = "OPS_OPERATOR")]
    pub operator: Option<String>,
    /// Act in this role (viewer, operator, admin) instead of the least one the action needs;
    /// needs --operator.
    #[arg(long, global = true, env = "OPS_ROLE", requires = "operator", value_parser = parse_role)]
    pub role: Option<Role>,
    /// CA certificate to verify the NATS server (enables TLS).
    #[arg(long, global = true, env = "OPS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (with --tls-key).
    #[arg(long, global = true, env = "OPS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS (with --tls-cert).
    #[arg(long, global = true, env = "OPS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How long to wait for an answer, e.g. 5s, 500ms.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl ConnArgs {
    pub fn nats_config(&self) -> NatsConfig {
        let tls = (self.tls_ca.is_some() || self.tls_cert.is_some()).then(|| TlsConfig {
            ca: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        });
        NatsConfig {
            urls: self.urls.clone(),
            creds: self.creds.clone(),
            nkey: self.nkey.clone(),
            inbox_prefix: self.operator.as_ref().map(|o| format!("_INBOX.{o}")),
            tls,
            request_timeout: self.timeout,
        }
    }
}

/// Which hosts a command goes to, and how long to wait for them.
#[derive(Args, Debug)]
pub struct Targets {
    /// Target host, or a glob of host names (`web-*`, `db-0?`); repeat for several. A command
    /// needs --host, --all or --label. A host named exactly must exist and have the module;
    /// hosts matched by a glob, --all or --label that lack it are skipped (and reported).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Also every host whose agent declares this label (`role=web`); repeat to require
    /// several.
    #[arg(long = "label", value_parser = verbs::parse_label, conflicts_with = "all")]
    pub labels: Vec<(String, String)>,
    /// Every host the coordinators know (that has the command's module).
    #[arg(long, conflicts_with = "hosts")]
    pub all: bool,
    /// The command expires unless its agent starts it within this time (an offline agent
    /// that returns later gets it until then). Required: more than 0 and at most the
    /// coordinators' `[api] max_deadline` (24h by default).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Return once the commands are issued, without waiting for the agents.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for every agent's answer [default: 30s; `service start|restart|reload`:
    /// 2m per batch, beyond a service's default `ready_timeout` of 60s; `service stop`: 1m].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
}

/// `--wait` when not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

impl Targets {
    /// `--wait`, or `default` when not given.
    pub fn wait_or(&self, default: Duration) -> Duration {
        self.wait.unwrap_or(default)
    }

    fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.labels.is_empty() && !self.all
    }
}

#[derive(Args, Debug)]
pub struct ModuleTargets {
    /// The module instance, as named in the agents' configs (e.g. `log`, `nightly-db`).
    pub module: String,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Args, Debug)]
pub struct ResumeTargets {
    /// The module instance to resume (e.g. `log`); or `--all-modules`.
    #[arg(
        required_unless_present = "all_modules",
        conflicts_with = "all_modules"
    )]
    pub module: Option<String>,
    /// Resume every paused module on the target hosts.
    #[arg(long)]
    pub all_modules: bool,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fleet overview: every host's last event, seq, disks, modules and seq gaps.
    ///
    /// Asks `ops.api.status`; the first coordinator to answer wins (its name is printed).
    Status {
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// Ask this coordinator (by name) instead of whichever answers first.
        #[arg(long)]
        coordinator: Option<String>,
    },
    /// Which coordinator is active, under which epoch, and how far each one has read.
    Leader,
    /// One line per host: liveness (up / late / lost), last report, worst disk, modules, and
    /// trouble (failing probes, log incidents, failing backups, services not running, missing
    /// events).
    ///
    /// Every coordinator answers, standby included; the header says which one did.
    #[command(after_help = views::HOSTS_HELP)]
    Hosts(views::HostsArgs),
    /// The backup catalog: per host and job, the last success (archive, size, files, time
    /// taken), the last failure and its reason, archives kept and pruned.
    #[command(after_help = views::BACKUPS_HELP)]
    Backups(views::BackupsArgs),
    /// Log incidents: per host and log file, how many ERROR/Traceback matches, first and last
    /// seen, how many lines the agent's rate limit suppressed, and the latest excerpt.
    #[command(after_help = views::INCIDENTS_HELP)]
    Incidents(views::IncidentsArgs),
    /// Alerts as the log knows them: state, rule, host, subject, since when, the last
    /// transition, how many notifications were sent, and whether a silence holds it or an
    /// operator acknowledged it; `alerts ack` acknowledges one.
    #[command(after_help = views::ALERTS_HELP)]
    Alerts(AlertsCmd),
    /// Silences: hold alerts' notifications for a while (maintenance), list them, end one.
    /// Silenced alerts still fire and show in `opsctl alerts`.
    #[command(subcommand)]
    Silence(silences::SilenceCommand),
    /// Supervised services (`service` modules): per host and service, the state (running,
    /// failed, stopping, stopped), health, version, since when, pid, restarts and how the last
    /// run ended.
    #[command(after_help = views::SERVICES_HELP)]
    Services(views::ServicesArgs),
    /// Pause a module: it stays scheduled but does not run until resumed (survives restarts).
    Pause(ModuleTargets),
    /// Resume a paused module, or with `--all-modules` every paused module (whoever paused
    /// it): `opsctl resume log --host web-01`, `opsctl resume --all-modules --host web-01`.
    Resume(ResumeTargets),
    /// Disable a module: it does not run and reports itself disabled (survives restarts).
    Disable(ModuleTargets),
    /// Enable a disabled module.
    Enable(ModuleTargets),
    /// A command that does nothing: proves the command path to the agents under the current
    /// epoch (failover drills use it).
    Noop(Targets),
    /// Put hosts in maintenance: pause every running module except the heartbeat and flush
    /// the outbox. The host stays visibly alive and no alert pages for it until `undrain`;
    /// `hosts` and `status` show it in maintenance.
    Drain(Targets),
    /// Take hosts out of maintenance: resume exactly the modules the drain paused (modules
    /// paused before the drain stay paused); alerts judge the host again.
    Undrain(Targets),
    /// Backups on demand: `opsctl backup run [--job J] --host H | --all`.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Restore an archive into a directory on the target host(s), verified against its
    /// manifest first: `opsctl restore --archive A --target DIR --host H`.
    Restore {
        #[command(flatten)]
        what: verbs::RestoreArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// Push a module config (`apply`), or go back to one the log knows (`rollback`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Send an action to a service's own control endpoint (`pipeline.pause`, ...) and show
    /// the app's answer per host.
    ///
    /// The host's file must allow it: the service has `app` in its `remote` list and declares
    /// the action, with each `--arg` name, under `[modules.control]`; otherwise the agent
    /// refuses the command naming what is allowed, and the app is sent nothing. The agent
    /// POSTs `{"action": ..., "args": {...}}` to the service's `http` endpoint (or makes a
    /// NATS request on its `nats_subject`); the command completes with `app answered 200:
    /// <body excerpt>` and fails on any other status, a timeout or no connection.
    #[command(after_help = APP_EXAMPLES)]
    App {
        #[command(flatten)]
        what: verbs::AppArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// Start, stop, restart, reload or deploy a supervised service on hosts, a few at a time,
    /// each host done only once the service is ready again: `opsctl service restart app --all`.
    #[command(subcommand, after_help = SERVICE_HELP)]
    Service(ServiceCommand),
    /// Roll a new version of a service out to hosts in gated waves (canary or blue-green),
    /// follow, pause, resume, promote, abort or undo it: `opsctl rollout start web --version
    /// 2.4.1 --label role=web`. docs/rollouts.md explains.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Rollouts, newest first: service, version, strategy, phase, wave, hosts updated, who
    /// started it and when, why it ended.
    #[command(after_help = ROLLOUTS_HELP)]
    Rollouts(RolloutsArgs),
    /// Scheduled drills (`[[drills]]`): schedule, next due, last runs and results.
    #[command(after_help = opsfleet_cli::drills::DRILLS_HELP)]
    Drills(opsfleet_cli::drills::DrillsArgs),
    /// Run a declared drill now: `opsctl drill run notify-test`.
    #[command(subcommand)]
    Drill(opsfleet_cli::drills::DrillCommand),
    /// The command ledger: each command's lifecycle per host, newest first. "Did host X ever run
    /// it?" always has an answer here.
    Commands {
        /// Only these command ids.
        #[arg(long)]
        id: Vec<String>,
        /// Only commands for this host.
        #[arg(long)]
        host: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The audit trail: who issued which command, when, to which host, and its outcome.
    Audit {
        /// Only commands issued by this operator (with its annotated names: `alice (drill)`,
        /// `alice (unverified)`).
        #[arg(long)]
        by: Option<String>,
        /// Only commands for this host.
        #[arg(long)]
        host: Option<String>,
        /// At most this many commands from the ledger.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Events from the stream, filtered; `--follow` keeps printing new ones.
    ///
    /// Examples: `opsctl events --host web-01 --follow`, `opsctl events --kind 'backup_*'
    /// --since 2h`, `opsctl events --since seq:1200 --output json`. Without --since, shows the
    /// last 15 minutes (or, with --follow, only new events).
    Events {
        /// Only this host (or coordinator).
        #[arg(long)]
        host: Option<String>,
        /// Only this module instance (e.g. `disk`, `nightly-db`).
        #[arg(long)]
        module: Option<String>,
        /// Only this kind; `*` matches any run of characters (`backup_*`).
        #[arg(long)]
        kind: Option<String>,
        /// Replay from a time ago (`10m`, `2h`) or from a stream sequence (`seq:1234`).
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new events until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// Graceful handover: the active coordinator stops acting and releases its lease; the
    /// named standby (or the first one) takes over. Waits for the new active and prints how
    /// long the takeover took.
    Failover {
        /// Hand over to this coordinator.
        #[arg(long, conflicts_with = "drill")]
        to: Option<String>,
        /// Rehearse: hand over to the standby and back, check that every agent runs a no-op
        /// under each new epoch, and report timings, events lost and commands run twice
        /// (exits non-zero unless both are zero).
        #[arg(long)]
        drill: bool,
        /// How long to wait for a new active coordinator.
        #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Prints a shell completion script for opsctl (no cluster needed).
    ///
    /// Examples: `opsctl completion bash > /etc/bash_completion.d/opsctl`,
    /// `opsctl completion zsh > "${fpath[1]}/_opsctl"`,
    /// `opsctl completion fish > ~/.config/fish/completions/opsctl.fish`.
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Writes man pages for opsctl and each subcommand (`opsctl.1`, `opsctl-status.1`, ...)
    /// into a directory (no cluster needed).
    ///
    /// Example: `opsctl man --dir /usr/local/share/man/man1`.
    Man {
        /// The directory to write the pages into (created if missing).
        #[arg(long)]
        dir: PathBuf,
    },
}

impl Command {
    /// The targets of a command verb; `None` for the other subcommands.
    fn targets(&self) -> Option<&Targets> {
        match self {
            Command::Pause(m) | Command::Disable(m) | Command::Enable(m) => Some(&m.targets),
            Command::Resume(r) => Some(&r.targets),
            Command::Noop(t) | Command::Drain(t) | Command::Undrain(t) => Some(t),
            Command::Backup(BackupCommand::Run { targets, .. })
            | Command::Backup(BackupCommand::Verify { targets, .. })
            | Command::Restore { targets, .. }
            | Command::Config(ConfigCommand::Apply { targets, .. })
            | Command::Config(ConfigCommand::Rollback { targets, .. })
            | Command::App { targets, .. } => Some(targets),
            Command::Service(s) => s.targets(),
            _ => None,
        }
    }
}

/// What clap cannot say itself: a command verb needs a target; `rollout start`'s flags must
/// make a rollout (refused before connecting, exit 2).
pub fn check(cli: &Cli) -> Result<(), clap::Error> {
    if cli.command.targets().is_some_and(Targets::is_empty) {
        return Err(Cli::command().error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "a command needs a target: --host, --all or --label",
        ));
    }
    if let Command::Rollout(RolloutCommand::Start(a)) = &cli.command {
        if let Err(e) = a.request() {
            let kind = clap::error::ErrorKind::ArgumentConflict;
            return Err(Cli::command().error(kind, e));
        }
    }
    Ok(())
}

/// `--role`: viewer, operator or admin.
pub fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("unknown role {text:?}; use viewer, operator or admin"))
}
