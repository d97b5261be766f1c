//! `ops-agent` binary: CLI, logging, signal handling and the wiring of outbox, publisher and
//! module runner.

use opsfleet_report::ErrorChain;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use opsfleet_agent::commands::CommandHandler;
use opsfleet_agent::config::{self, ConfigError, LoadedConfig};
use opsfleet_agent::config::{AgentConfig, Facts, HttpConfig};
use opsfleet_agent::footprint::{self, ArenaCap};
use opsfleet_agent::http::{HttpError, HttpState};
use opsfleet_agent::{JetStreamSink, Outbox, Publisher, PublisherControl, Runner};
use opsfleet_bus::ConnectMode;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// Runs this host's modules and publishes their events to NATS JetStream through a durable
/// outbox.
#[derive(Debug, Parser)]
#[command(name = "ops-agent", version, about)]
struct Cli {
    /// Agent config file (TOML).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Validate the config, print every problem and exit (0 valid, 2 invalid). A template is
    /// checked for this machine and once per `[[groups]]` entry.
    #[arg(long)]
    check_config: bool,
    /// Print the effective config (a template rendered for this host) as TOML and exit
    /// (0 valid, 2 invalid).
    #[arg(long, conflicts_with = "check_config")]
    render: bool,
    /// Host name to render a template for (instead of its `host_from`).
    #[arg(long, value_name = "NAME", global = true)]
    host: Option<String>,
    /// Extra label `k=v` for a template's groups and heartbeats (repeatable; wins over the
    /// file's and the environment's labels).
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label, global = true)]
    labels: Vec<(String, String)>,
    /// Log line format on stderr; the filter comes from OPS_LOG or RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the outbox of a stopped agent: incarnation, last seq, pending events.
    Outbox {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Restore a backup archive into a directory. Every file is verified against the manifest
    /// before anything lands in the target; a corrupt archive is reported by file name and the
    /// target is left untouched. Does not open the agent's sled (the agent may keep running).
    Restore {
        /// Backup job name.
        #[arg(long)]
        job: String,
        /// Backup module instance holding the job (only needed when several have that job).
        #[arg(long)]
        module: Option<String>,
        /// Archive file name in the job's destination, or `latest`.
        #[arg(long, default_value = "latest")]
        archive: String,
        /// Directory to restore into: created if missing; an existing one must not already
        /// hold the archive's top-level names.
        #[arg(long)]
        target: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = std::env::var("OPS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not k=v")),
    }
}

fn load_or_report(path: &Path, facts: &Facts, check: bool) -> Result<LoadedConfig, ExitCode> {
    let loaded = if check {
        config::check_for(path, facts)
    } else {
        config::load_for(path, facts)
    };
    match loaded {
        Ok(c) => Ok(c),
        Err(e @ ConfigError::Read { .. }) => {
            eprintln!("{e}");
            Err(ExitCode::from(2))
        }
        Err(ConfigError::Invalid(problems)) => {
            eprintln!("{problems}");
            Err(ExitCode::from(2))
        }
    }
}

/// Tokio workers of the agent's runtime. One: the agent's tasks mostly wait (timers, NATS,
/// sled flushes on sled's own threads), its blocking work runs on the blocking pool, and
/// `block_in_place` (a service module's stop) hands the worker's tasks to another thread
/// meanwhile; `run` itself is driven by the main thread.
const RUNTIME_WORKERS: usize = 1;

