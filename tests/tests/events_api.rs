//! docs/events-api.md against real clusters: the Rust and the Python example consumers, run as
//! processes, print the fleet's events with increasing stream seqs, exactly what the stream
//! holds from a given sequence on, filtered by host and kind, new events only without a
//! sequence; both decode every body kind of the .proto (the Python classes are generated from
//! the files at start, so they stay in sync); and the shipped `reader` user can read them by
//! direct get but publish nothing and create no consumer (no events, no API requests, no
//! consumer whose deliver subject could write onto the lease).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use opsfleet_proto::{pb, subjects, EventEnvelope, COORDINATOR_MODULE};
use opsfleet_tests::{AgentSpec, Cluster, CoordinatorSpec, NatsServer};
use prost::Message;
use uuid::Uuid;

#[path = "events_api/reader.rs"]
mod reader;
#[path = "events_api/resume.rs"]
mod resume;
#[path = "events_api/support.rs"]
mod support;

use support::{increasing, keys, stream_keys, Consumers, Which, BOTH};

/// The JSON lines a consumer printed.
fn parse_lines(stdout: &str) -> Result<Vec<serde_json::Value>> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

#[test]
fn the_docs_list_every_body_kind_and_the_shipped_reader() -> Result<()> {
    let root = opsfleet_tests::secure::repo_root();
    let doc = std::fs::read_to_string(root.join("docs/events-api.md"))?;
    for (kind, number) in support::proto_kinds()? {
        ensure!(
            doc.contains(&format!("| `{kind}` | {number} |")),
            "docs/events-api.md's table of kinds lacks {kind} (field {number} of event.proto)"
        );
    }
    // The reader block the page quotes is the one auth.conf ships.
    let auth = std::fs::read_to_string(root.join("deploy/nats/auth.conf"))?;
    let start = doc
        .find("{ nkey: $NKEY_READER")
        .context("the page quotes no reader")?;
    let block = &doc[start..start + doc[start..].find("```").context("end of block")?];
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        ensure!(
            auth.contains(line),
            "auth.conf's reader lacks {line:?} (docs/events-api.md)"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_consumers_replay_filter_and_follow_a_real_cluster() {
    Cluster::run("events-api", async |c: &mut Cluster| {
        let disk = c.dir().join("disk");
        std::fs::create_dir_all(&disk)?;
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        for host in ["web-01", "web-02"] {
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(200))
                    .disk(Duration::from_millis(300), vec![disk.clone()]),
            )?;
        }
        let want = BTreeMap::from([("web-01".to_owned(), 10), ("web-02".to_owned(), 10)]);
        c.wait_hosts_at_least("blue", &want).await?;
        let consumers = Consumers::new()?;
        let conn = vec!["--nats".to_owned(), c.nats_url()];
        let js = jetstream::new(async_nats::connect(c.nats_url()).await?);

        // Replay from the first sequence: both print the same events, which are the stream's.
        let args = ["--since-seq", "1", "--count", "30", "--timeout", "60"];
        let rust = consumers.lines(Which::Rust, &conn, &args).await?;
        let python = consumers.lines(Which::Python, &conn, &args).await?;
        ensure!(rust.len() == 30, "rust printed {} lines", rust.len());
        ensure!(
            rust == python,
            "the consumers differ:\n{rust:#?}\n{python:#?}"
        );
        let printed = keys(&rust)?;
        increasing(&printed)?;
        let last = printed[29].0;
        ensure!(
            printed == stream_keys(&js, 1, last).await?,
            "not what the stream holds from seq 1: {printed:?}"
        );
        let hosts: BTreeSet<&str> = printed.iter().map(|k| k.1.as_str()).collect();
        let kinds: BTreeSet<&str> = printed.iter().map(|k| k.2.as_str()).collect();
        ensure!(
            hosts.is_subset(&BTreeSet::from(["web-01", "web-02", "blue"]))
                && hosts.contains("web-01")
                && hosts.contains("web-02"),
            "hosts {hosts:?}"
        );
        ensure!(kinds.contains("heartbeat"), "kinds {kinds:?}");
        let hb = rust
            .iter()
            .find(|l| l["kind"] == "heartbeat")
            .context("a heartbeat")?;
        ensure!(
            hb["body"]["modules"].as_u64() >= Some(1),
            "heartbeat line {hb}"
        );

        // From the middle: exactly the events from that sequence on.
        let from = printed[10].0.to_string();
        let args = [
            "--since-seq",
            from.as_str(),
            "--count",
            "10",
            "--timeout",
            "60",
        ];
        for which in BOTH {
            let lines = consumers.lines(which, &conn, &args).await?;
            ensure!(
                lines == rust[10..20],
                "{which:?} from seq {from}: {lines:#?}"
            );
        }

        // Filtered by host and kind: the stream's web-02 disk samples, in order.
        let args = [
            "--since-seq",
            "1",
            "--host",
            "web-02",
            "--kind",
            "disk",
            "--count",
            "3",
            "--timeout",
            "60",
        ];
        for which in BOTH {
            let got = keys(&consumers.lines(which, &conn, &args).await?)?;
            ensure!(got.len() == 3, "{which:?} web-02 disk: {got:?}");
            let want: Vec<_> = stream_keys(&js, 1, got[2].0)
                .await?
                .into_iter()
                .filter(|k| k.1 == "web-02" && k.2 == "disk")
                .collect();
            ensure!(
                got == want,
                "{which:?} web-02 disk: {got:?}, stream {want:?}"
            );
        }

        // No sequence: only events newer than the stream's end when it started.
        for which in BOTH {
            let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
            let end = stream.info().await?.state.last_sequence;
            let args = ["--kind", "heartbeat", "--count", "3", "--timeout", "60"];
            let got = keys(&consumers.lines(which, &conn, &args).await?)?;
            ensure!(
                got.len() == 3 && got.iter().all(|k| k.0 > end && k.2 == "heartbeat"),
                "{which:?} new only after seq {end}: {got:?}"
            );
        }

        // --count not reached within --timeout: exit status 3, nothing printed.
        for which in BOTH {
            let args = [
                "--since-seq",
                "1",
                "--host",
                "nosuch",
                "--count",
                "1",
                "--timeout",
                "3",
            ];
            let out = consumers.run(which, &conn, &args).await?;
            ensure!(
                out.status.code() == Some(3) && out.stdout.is_empty(),
                "{which:?}: {} {:?} {}",
                out.status,
                out.stdout,
                out.stderr
            );
        }
        Ok(())
    })
    .await;
}

