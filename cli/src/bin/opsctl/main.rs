//! `opsctl`: the operator's command line for an opsfleet cluster.

use opsfleet_proto::time::now_unix_ms;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use opsfleet_bus::{NatsConfig, TlsConfig};
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::{audit, client::Api, events, render, verbs, views};
use opsfleet_proto::api::{CommandsRequest, FailoverRequest, Role};
use serde::Serialize;

mod follow;
mod issue;

use follow::{follow_events, parse_since, Since};
use issue::{operator_name, run_request};
use opsfleet_proto::api::CommandAction;

/// Operate an opsfleet cluster: fleet status, hosts, alerts, backups, incidents and live events;
/// pause/resume modules, run backups, restore, apply or roll back configs; leader, failover and
/// failover drills; the audit trail.
///
/// Talks to the coordinators over NATS request/reply (`ops.api.*`). Every command accepts
/// `--output json` for scripts.
#[derive(Parser, Debug)]
#[command(name = "opsctl", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    conn: ConnArgs,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct ConnArgs {
    /// NATS server URL(s); repeat the flag or separate with commas.
    #[arg(
        long = "nats",
        global = true,
        env = "OPS_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    urls: Vec<String>,
    /// NATS credentials file (.creds) with your operator identity.
    #[arg(long, global = true, env = "OPS_NATS_CREDS")]
    creds: Option<PathBuf>,
    /// File with your NATS nkey seed (`SU...`), for servers that list users by nkey.
    #[arg(long, global = true, env = "OPS_NATS_NKEY")]
    nkey: Option<PathBuf>,
    /// Your operator name as the NATS permissions know it: replies come on `_INBOX.<name>`,
    /// actions go on `ops.api.as.<name>.<role>.command|failover` and are recorded as issued by
    /// you in that role.
    ///
    /// Roles (each includes the ones before it): viewer reads (status, hosts, commands, audit,
    /// events); operator also pauses/resumes/disables/enables modules, runs noop, drain,
    /// backup run and failover (and the drill); admin also runs config apply/rollback and
    /// restore. Your NATS identity holds the roles its permissions grant; opsctl acts in the
    /// role the action needs (or --role). A refused action exits non-zero naming the role it
    /// needs. Without --operator, actions go on plain subjects, which coordinators refuse
    /// unless their config says `[api] allow_unidentified = true` (insecure demo setups).
    #[arg(long, global = true, env = "OPS_OPERATOR")]
    operator: Option<String>,
    /// Act in this role (viewer, operator, admin) instead of the least one the action needs;
    /// needs --operator.
    #[arg(long, global = true, env = "OPS_ROLE", requires = "operator", value_parser = parse_role)]
    role: Option<Role>,
    /// CA certificate to verify the NATS server (enables TLS).
    #[arg(long, global = true, env = "OPS_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (with --tls-key).
    #[arg(long, global = true, env = "OPS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS (with --tls-cert).
    #[arg(long, global = true, env = "OPS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long to wait for an answer, e.g. 5s, 500ms.
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