fn main() -> ExitCode {
    // Before any thread exists: arenas created meanwhile would stay.
    let arenas = footprint::cap_malloc_arenas();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let Some(path) = cli.config.clone() else {
        eprintln!("ops-agent: --config FILE is required");
        return ExitCode::from(2);
    };
    let mut facts = Facts::from_process();
    facts.host = cli.host.clone();
    facts.labels = cli.labels.iter().cloned().collect();
    let loaded = match load_or_report(&path, &facts, cli.check_config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cli.check_config {
        // The full 64-hex fingerprint, the length modules and opsctl show everywhere.
        let fp = &loaded.fingerprint;
        if loaded.template {
            println!(
                "config ok: {} (template; rendered for {}: {} modules, groups [{}], fingerprint {fp})",
                path.display(),
                loaded.config.host,
                loaded.config.modules.len(),
                loaded.groups.join(", ")
            );
        } else {
            println!(
                "config ok: {} ({} modules, fingerprint {fp})",
                path.display(),
                loaded.config.modules.len()
            );
        }
        return ExitCode::SUCCESS;
    }
    if cli.render {
        return match toml::to_string(&loaded.config) {
            Ok(text) => {
                println!(
                    "# {} rendered for host {} (groups: [{}]; fingerprint {})",
                    path.display(),
                    loaded.config.host,
                    loaded.groups.join(", "),
                    loaded.fingerprint
                );
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ops-agent: cannot print the config as TOML: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Some(Command::Outbox { output }) => show_outbox(&loaded, output),
        Some(Command::Restore {
            job,
            module,
            archive,
            target,
            output,
        }) => run_restore(&loaded, &job, module.as_deref(), &archive, &target, output),
        None => run_agent(loaded, arenas),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ops-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn show_outbox(loaded: &LoadedConfig, output: Output) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    let outbox = Outbox::open_existing(&cfg.sled_path(), &cfg.host)?;
    let s = outbox.summary();
    match output {
        Output::Json => println!("{}", serde_json::to_string(&s)?),
        Output::Text => {
            println!("host:        {}", s.host);
            println!("incarnation: {}", s.incarnation);
            println!("last_seq:    {}", s.last_seq);
            println!("pending:     {}", s.pending);
        }
    }
    Ok(())
}

fn run_restore(
    loaded: &LoadedConfig,
    job: &str,
    module: Option<&str>,
    archive: &str,
    target: &Path,
    output: Output,
) -> anyhow::Result<()> {
    use opsfleet_agent::modules::backup;
    let job_cfg = backup::find_job(&loaded.config, job, module).map_err(anyhow::Error::msg)?;
    let selector: backup::ArchiveSelector = archive.parse()?;
    match backup::restore(&job_cfg, &selector, target) {
        Ok(report) => {
            match output {
                Output::Json => println!("{}", serde_json::to_string(&report)?),
                Output::Text => println!(
                    "restored {} files, {} dirs, {} symlinks ({} bytes) from {} into {}",
                    report.files,
                    report.dirs,
                    report.symlinks,
                    report.bytes,
                    report.archive,
                    report.target.display()
                ),
            }
            Ok(())
        }
        Err(e) => {
            if output == Output::Json {
                let failure = backup::restore::failure_json(&e, job, archive, target);
                println!("{}", serde_json::to_string(&failure)?);
            }
            Err(anyhow::Error::new(e).context(format!("restore of job {job} failed")))
        }
    }
}

fn run_agent(loaded: LoadedConfig, arenas: ArenaCap) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(loaded, arenas))
}

async fn run(loaded: LoadedConfig, arenas: ArenaCap) -> anyhow::Result<()> {
    let cfg = loaded.config;
    let host = cfg.host.clone();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let outbox = Arc::new(Outbox::open(
        &cfg.sled_path(),
        &host,
        cfg.outbox.max_events,
    )?);
    info!(
        host,
        incarnation = %outbox.incarnation(),
        last_seq = outbox.last_seq(),
        pending = outbox.pending(),
        fingerprint = %loaded.fingerprint,
        workers = RUNTIME_WORKERS,
        malloc_arenas = ?arenas,
        "agent starting"
    );
    let client = opsfleet_bus::connect(
        &cfg.nats,
        &format!("ops-agent {host}"),
        ConnectMode::Background,
    )
    .await
    .context("cannot set up the NATS connection")?;
    let js = opsfleet_bus::jetstream(client.clone(), &cfg.nats);

    let notify = Arc::new(Notify::new());
    let ctl = PublisherControl::default();
    let sink = JetStreamSink::new(js.clone(), cfg.nats.request_timeout);
    let mut publisher =
        tokio::spawn(Publisher::new(outbox.clone(), sink, notify.clone()).run(ctl.clone()));

    let cancel = CancellationToken::new();
    let runner = Runner::from_config(&host, outbox.clone(), notify.clone(), &cfg);
    let commands = CommandHandler::new(
        outbox.clone(),
        notify,
        runner.control(),
        runner.status(),
        Arc::new(cfg.clone()),
    )
    .context("cannot start the command handler")?;
    let http = match &cfg.http {
        Some(http_cfg) => start_http(http_cfg, &cfg, &outbox, &client, &runner, &cancel).await?,
        None => Vec::new(),
    };
    let runner = tokio::spawn(runner.run(cancel.clone()));
    let commands = tokio::spawn(commands.run(js, cancel.clone()));
    tokio::spawn(release_startup_pages(host.clone()));

    wait_for_signal().await?;
    info!(host, "shutting down");
    cancel.cancel();
    join_tasks(&host, commands, runner, http).await;
    ctl.drain.cancel();
    if tokio::time::timeout(cfg.shutdown_grace, &mut publisher)
        .await
        .is_err()
    {
        warn!(
            host,
            pending = outbox.pending(),
            grace = ?cfg.shutdown_grace,
            "shutdown grace over; unpublished events stay in the outbox"
        );
        ctl.stop.cancel();
        let _ = publisher.await;
    }
    outbox.flush().await?;
    info!(
        host,
        pending = outbox.pending(),
        last_seq = outbox.last_seq(),
        "agent stopped"
    );
    Ok(())
}

/// When, after the modules start, the start-up's pages are released: once the first runs and
/// the first connect are over (3 s on a healthy host), and again once every default module
/// (the disk module's 60 s is the longest interval) has run a second time, so that pages read
/// back meanwhile by the start-up's late steps, before the first release's advice took
/// effect, go too. What runs later comes back on use either way.
const RELEASE_AFTER: [std::time::Duration; 2] = [
    std::time::Duration::from_secs(3),
    std::time::Duration::from_secs(65),
];

/// Releases the executable's pages only the start-up used (`footprint::release_startup_code`)
/// and trims the malloc arenas (`footprint::trim_heap`) at each of `RELEASE_AFTER`. Best
/// effort: a kernel without `MADV_PAGEOUT` only keeps them.
async fn release_startup_pages(host: String) {
    let started = tokio::time::Instant::now();
    for (round, after) in RELEASE_AFTER.into_iter().enumerate() {
        tokio::time::sleep_until(started + after).await;
        let release = || (footprint::release_startup_code(), footprint::trim_heap());
        match tokio::task::spawn_blocking(release).await {
            Ok((Ok(bytes), trimmed)) => {
                info!(host, round, bytes, trimmed, "start-up pages released")
            }
            Ok((Err(e), _)) => {
                info!(host, round, error = %ErrorChain(&e), "start-up pages kept");
                return;
            }
            Err(e) => {
                warn!(host, round, error = %ErrorChain(&e), "start-up page release ended abnormally");
                return;
            }
        }
    }
}

/// Waits (after the cancel) for the command handler, the module runner and the http
/// endpoints to end, logging any that ended abnormally.
async fn join_tasks<C, R>(
    host: &str,
    commands: JoinHandle<C>,
    runner: JoinHandle<R>,
    http: Vec<JoinHandle<Result<(), HttpError>>>,
) {
    if let Err(e) = commands.await {
        warn!(host, error = %ErrorChain(&e), "command handler ended abnormally");
    }
    if let Err(e) = runner.await {
        warn!(host, error = %ErrorChain(&e), "module runner ended abnormally");
    }
    for server in http {
        match server.await {
            Ok(Err(e)) => {
                warn!(host, error = %ErrorChain(&e), "http endpoint failed")
            }
            Err(e) => warn!(host, error = %ErrorChain(&e), "http endpoint ended abnormally"),
            Ok(Ok(())) => {}
        }
    }
}

/// Binds `[http] listen` and the admin socket (failing the start when either cannot be) and
/// serves /healthz, /readyz, /metrics (plus the guarded admin routes with `admin_tcp`) on TCP
/// and the admin routes on the socket, until `cancel`.
async fn start_http(
    http_cfg: &HttpConfig,
    cfg: &AgentConfig,
    outbox: &Arc<Outbox>,
    client: &async_nats::Client,
    runner: &Runner,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<Result<(), HttpError>>>> {
    let metrics = match opsfleet_agent::telemetry::install() {
        Ok(h) => Some(h),
        Err(e) => {
            warn!(error = %ErrorChain(&e), "cannot install the metrics recorder; /metrics answers 503");
            None
        }
    };
    let token = match (&http_cfg.admin_token_file, http_cfg.admin_tcp) {
        (Some(path), true) => Some(opsfleet_agent::http::load_token(path)?),
        _ => None,
    };
    let tls = opsfleet_agent::http::tls_acceptor(http_cfg)?;
    let (listener, addr) = opsfleet_agent::http::bind(http_cfg.listen).await?;
    let socket_path = http_cfg.admin_socket_path(&cfg.data_dir);
    let socket = opsfleet_agent::http::bind_admin_socket(&socket_path)?;
    let nats = client.clone();
    let state = HttpState {
        outbox: outbox.clone(),
        max_events: cfg.outbox.max_events,
        nats_connected: Arc::new(move || {
            nats.connection_state() == async_nats::connection::State::Connected
        }),
        metrics,
        admin: token.map(|t| opsfleet_agent::http::AdminTcp {
            control: runner.control(),
            guard: opsfleet_agent::http::TcpGuard::new(t, addr),
        }),
    };
    info!(%addr, admin_tcp = state.admin.is_some(), admin_socket = %socket_path.display(), tls = tls.is_some(), "http endpoint bound");
    Ok(vec![
        tokio::spawn(opsfleet_agent::http::serve_tls(
            listener,
            tls,
            state,
            cancel.clone(),
        )),
        tokio::spawn(opsfleet_agent::http::serve_admin_socket(
            socket,
            runner.control(),
            cancel.clone(),
        )),
    ])
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