/// An event whose body is field `number` of `Event`, an empty message: what the wire carries
/// for a body kind, written without the Rust enum so a kind Rust lacked would show.
fn event_with_field(host: &str, module: &str, seq: u64, number: u32) -> Vec<u8> {
    let mut bytes = pb::Event {
        id: Uuid::now_v7().to_string(),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000,
        module: module.to_owned(),
        incarnation: Uuid::nil().to_string(),
        body: None,
    }
    .encode_to_vec();
    prost::encoding::encode_key(
        number,
        prost::encoding::WireType::LengthDelimited,
        &mut bytes,
    );
    prost::encoding::encode_varint(0, &mut bytes);
    bytes
}

/// Also: both skip what the envelope checks of docs/events-api.md refuse, alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_kind_of_the_proto_decodes_in_both_consumers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let nats = NatsServer::start_in(tmp.path()).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    opsfleet_bus::ensure_topology(&js, &opsfleet_bus::TopologyConfig::default()).await?;
    let consumers = Consumers::new()?;

    // The Python classes are generated from the .proto files: the same kinds, same numbers.
    let kinds = support::proto_kinds()?;
    ensure!(kinds.len() > 30, "event.proto's oneof body: {kinds:?}");
    let python = consumers.python_kinds().await?;
    ensure!(python == kinds, "python {python:?}\nproto {kinds:?}");

    // One event per kind, on the subject its publisher may use.
    let mut expected = Vec::new();
    for (i, (kind, number)) in kinds.iter().enumerate() {
        let seq = u64::try_from(i)? + 1;
        let (host, module, subject) = if *number >= 100 {
            let subject = subjects::coordinator_event_subject("blue", kind);
            ("blue", COORDINATOR_MODULE, subject)
        } else {
            ("web-01", "m", subjects::event_subject("web-01", kind))
        };
        let bytes = event_with_field(host, module, seq, *number);
        // Rust knows the kind under the same name.
        let ev = EventEnvelope::decode(&bytes).with_context(|| format!("rust decodes {kind}"))?;
        ensure!(
            ev.kind() == kind,
            "field {number}: rust says {}, proto {kind}",
            ev.kind()
        );
        js.publish(subject, bytes.into()).await?.await?;
        expected.push((seq, host.to_owned(), kind.clone(), seq));
    }
    // What a consumer must skip, the same way in both: a coordinator body on an agent's
    // subject, an envelope naming another host than its subject, a copy of an event already
    // seen (published again past JetStream's dedup), bytes that are no event.
    let n = u64::try_from(expected.len())?;
    let heartbeat = subjects::event_subject("web-01", "heartbeat");
    // The last event again (a coordinator body, seq n of "blue"): a copy at the highest seq.
    let last_kind = kinds.last().context("kinds")?;
    ensure!(
        last_kind.1 >= 100,
        "the last body of event.proto is a coordinator's"
    );
    let skipped = [
        (
            subjects::event_subject("web-01", "leadership"),
            event_with_field("web-01", "m", n + 1, 100),
        ),
        (
            heartbeat.clone(),
            event_with_field("web-02", "m", n + 2, 10),
        ),
        (heartbeat.clone(), event_with_field("web-01", "m", 1, 10)),
        (
            subjects::coordinator_event_subject("blue", &last_kind.0),
            event_with_field("blue", COORDINATOR_MODULE, n, last_kind.1),
        ),
        (heartbeat.clone(), b"not an event".to_vec()),
    ];
    for (subject, bytes) in skipped {
        js.publish(subject, bytes.into()).await?.await?;
    }
    js.publish(heartbeat, event_with_field("web-01", "m", n + 3, 10).into())
        .await?
        .await?;
    expected.push((n + 6, "web-01".to_owned(), "heartbeat".to_owned(), n + 3));
    let count = expected.len().to_string();
    let conn = vec!["--nats".to_owned(), nats.url()];
    let args = [
        "--since-seq",
        "1",
        "--count",
        count.as_str(),
        "--timeout",
        "60",
    ];
    let rust = consumers.lines(Which::Rust, &conn, &args).await?;
    let python = consumers.lines(Which::Python, &conn, &args).await?;
    ensure!(keys(&rust)? == expected, "rust: {rust:#?}");
    ensure!(
        rust == python,
        "the consumers differ:\n{rust:#?}\n{python:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_consumers_take_the_same_flags() -> Result<()> {
    let consumers = Consumers::new()?;
    let mut flags = Vec::new();
    for which in BOTH {
        let help = consumers.run(which, &[], &["--help"]).await?.ok()?.stdout;
        let set: BTreeSet<String> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_owned)
            .collect();
        flags.push(set);
    }
    let python_only: BTreeSet<String> = flags[1].difference(&flags[0]).cloned().collect();
    let rust_only: BTreeSet<String> = flags[0].difference(&flags[1]).cloned().collect();
    ensure!(
        rust_only.is_empty()
            && python_only == BTreeSet::from(["--list-kinds".into(), "--proto-dir".into()]),
        "flags only in Rust: {rust_only:?}; only in Python: {python_only:?}"
    );
    Ok(())
}