impl ConnArgs {
    fn nats_config(&self) -> NatsConfig {
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
struct Targets {
    /// Target host; repeat for several.
    #[arg(long = "host", required_unless_present_any = ["all", "labels"])]
    hosts: Vec<String>,
    /// Also every host whose agent declares this label (`role=web`); repeat to require
    /// several.
    #[arg(long = "label", value_parser = verbs::parse_label, conflicts_with = "all")]
    labels: Vec<(String, String)>,
    /// Every host the coordinators know.
    #[arg(long, conflicts_with = "hosts")]
    all: bool,
    /// The command expires unless its agent starts it within this time (an offline agent
    /// that returns later gets it until then). Required: more than 0 and at most the
    /// coordinators' `[api] max_deadline` (24h by default).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Return once the commands are issued, without waiting for the agents.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for every agent's answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

#[derive(Args, Debug)]
struct ModuleTargets {
    /// The module instance, as named in the agents' configs (e.g. `log`, `nightly-db`).
    module: String,
    #[command(flatten)]
    targets: Targets,
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Run a backup job now, outside its schedule, and report the archive written.
    Run {
        #[command(flatten)]
        what: verbs::BackupRunArgs,
        #[command(flatten)]
        targets: Targets,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Replace a module's config; each agent validates it and keeps the old one if it is bad.
    Apply {
        #[command(flatten)]
        what: verbs::ConfigApplyArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// Go back to the module config with this fingerprint, as recorded in the log.
    Rollback {
        #[command(flatten)]
        what: verbs::ConfigRollbackArgs,
        #[command(flatten)]
        targets: Targets,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// trouble (failing probes, log incidents, failing backups, missing events).
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
    /// transition and how many notifications were sent.
    #[command(after_help = views::ALERTS_HELP)]
    Alerts(views::AlertsArgs),
    /// Pause a module: it stays scheduled but does not run until resumed (survives restarts).
    Pause(ModuleTargets),
    /// Resume a paused module.
    Resume(ModuleTargets),
    /// Disable a module: it does not run and reports itself disabled (survives restarts).
    Disable(ModuleTargets),
    /// Enable a disabled module.
    Enable(ModuleTargets),
    /// A command that does nothing: proves the command path to the agents under the current
    /// epoch (failover drills use it).
    Noop(Targets),
    /// Pause every module and flush the outbox (before maintenance).
    Drain(Targets),
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
}

/// What `opsctl failover --output json` prints.
#[derive(Debug, Serialize)]
struct FailoverResult {
    released_by: String,
    released_epoch: u64,
    new_active: String,
    new_epoch: u64,
    takeover_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opsctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Error chains can carry a coordinator's reply text: print it inert.
            eprintln!("opsctl: {}", inert(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = cli.conn.nats_config();
    let problems = cfg.problems();
    if !problems.is_empty() {
        let text: Vec<String> = problems
            .into_iter()
            .map(|(k, r)| format!("--{k}: {r}"))
            .collect();
        anyhow::bail!("bad connection flags: {}", text.join("; "));
    }
    if let Some(op) = &cli.conn.operator {
        opsfleet_proto::subjects::validate_token(op)
            .map_err(|e| anyhow::anyhow!("bad --operator {op:?}: {e}"))?;
    }
    let api = Api::connect(&cfg)
        .await
        .context("cannot reach NATS")?
        .with_operator(cli.conn.operator.clone())
        .with_role(cli.conn.role);
    match cli.command {
        Command::Status { host, coordinator } => {
            let reply = views::status(&api, host, coordinator.as_deref()).await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&reply)?),
                Output::Table => print!("{}", render::status(&reply, now_unix_ms())),
            }
        }
        Command::Leader => {
            let replies = api.status_all(GATHER_WINDOW).await?;
            let responders: Vec<_> = replies.into_iter().map(|r| r.responder).collect();
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&responders)?),
                Output::Table => print!("{}", render::coordinators(&responders)),
            }
        }
        Command::Hosts(a) => {
            let reply = views::hosts(&api, a).await?;
            print_view(&reply, cli.output, |r| {
                views::render::hosts(r, reply.now_unix_ms)
            })?;
        }
        Command::Backups(a) => {
            let reply = views::backups(&api, a).await?;
            print_view(&reply, cli.output, |r| {
                views::render::backups(r, now_unix_ms())
            })?;
        }
        Command::Incidents(a) => {
            let reply = views::incidents(&api, a, now_unix_ms()).await?;
            print_view(&reply, cli.output, |r| {
                views::render::incidents(r, now_unix_ms())
            })?;
        }
        Command::Alerts(a) => {
            let reply = views::alerts(&api, a).await?;
            print_view(&reply, cli.output, |r| {
                views::render::alerts(r, now_unix_ms())
            })?;
        }
        Command::Pause(m) => {
            run_request(
                &api,
                CommandAction::Pause { module: m.module },
                m.targets,
                cli.output,
            )
            .await?
        }
        Command::Resume(m) => {
            run_request(
                &api,
                CommandAction::Resume { module: m.module },
                m.targets,
                cli.output,
            )
            .await?
        }
        Command::Disable(m) => {
            run_request(
                &api,
                CommandAction::Disable { module: m.module },
                m.targets,
                cli.output,
            )
            .await?
        }
        Command::Enable(m) => {
            run_request(
                &api,
                CommandAction::Enable { module: m.module },
                m.targets,
                cli.output,
            )
            .await?
        }
        Command::Noop(t) => run_request(&api, CommandAction::Noop, t, cli.output).await?,
        Command::Drain(t) => run_request(&api, CommandAction::Drain, t, cli.output).await?,
        Command::Backup(BackupCommand::Run { what, targets }) => {
            run_request(&api, what.request(), targets, cli.output).await?
        }
        Command::Restore { what, targets } => {
            run_request(&api, what.request(), targets, cli.output).await?
        }
        Command::Config(ConfigCommand::Apply { what, targets }) => {
            run_request(&api, what.request()?, targets, cli.output).await?
        }
        Command::Config(ConfigCommand::Rollback { what, targets }) => {
            run_request(&api, what.request(), targets, cli.output).await?
        }
        Command::Commands { id, host, limit } => {
            let reply = api
                .commands(&CommandsRequest {
                    ids: id,
                    host,
                    limit: Some(limit),
                })
                .await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&reply.commands)?),
                Output::Table => print!("{}", render::commands(&reply.commands, now_unix_ms())),
            }
        }
        Command::Audit { by, host, limit } => {
            let reply = api
                .commands(&CommandsRequest {
                    ids: Vec::new(),
                    host,
                    limit: Some(limit),
                })
                .await?;
            let entries = audit::entries(&reply.commands, &audit::AuditFilter { by });
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
                Output::Table => print!("{}", audit::render(&entries)),
            }
        }
        Command::Events {
            host,
            module,
            kind,
            since,
            follow,
        } => {
            let filter = events::Filter { host, module, kind };
            let start = match since.as_deref() {
                Some(s) => Some(parse_since(s)?),
                None if follow => None,
                None => Some(Since::Ago(Duration::from_secs(15 * 60))),
            };
            follow_events(&cfg, &filter, start, follow, cli.output).await?;
        }
        Command::Failover {
            drill: true, wait, ..
        } => {
            let user = operator_name(&api);
            let report = opsfleet_cli::drill::run(&api, &user, wait).await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Table => print!("{}", render::drill(&report)),
            }
            if !report.passed {
                anyhow::bail!(
                    "drill failed: {} events lost, {} commands run twice",
                    report.events_lost,
                    report.commands_run_twice
                );
            }
        }
        Command::Failover { to, wait, .. } => {
            let started = std::time::Instant::now();
            let released = api
                .failover(&FailoverRequest {
                    to: to.clone(),
                    requested_by: Some(operator_name(&api)),
                })
                .await?;
            let deadline = started + wait;
            let (new_active, new_epoch) = loop {
                let replies = api.status_all(Duration::from_millis(25)).await?;
                let winner = replies.iter().find(|r| {
                    r.responder.role == opsfleet_proto::api::LeaderRole::Active
                        && r.responder.epoch > released.released_epoch
                        && to.as_deref().is_none_or(|t| t == r.responder.name)
                });
                if let Some(w) = winner {
                    break (w.responder.name.clone(), w.responder.epoch);
                }
                if std::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "{} released epoch {} but no coordinator became active within {}",
                        released.responder.name,
                        released.released_epoch,
                        humantime::format_duration(wait)
                    );
                }
            };
            let result = FailoverResult {
                released_by: released.responder.name.clone(),
                released_epoch: released.released_epoch,
                new_active,
                new_epoch,
                takeover_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&result)?),
                Output::Table => println!(
                    "{} released epoch {}; {} is active at epoch {} after {} ms",
                    inert(&result.released_by),
                    result.released_epoch,
                    inert(&result.new_active),
                    result.new_epoch,
                    result.takeover_ms
                ),
            }
        }
    }
    Ok(())
}

/// Prints a view's reply as pretty JSON or as the table `render` makes of it.
fn print_view<T: Serialize>(
    reply: &T,
    output: Output,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(reply)?),
        Output::Table => print!("{}", render(reply)),
    }
    Ok(())
}

/// `--role`: viewer, operator or admin.
fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("unknown role {text:?}; use viewer, operator or admin"))
}

/// How long `leader` listens for coordinators' replies.
const GATHER_WINDOW: Duration = Duration::from_millis(300);
