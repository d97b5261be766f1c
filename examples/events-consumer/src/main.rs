//! `events-consumer`: an example program reading the fleet's status events from `OPS_EVENTS`
//! by direct get (no consumer: the `reader` may create none), printing one JSON line per event
//! (docs/events-api.md).
//!
//! ```text
//! events-consumer --nats tls://nats-1:4222 --nkey reader.nk --inbox-prefix _INBOX.reader \
//!     --tls-ca ca.pem --tls-cert operator.pem --tls-key operator-key.pem \
//!     --since-seq 1200 --host web-01 --kind disk --count 10 --timeout 30
//! ```

mod line;
mod poll;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{
    self,
    message::StreamMessage,
    stream::{DirectGetErrorKind, Stream},
};
use clap::Parser;
use opsfleet_proto::{subjects, EventEnvelope};
use poll::Backoff;

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

/// Reads from `--since-seq` (or the end of the stream) until `--count`: asks the stream for
/// the next message at or after the cursor matching the filter, prints it and moves the cursor
/// past it; when there is none yet, waits (50 ms doubling to 500 ms) and asks again. An error
/// (server restart, connection lost) is retried from the same cursor after a backoff.
async fn consume(args: &Args, progress: &mut Progress) -> anyhow::Result<()> {
    let client = connect(args).await?;
    let stats = client.statistics();
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("cannot open the OPS_EVENTS stream")?;
    let info = stream.info().await?.clone();
    anyhow::ensure!(
        info.config.allow_direct,
        "OPS_EVENTS does not allow direct get (allow_direct): start a coordinator of this \
         version, whose topology sets it"
    );
    let start = match args.since_seq {
        Some(n) => n.max(1),
        // Pinned to a sequence, so a reconnect before the first event misses nothing.
        None => info.state.last_sequence + 1,
    };
    if let Some(lost) = poll::lost_to_retention(start, info.state.first_sequence) {
        eprintln!("events-consumer: {lost}");
    }
    let filter = line::filter_subject(args.host.as_deref(), args.kind.as_deref());
    let mut idle = Backoff::new(poll::IDLE_MIN, poll::IDLE_MAX);
    let mut failing = Backoff::new(poll::ERROR_MIN, poll::ERROR_MAX);
    let mut connects = stats.connects.load(Ordering::Relaxed);
    while args.count.is_none_or(|n| progress.printed < n) {
        let cursor = progress.last_read.map_or(start, |s| s + 1);
        let now = stats.connects.load(Ordering::Relaxed);
        if now != connects {
            connects = now;
            eprintln!("events-consumer: reconnected to NATS; resuming at stream seq {cursor}");
            if let Ok(info) = stream.info().await {
                if let Some(lost) = poll::lost_to_retention(cursor, info.state.first_sequence) {
                    eprintln!("events-consumer: {lost}");
                }
            }
        }
        match next_at(&stream, &filter, cursor).await {
            Ok(Some(msg)) => {
                idle.reset();
                failing.reset();
                handle(&msg, progress);
            }
            Ok(None) => tokio::time::sleep(idle.step()).await,
            Err(e) => {
                let wait = failing.step();
                eprintln!("events-consumer: {e:#}; resuming at stream seq {cursor} in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(())
}

/// The first message at or after `cursor` on `filter` (`$JS.API.DIRECT.GET.OPS_EVENTS`, which
/// any replica may answer); `None` when the stream holds none yet.
async fn next_at(
    stream: &Stream,
    filter: &str,
    cursor: u64,
) -> anyhow::Result<Option<StreamMessage>> {
    match stream
        .direct_get_next_for_subject(filter, Some(cursor))
        .await
    {
        Ok(msg) if msg.sequence >= cursor => Ok(Some(msg)),
        Ok(msg) => anyhow::bail!(
            "asked for stream seq {cursor} or later, got {} (a lagging replica?)",
            msg.sequence
        ),
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context("direct get on OPS_EVENTS")),
    }
}

/// Prints one message if it is a valid event its subject may carry, seen for the first time;
/// the cursor moves past it either way.
fn handle(msg: &StreamMessage, progress: &mut Progress) {
    let stream_seq = msg.sequence;
    progress.last_read = Some(stream_seq);
    let subject = msg.subject.as_str();
    let ev = match EventEnvelope::decode(&msg.payload) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("events-consumer: stream seq {stream_seq} is not a valid event: {e}");
            return;
        }
    };
    if !line::from_its_publisher(subject, &ev) {
        eprintln!(
            "events-consumer: stream seq {stream_seq}: a {} its subject {subject} may not carry",
            ev.kind(),
        );
        return;
    }
    if !progress.dedup.first_time(&ev) {
        return;
    }
    println!("{}", line::event_line(stream_seq, subject, &ev));
    progress.printed += 1;
}