/// A stream made before programs read by direct get (no `allow_direct`) gains it in place at
/// the next `ensure_topology`, keeping its messages; the examples refuse a stream without it,
/// saying why, instead of polling forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_events_stream_gains_direct_get_in_place() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let nats = NatsServer::start_in(tmp.path()).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let cfg = opsfleet_bus::TopologyConfig::default();
    let mut old = opsfleet_bus::ensure_topology(&js, &cfg).await?.events;
    let mut config = old.info().await?.config.clone();
    config.allow_direct = false;
    js.update_stream(&config).await?;
    ensure!(!old.info().await?.config.allow_direct, "allow_direct off");
    js.publish(
        subjects::event_subject("web-01", "heartbeat"),
        "kept".into(),
    )
    .await?
    .await?;

    let consumers = Consumers::new()?;
    let conn = vec!["--nats".to_owned(), nats.url()];
    let args = ["--since-seq", "1", "--count", "1", "--timeout", "20"];
    for which in BOTH {
        let out = consumers.run(which, &conn, &args).await?;
        ensure!(
            out.status.code() != Some(0) && out.stderr.contains("allow_direct"),
            "{which:?} on a stream without direct get: {} {}",
            out.status,
            out.stderr
        );
    }

    let mut events = opsfleet_bus::ensure_topology(&js, &cfg).await?.events;
    let info = events.info().await?;
    ensure!(
        info.config.allow_direct && info.state.messages == 1,
        "after ensure_topology: allow_direct {}, {} messages",
        info.config.allow_direct,
        info.state.messages
    );
    let got = first_payload(&events).await?;
    ensure!(got == "kept", "{got}");
    Ok(())
}

/// The payload of stream seq 1, by direct get.
async fn first_payload(stream: &jetstream::stream::Stream) -> Result<String> {
    let msg = stream.direct_get(1).await?;
    Ok(String::from_utf8(msg.payload.to_vec())?)
}
