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

/// Reads `OPS_EVENTS` through an ordered consumer (no state left on the server) and prints
/// what matches; without `follow`, stops once it has caught up.
async fn follow_events(
    cfg: &NatsConfig,
    filter: &events::Filter,
    start: Option<Since>,
    follow: bool,
    output: Output,
) -> anyhow::Result<()> {
    let mut consumer = open_consumer(cfg, filter, start).await?;
    let pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(0);
    if !follow && pending == 0 {
        return Ok(());
    }
    let mut messages = consumer
        .messages()
        .await
        .context("cannot read the events stream")?;
    let mut out = std::io::stdout().lock();
    while let Some(msg) = messages.next().await {
        let msg = msg.context("reading the events stream")?;
        let info = msg.info().ok().map(|i| (i.stream_sequence, i.pending));
        let (stream_seq, left) = info.unwrap_or((0, 0));
        show(&mut out, filter, &msg, stream_seq, output)?;
        if !follow && left == 0 {
            break;
        }
    }
    Ok(())
}

/// An ordered consumer on `OPS_EVENTS`, filtered to `filter.subject()`, from `start` (or
/// only new events).
async fn open_consumer(
    cfg: &NatsConfig,
    filter: &events::Filter,
    start: Option<Since>,
) -> anyhow::Result<consumer::Consumer<OrderedConfig>> {
    let client = opsfleet_bus::connect(cfg, "opsctl events", opsfleet_bus::ConnectMode::FailFast)
        .await
        .context("cannot reach NATS")?;
    let js = opsfleet_bus::jetstream(client, cfg);
    let stream = js
        .get_stream(opsfleet_proto::subjects::EVENTS_STREAM)
        .await
        .context("cannot open the events stream (has a coordinator ever run?)")?;
    let deliver_policy = match start {
        None => DeliverPolicy::New,
        Some(Since::Seq(n)) => DeliverPolicy::ByStartSequence {
            start_sequence: n.max(1),
        },
        Some(Since::Ago(d)) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::now_utc() - d,
        },
    };
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
                msg.subject,
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
