//! `opsctl events`: reading `OPS_EVENTS` from a point in time or a stream sequence, once or
//! following, through an ordered consumer that leaves no state on the server.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{self, pull::OrderedConfig, DeliverPolicy};
use futures::StreamExt;
use opsfleet_bus::NatsConfig;
use opsfleet_cli::events;
use opsfleet_cli::out::write_to;
use opsfleet_cli::sanitize::inert;

use crate::args::Output;

/// Where `opsctl events` starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Since {
    Ago(Duration),
    Seq(u64),
}

fn parse_since(s: &str) -> anyhow::Result<Since> {
    if let Some(seq) = s.strip_prefix("seq:") {
        let n = seq
            .parse::<u64>()
            .with_context(|| format!("--since {s}: `seq:` takes a stream sequence number"))?;
        return Ok(Since::Seq(n));
    }
    humantime::parse_duration(s)
        .map(Since::Ago)
        .with_context(|| format!("--since {s}: give a duration like 10m or 2h, or seq:1234"))
}

/// `opsctl events`: from `--since`, or without it the last 15 minutes (only new events when
/// following).
pub async fn events(
    cfg: &NatsConfig,
    filter: &events::Filter,
    since: Option<&str>,
    follow: bool,
    output: Output,
) -> anyhow::Result<()> {
    let start = match since {
        Some(s) => Some(parse_since(s)?),
        None if follow => None,
        None => Some(Since::Ago(Duration::from_secs(15 * 60))),
    };
    follow_events(cfg, filter, start, follow, output).await
}

/// How a reading of the stream ended.
enum Ended {
    /// Not following, and nothing is left.
    CaughtUp,
    /// The consumer or the connection failed (a nats-server restart: "consumer not found").
    Broken(anyhow::Error),
}

/// The first and the longest wait between attempts to reopen a broken stream.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Reads `OPS_EVENTS` through an ordered consumer (no state left on the server) and prints
/// what matches; without `follow`, stops once it has caught up. Following, a broken stream
/// (nats-server restarted, consumer gone) is reopened with capped backoff, saying so on
/// stderr, from the stream sequence after the last one read: no gap, no duplicate.
async fn follow_events(
    cfg: &NatsConfig,
    filter: &events::Filter,
    start: Option<Since>,
    follow: bool,
    output: Output,
) -> anyhow::Result<()> {
    let js = jetstream(cfg).await?;
    let first = first_policy(&js, start).await?;
    let mut consumer = open_consumer(&js, filter, first).await?;
    let pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(0);
    if !follow && pending == 0 {
        return Ok(());
    }
    let mut last_read: Option<u64> = None;
    let mut delays = retry_delays();
    loop {
        let before = last_read;
        let e = match read(consumer, filter, follow, output, &mut last_read).await? {
            Ended::CaughtUp => return Ok(()),
            Ended::Broken(e) if !follow => return Err(e),
            Ended::Broken(e) => e,
        };
        if last_read != before {
            delays = retry_delays(); // it worked for a while: start the backoff afresh
        }
        let policy = last_read.map_or(first, |seq| DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        });
        let after = last_read.map_or_else(|| "the start".to_owned(), |s| format!("stream seq {s}"));
        eprintln!(
            "opsctl: events stream lost ({}); reconnecting to resume after {after}",
            inert(&e.root_cause().to_string())
        );
        consumer = reopen(&js, filter, policy, &mut delays).await;
        eprintln!("opsctl: events stream back; resuming after {after}");
    }
}

/// Reads `consumer` until caught up (not following) or broken, recording in `last_read` the
/// stream sequence of every message read (shown or not).
async fn read(
    consumer: consumer::Consumer<OrderedConfig>,
    filter: &events::Filter,
    follow: bool,
    output: Output,
    last_read: &mut Option<u64>,
) -> anyhow::Result<Ended> {
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => {
            return Ok(Ended::Broken(
                anyhow::Error::new(e).context("cannot read the events stream"),
            ))
        }
    };
    let mut out = std::io::stdout().lock();
    while let Some(msg) = messages.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                return Ok(Ended::Broken(
                    anyhow::Error::new(e).context("reading the events stream"),
                ))
            }
        };
        let info = msg.info().ok().map(|i| (i.stream_sequence, i.pending));
        let (stream_seq, left) = info.unwrap_or((0, 0));
        if last_read.is_some_and(|l| stream_seq <= l) {
            continue; // already read before a reconnect
        }
        show(&mut out, filter, &msg, stream_seq, output)?;
        *last_read = Some(stream_seq);
        if !follow && left == 0 {
            return Ok(Ended::CaughtUp);
        }
    }
    Ok(Ended::Broken(anyhow::anyhow!("the events stream ended")))
}

