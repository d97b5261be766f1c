//! `ops-coordinator` command line: run, check the config, rebuild projections, dump the log.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use opsfleet_coordinator::config::CoordinatorConfig;
use opsfleet_coordinator::memory;
use opsfleet_coordinator::rebuild;
use opsfleet_coordinator::service;
use opsfleet_coordinator::store::{EventStore, SledStore};
use tokio_util::sync::CancellationToken;

/// Persists the opsfleet event stream, folds the fleet's projections, answers `opsctl`.
///
/// Every coordinator consumes the whole stream into its own sled store
/// (`data_dir/coordinator.sled`); JetStream is the replicated source of truth.
#[derive(Parser, Debug)]
#[command(name = "ops-coordinator", version, about, long_about)]
struct Cli {
    /// Coordinator config file (TOML).
    #[arg(long, short, env = "OPS_COORDINATOR_CONFIG")]
    config: PathBuf,
    /// Validate the config, print every problem as FILE:LINE: key: reason, and exit
    /// (0 valid, 2 invalid). A valid config also prints what the API accepts: by default only
    /// identified requests (`ops.api.as.<operator>.<role>.command|failover`, roles enforced);
    /// `[api] allow_unidentified = true` also takes plain `ops.api.command`/`failover` (insecure,
    /// for the local demo) and records their `issued_by` as unverified. `[api] max_deadline`
    /// (default 24h) caps a command's deadline; a deadline of 0 is always refused.
    #[arg(long)]
    check_config: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the coordinator (the default).
    Run,
    /// Refold the projections from the log and print their digest. The coordinator must be
    /// stopped. Without --verify the stored projection is replaced when it differs.
    Rebuild {
        /// Only compare; exit 1 when the stored projection differs from the refolded one.
        #[arg(long)]
        verify: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print the digest of the projection folded from the log up to a stream sequence
    /// (inclusive), without comparing or writing anything: two coordinators that persisted the
    /// same stream agree on it, whatever each has persisted since. The coordinator must be
    /// stopped.
    DigestAt {
        /// The last stream sequence to fold (see `dump-log` for the sequences in the log).
        #[arg(long, value_name = "STREAM_SEQ")]
        upto: u64,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print every log entry, one per line, in stream order. The coordinator must be stopped.
    DumpLog {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match CoordinatorConfig::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{}", errors.report());
            eprintln!("config invalid: {errors}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!(
            "config ok: {} (coordinator {}, fingerprint {})",
            cli.config.display(),
            cfg.name,
            cfg.fingerprint()
        );
        println!("{}", cfg.api.summary());
        return ExitCode::SUCCESS;
    }
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            init_tracing(cli.log_format);
            run(cfg)
        }
        Command::Rebuild { verify, output } => rebuild_cmd(&cfg, verify, output),
        Command::DigestAt { upto, output } => digest_at_cmd(&cfg, upto, output),
        Command::DumpLog { output } => dump_cmd(&cfg, output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ops-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: CoordinatorConfig) -> anyhow::Result<ExitCode> {
    let arenas = memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tracing::debug!(?arenas, "malloc arenas");
        let cancel = CancellationToken::new();
        let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
        let trim = tokio::spawn(memory::trim_loop(memory::TRIM_EVERY, cancel.clone()));
        let result = service::run(cfg, cancel).await;
        signals.abort();
        trim.abort();
        result.context("coordinator failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
    cancel.cancel();
}

fn open_store(cfg: &CoordinatorConfig) -> anyhow::Result<Arc<dyn EventStore>> {
    let path = SledStore::path_in(&cfg.data_dir);
    if !path.exists() {
        anyhow::bail!(
            "no store at {} (has this coordinator ever run?)",
            path.display()
        );
    }
    Ok(Arc::new(SledStore::open(&path)?))
}

fn rebuild_cmd(cfg: &CoordinatorConfig, verify: bool, output: Output) -> anyhow::Result<ExitCode> {
    let store = open_store(cfg)?;
    let report = rebuild::rebuild(store.as_ref(), !verify)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Table => {
            println!("digest {}", report.digest);
            println!("stored {}", report.stored_digest);
            println!(
                "{} events, {} hosts, {}",
                report.events,
                report.hosts,
                match (report.matches, report.written, report.older_fold()) {
                    (true, _, _) => "stored projection matches the log",
                    (false, true, _) => "stored projection differed and was replaced",
                    (false, false, true) => {
                        "stored projection was written by an older version; \
                         a coordinator refolds the log when it starts"
                    }
                    (false, false, false) => "stored projection DIFFERS from the log",
                }
            );
        }
    }
    Ok(if verify && !report.matches && !report.older_fold() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn digest_at_cmd(cfg: &CoordinatorConfig, upto: u64, output: Output) -> anyhow::Result<ExitCode> {
    let store = open_store(cfg)?;
    let report = rebuild::digest_at(store.as_ref(), upto)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Table => {
            println!("digest {}", report.digest);
            println!(
                "{} events up to stream sequence {}, {} hosts",
                report.events, report.upto_stream_seq, report.hosts
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dump_cmd(cfg: &CoordinatorConfig, output: Output) -> anyhow::Result<ExitCode> {
    let store = open_store(cfg)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    rebuild::dump_log(store.as_ref(), |line| match output {
        Output::Json => {
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out)
        }
        Output::Table => writeln!(
            out,
            "{:>10} {:<20} {:>8} {:<14} {:<12} {}",
            line.stream_seq, line.host, line.seq, line.kind, line.module, line.id
        ),
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
