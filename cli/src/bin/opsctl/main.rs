//! `opsctl`: the operator's command line for an opsfleet cluster. `main` parses the flags,
//! connects, and hands each subcommand to its own function.

use std::process::ExitCode;

use clap::Parser;
use opsfleet_bus::NatsConfig;
use opsfleet_cli::client::Api;
use opsfleet_cli::events;
use opsfleet_cli::out::OutputError;

mod args;
mod configs;
mod docs;
mod exit;
mod failover;
mod follow;
mod issue;
mod roll;
mod rollout;
mod service_config;
mod show;
mod silence;

use args::{BackupCommand, Cli, Command, ConfigCommand, ConnArgs, Output, ServiceCommand, Targets};
use issue::run_request;
use opsfleet_proto::api::CommandAction;
use service_config::ServiceConfigCommand;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = args::check(&cli) {
        e.exit();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opsctl: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): stop quietly, like `cat` would.
        Err(e) if output_closed(&e) => ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}

/// Whether `e` is standard output's reader having gone away (`out::OutputError::Closed`).
fn output_closed(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<OutputError>(), Some(OutputError::Closed)))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Completion { shell } => return docs::completion(*shell),
        Command::Man { dir } => return docs::man_pages(dir),
        _ => {}
    }
    let cfg = nats_config(&cli.conn)?;
    let api = Api::connect(&cfg)
        .await?
        .with_operator(cli.conn.operator.clone())
        .with_role(cli.conn.role);
    dispatch(&api, &cfg, cli.command, cli.output).await
}

/// The connection config of the flags, refusing bad flags and a bad `--operator`.
fn nats_config(conn: &ConnArgs) -> anyhow::Result<NatsConfig> {
    let cfg = conn.nats_config();
    let problems = cfg.problems();
    if !problems.is_empty() {
        let text: Vec<String> = problems
            .into_iter()
            .map(|(k, r)| format!("--{k}: {r}"))
            .collect();
        return Err(exit::Usage(format!("bad connection flags: {}", text.join("; "))).into());
    }
    if let Some(op) = &conn.operator {
        opsfleet_proto::subjects::validate_token(op)
            .map_err(|e| exit::Usage(format!("bad --operator {op:?}: {e}")))?;
    }
    Ok(cfg)
}

/// Runs one subcommand.
async fn dispatch(
    api: &Api,
    cfg: &NatsConfig,
    command: Command,
    output: Output,
) -> anyhow::Result<()> {
    let command = match command_request(command)? {
        Ok((action, targets)) => return run_request(api, action, targets, output).await,
        Err(other) => other,
    };
    match command {
        Command::Status { host, coordinator } => show::status(api, host, coordinator, output).await,
        Command::Leader => show::leader(api, output).await,
        Command::Hosts(a) => show::hosts(api, a, output).await,
        Command::Backups(a) => show::backups(api, a, output).await,
        Command::Incidents(a) => show::incidents(api, a, output).await,
        Command::Alerts(args::AlertsCmd {
            action: Some(args::AlertsAction::Ack(a)),
            ..
        }) => silence::ack(api, a, output).await,
        Command::Alerts(a) => show::alerts(api, a.list, output).await,
        Command::Silence(s) => silence::run(api, s, output).await,
        Command::Services(a) => show::services(api, a, output).await,
        Command::Config(ConfigCommand::Show(a)) => configs::show(api, a, output).await,
        Command::Config(ConfigCommand::History(a)) => configs::history(api, a, output).await,
        Command::Config(ConfigCommand::Diff(a)) => configs::diff(api, a, output).await,
        Command::Service(ServiceCommand::Config(ServiceConfigCommand::History(a))) => {
            service_config::history(api, a, output).await
        }
        Command::Service(ServiceCommand::Failover(a)) => failover::service(api, a, output).await,
        Command::Service(ServiceCommand::Groups(a)) => show::groups(api, a, output).await,
        Command::Service(s) => match s.split() {
            Some((verb, t)) => roll::run(api, verb, t, output).await,
            None => anyhow::bail!("opsctl cannot run this service config verb here"),
        },
        Command::Rollout(r) => rollout::run(api, r, output).await,
        Command::Rollouts(a) => rollout::list(api, a, output).await,
        Command::Drills(a) => show::drills(api, a, output).await,
        Command::Drill(opsfleet_cli::drills::DrillCommand::Run(a)) => {
            failover::drill_run(api, a, output).await
        }
        Command::Commands { id, host, limit } => show::commands(api, id, host, limit, output).await,
        Command::Audit { by, host, limit } => show::audit(api, by, host, limit, output).await,
        Command::Events {
            host,
            module,
            kind,
            since,
            follow,
        } => {
            let filter = events::Filter { host, module, kind };
            follow::events(cfg, &filter, since.as_deref(), follow, output).await
        }
        Command::Failover {
            drill: true, wait, ..
        } => failover::drill(api, wait, output).await,
        Command::Failover { to, wait, .. } => failover::failover(api, to, wait, output).await,
        Command::Completion { shell } => docs::completion(shell),
        Command::Man { dir } => docs::man_pages(&dir),
        // Command verbs were sent above.
        verb => anyhow::bail!("opsctl cannot run {verb:?} here"),
    }
}

/// The action and targets of a command verb (sent by `run_request`); any other subcommand
/// comes back as it was.
fn command_request(command: Command) -> anyhow::Result<Result<(CommandAction, Targets), Command>> {
    Ok(Ok(match command {
        Command::Pause(m) => (CommandAction::Pause { module: m.module }, m.targets),
        Command::Resume(m) => {
            let action = match m.module {
                Some(module) if !m.all_modules => CommandAction::Resume { module },
                _ => CommandAction::ResumeAll,
            };
            (action, m.targets)
        }
        Command::Disable(m) => (CommandAction::Disable { module: m.module }, m.targets),
        Command::Enable(m) => (CommandAction::Enable { module: m.module }, m.targets),
        Command::Noop(t) => (CommandAction::Noop, t),
        Command::Drain(t) => (CommandAction::Drain, t),
        Command::Undrain(t) => (CommandAction::Undrain, t),
        Command::Backup(BackupCommand::Run { what, targets }) => (what.request(), targets),
        Command::Backup(BackupCommand::Verify { what, targets }) => (what.request(), targets),
        // A relative --target is a usage error (exit 2).
        Command::Restore { what, targets } => (
            what.request().map_err(|e| exit::Usage(e.to_string()))?,
            targets,
        ),
        Command::Config(ConfigCommand::Apply { what, targets }) => (what.request()?, targets),
        Command::Config(ConfigCommand::Rollback { what, targets }) => (what.request(), targets),
        // An argument given twice is a usage error (exit 2).
        Command::App { what, targets } => (
            what.request().map_err(|e| exit::Usage(e.to_string()))?,
            targets,
        ),
        Command::Service(ServiceCommand::Config(ServiceConfigCommand::Apply { what, targets })) => {
            (what.request()?, targets)
        }
        Command::Service(ServiceCommand::Config(ServiceConfigCommand::Rollback {
            what,
            targets,
        })) => (what.request(), targets),
        other => return Ok(Err(other)),
    }))
}