/// A JetStream context on a connection that reconnects by itself once up.
async fn jetstream(cfg: &NatsConfig) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = opsfleet_bus::connect(cfg, "opsctl events", opsfleet_bus::ConnectMode::FailFast)
        .await
        .context("cannot reach NATS")?;
    Ok(opsfleet_bus::jetstream(client, cfg))
}

/// Where to start: `--since`, or the sequence after the stream's last one (only new events,
/// pinned to a sequence so that a reconnect before the first event misses none).
async fn first_policy(
    js: &async_nats::jetstream::Context,
    start: Option<Since>,
) -> anyhow::Result<DeliverPolicy> {
    Ok(match start {
        None => {
            let mut stream = js
                .get_stream(opsfleet_proto::subjects::EVENTS_STREAM)
                .await
                .context("cannot open the events stream (has a coordinator ever run?)")?;
            let info = stream
                .info()
                .await
                .context("cannot read the events stream")?;
            DeliverPolicy::ByStartSequence {
                start_sequence: info.state.last_sequence + 1,
            }
        }
        Some(Since::Seq(n)) => DeliverPolicy::ByStartSequence {
            start_sequence: n.max(1),
        },
        Some(Since::Ago(d)) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::now_utc() - d,
        },
    })
}

/// Capped, jittered exponential waits (backon) between attempts to reopen the stream.
fn retry_delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Opens the consumer again after the next of `delays` (the backoff goes on across breaks
/// that read nothing, so a stream that breaks at once is not hammered), retrying until the
/// server answers, with a line on stderr for each failed attempt.
async fn reopen(
    js: &async_nats::jetstream::Context,
    filter: &events::Filter,
    policy: DeliverPolicy,
    delays: &mut impl Iterator<Item = Duration>,
) -> consumer::Consumer<OrderedConfig> {
    tokio::time::sleep(delays.next().unwrap_or(RETRY_MAX)).await;
    loop {
        match open_consumer(js, filter, policy).await {
            Ok(c) => return c,
            Err(e) => {
                let wait = delays.next().unwrap_or(RETRY_MAX);
                eprintln!(
                    "opsctl: still reconnecting ({}); next try in {wait:.1?}",
                    inert(&e.root_cause().to_string())
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// An ordered consumer on `OPS_EVENTS`, filtered to `filter.subject()`, delivering from
/// `deliver_policy`.
async fn open_consumer(
    js: &async_nats::jetstream::Context,
    filter: &events::Filter,
    deliver_policy: DeliverPolicy,
) -> anyhow::Result<consumer::Consumer<OrderedConfig>> {
    let stream = js
        .get_stream(opsfleet_proto::subjects::EVENTS_STREAM)
        .await
        .context("cannot open the events stream (has a coordinator ever run?)")?;
    stream
        .create_consumer(OrderedConfig {
            // Created under its name in the subject: the shipped permissions refuse people the
            // unnamed create subject (deploy/nats/auth.conf).
            name: Some(format!("opsctl-{}", uuid::Uuid::now_v7().simple())),
            filter_subject: filter.subject(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .context("cannot create a consumer on the events stream")
}

/// Prints one stream message if it matches the filter; says on stderr why one that matches
/// is not shown (refused by its subject, or not an event).
fn show(
    out: &mut impl Write,
    filter: &events::Filter,
    msg: &async_nats::jetstream::Message,
    stream_seq: u64,
    output: Output,
) -> anyhow::Result<()> {
    match opsfleet_proto::EventEnvelope::decode(&msg.payload) {
        Ok(ev) if filter.matches(&ev) && events::refused_by_subject(&msg.subject, &ev) => {
            eprintln!(
                "opsctl: stream seq {stream_seq} on {}: a {} the coordinators refuse from \
                 there (who may say what); not shown",
                inert(&msg.subject),
                ev.kind()
            );
        }
        Ok(ev) if filter.matches(&ev) => {
            let line = events::EventLine::new(stream_seq, &ev);
            let text = match output {
                Output::Json => serde_json::to_string(&line)?,
                Output::Table => line.human(),
            };
            write_to(out, &format!("{text}\n"))?;
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "opsctl: stream seq {stream_seq} on {} is not a valid event: {}",
            inert(&msg.subject),
            inert(&e.to_string())
        ),
    }
    Ok(())
}
