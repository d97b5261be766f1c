//! `events-consumer`: an example program reading the fleet's status events from `OPS_EVENTS`
//! through an ordered consumer, printing one JSON line per event (docs/events-api.md).
//!
//! ```text
//! events-consumer --nats tls://nats-1:4222 --nkey reader.nk --inbox-prefix _INBOX.reader \
//!     --tls-ca ca.pem --tls-cert operator.pem --tls-key operator-key.pem \
//!     --since-seq 1200 --host web-01 --kind disk --count 10 --timeout 30
//! ```

mod line;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, Consumer, DeliverPolicy},
    stream::Stream,
};
use clap::Parser;
use futures::StreamExt;
use opsfleet_proto::{subjects, EventEnvelope};

/// Exit status when `--count` events did not come within `--timeout`.
const EXIT_SHORT: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "events-consumer",
    about = "Print the fleet's status events as JSON lines"
)]
struct Args {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// File holding the identity's nkey seed (`SU...`).
    #[arg(long)]
    nkey: Option<PathBuf>,
    /// Prefix of the reply subjects; the shipped permissions let `reader` receive only on
    /// `_INBOX.reader.>`.
    #[arg(long)]
    inbox_prefix: Option<String>,
    /// CA certificate the server's certificate must chain to (TLS).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (mutual TLS), with `--tls-key`.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Start at this stream sequence (replay); without it, only events newer than the start.
    #[arg(long)]
    since_seq: Option<u64>,
    /// Only this host's (or coordinator's) events.
    #[arg(long)]
    host: Option<String>,
    /// Only this kind (`heartbeat`, `disk`, `leadership`, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Stop after printing this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (exit 3 if `--count` was not reached by then).
    #[arg(long)]
    timeout: Option<f64>,
}

/// What survives a reconnect: where to resume, what was printed, the dedup state.
#[derive(Default)]
struct Progress {
    last_read: Option<u64>,
    printed: u64,
    dedup: line::Dedup,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut progress = Progress::default();
    let run = consume(&args, &mut progress);
    match args.timeout {
        None => run.await,
        Some(secs) => {
            let limit = Duration::try_from_secs_f64(secs).context("--timeout: seconds >= 0")?;
            match tokio::time::timeout(limit, run).await {
                Ok(result) => result,
                Err(_) if args.count.is_some_and(|n| progress.printed < n) => {
                    eprintln!(
                        "events-consumer: {} of {} events within {secs} s",
                        progress.printed,
                        args.count.unwrap_or(0)
                    );
                    std::process::exit(EXIT_SHORT)
                }
                Err(_) => Ok(()),
            }
        }
    }
}

async fn connect(args: &Args) -> anyhow::Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name("events-consumer")
        .connection_timeout(Duration::from_secs(10))
        // Once connected, reconnect forever (a nats-server restart is a pause, not an end).
        .max_reconnects(None);
    if let Some(path) = &args.nkey {
        let seed = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the nkey seed {}", path.display()))?;
        opts = opts.nkey(seed.trim().to_owned());
    }
    if let Some(prefix) = &args.inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix);
    }
    if let Some(ca) = &args.tls_ca {
        opts = opts.require_tls(true).add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    opts.connect(args.nats.as_str())
        .await
        .with_context(|| format!("cannot connect to {}", args.nats))
}

/// Reads from `--since-seq` (or the end of the stream) until `--count`; a broken consumer
/// (server restart, connection lost) is opened again after the last stream sequence read.
async fn consume(args: &Args, progress: &mut Progress) -> anyhow::Result<()> {
    let js = jetstream::new(connect(args).await?);
    let mut stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("cannot open the OPS_EVENTS stream")?;
    let start = match args.since_seq {
        Some(n) => n.max(1),
        // Pinned to a sequence, so a reconnect before the first event misses nothing.
        None => stream.info().await?.state.last_sequence + 1,
    };
    let filter = line::filter_subject(args.host.as_deref(), args.kind.as_deref());
    let mut wait = Duration::from_millis(200);
    loop {
        let from = progress.last_read.map_or(start, |s| s + 1);
        let before = progress.last_read;
        let broken = match open(&stream, &filter, from).await {
            Ok(consumer) => match read(consumer, args, progress).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if progress.last_read != before {
            wait = Duration::from_millis(200);
        }
        let next = progress.last_read.map_or(start, |s| s + 1);
        eprintln!("events-consumer: {broken:#}; resuming at stream seq {next} in {wait:?}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// An ordered consumer: ephemeral, no acks, named in the create subject (the shipped
/// permissions refuse the unnamed create subject).
async fn open(stream: &Stream, filter: &str, from: u64) -> anyhow::Result<Consumer<OrderedConfig>> {
    stream
        .create_consumer(OrderedConfig {
            name: Some(format!("events-consumer-{}", uuid::Uuid::now_v7().simple())),
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .context("cannot create a consumer on OPS_EVENTS")
}

/// Prints what the consumer delivers until `--count`; an error means the consumer broke.
async fn read(
    consumer: Consumer<OrderedConfig>,
    args: &Args,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    if args.count.is_some_and(|n| progress.printed >= n) {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .context("cannot read OPS_EVENTS")?;
    while let Some(msg) = messages.next().await {
        let msg = msg.context("reading OPS_EVENTS")?;
        let stream_seq = match msg.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => anyhow::bail!("a message without JetStream metadata: {e}"),
        };
        if progress.last_read.is_some_and(|l| stream_seq <= l) {
            continue; // read before a reconnect
        }
        progress.last_read = Some(stream_seq);
        let ev = match EventEnvelope::decode(&msg.payload) {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("events-consumer: stream seq {stream_seq} is not a valid event: {e}");
                continue;
            }
        };
        if !line::from_its_publisher(&msg.subject, &ev) {
            eprintln!(
                "events-consumer: stream seq {stream_seq}: a {} its subject {} may not carry",
                ev.kind(),
                msg.subject
            );
            continue;
        }
        if !progress.dedup.first_time(&ev) {
            continue;
        }
        println!("{}", line::event_line(stream_seq, &msg.subject, &ev));
        progress.printed += 1;
        if args.count.is_some_and(|n| progress.printed >= n) {
            return Ok(());
        }
    }
    anyhow::bail!("the OPS_EVENTS consumer ended")
}
