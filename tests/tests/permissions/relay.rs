//! Negative tests of server relay copies: the `reader` credential direct-gets a message an
//! agent stored in `OPS_EVENTS` with a reply subject of its choosing, so the server itself
//! publishes that message's bytes on a command inbox, another host's event subject or a
//! coordinator's subject. The real agent refuses the copy on its command inbox and on its fast
//! path `ops.fastcmd.<host>`, also one stored with the headers of a stream republish (it never
//! runs, never raises the agent's epoch: the active coordinator's next command still runs),
//! and ingest parks the copies as `relay_copy` instead of folding them.

use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::COORDINATOR_MODULE;
use prost::Message;
use uuid::Uuid;

use super::ingest::{dead_letters, event};
use super::*;
use opsfleet_tests::wait_until_default;

/// An epoch far above any lease revision this test's coordinator reaches.
const FORGED_EPOCH: u64 = 1 << 40;

/// Stores `bytes` (no `Nats-Msg-Id`, so its relay copy is not deduplicated) on web-01's own
/// subject with web-01's credentials; returns its `OPS_EVENTS` sequence.
async fn store(web01: &Probe, kind: &str, bytes: Vec<u8>) -> Result<u64> {
    let subject = subjects::event_subject("web-01", kind);
    let ack = web01
        .js
        .publish(subject.clone(), bytes.into())
        .await?
        .await
        .with_context(|| format!("no PubAck on {subject}"))?;
    Ok(ack.sequence)
}

/// Stores `bytes` on web-01's own subject with `headers`; returns its `OPS_EVENTS` sequence.
async fn store_with(
    web01: &Probe,
    kind: &str,
    headers: async_nats::HeaderMap,
    bytes: Vec<u8>,
) -> Result<u64> {
    let subject = subjects::event_subject("web-01", kind);
    let ack = web01
        .js
        .publish_with_headers(subject.clone(), headers, bytes.into())
        .await?
        .await
        .with_context(|| format!("no PubAck on {subject}"))?;
    Ok(ack.sequence)
}

/// As `reader`: direct-gets `OPS_EVENTS` sequence `seq` with reply subject `reply` (the body
/// alone, no headers at all, with `no_hdr`).
async fn relay(reader: &Probe, seq: u64, reply: &str, no_hdr: bool) -> Result<()> {
    let request = format!("$JS.API.DIRECT.GET.{}", subjects::EVENTS_STREAM);
    let body = serde_json::json!({ "seq": seq, "no_hdr": no_hdr }).to_string();
    reader
        .client
        .publish_with_reply(request, reply.to_owned(), body.into())
        .await?;
    reader.client.flush().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_relay_copies_are_neither_run_nor_folded() {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-permissions-relay-")
        .tempdir()
        .expect("temp dir");
    let s = SecureNats::start(tmp.path())
        .await
        .expect("secure nats-server");
    let opsctl = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("alice", "alice"));
    let (blue, web02) = (
        s.nats_toml("blue", Role::Coordinator),
        s.nats_toml("web-02", Role::Agent),
    );
    let web01 = Probe::connect(&s, "web-01", Role::Agent)
        .await
        .expect("web-01");
    let reader = Probe::connect(&s, "reader", Role::Operator)
        .await
        .expect("reader");
    let carol = Probe::connect(&s, "carol", Role::Operator)
        .await
        .expect("carol");
    let SecureNats { server, .. } = s;
    let cluster = Cluster::with_server(tmp, server, opsctl);
    Cluster::run_with(cluster, "permissions-relay", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").nats_toml(&blue))?;
        c.add_agent(
            AgentSpec::new("web-02")
                .heartbeat(Duration::from_millis(300))
                .nats_toml(&web02),
        )?;
        let want = BTreeMap::from([("web-02".to_owned(), 2)]);
        c.wait_hosts_at_least("blue", &want).await?;
        // web-02 subscribes to its fast path before it opens its durable consumer, on the same
        // connection: once the consumer is open, relays onto either subject reach it.
        let log = c.agent("web-02")?.proc().log_path().to_owned();
        wait_until_default("web-02's command consumer open", async || {
            let text = std::fs::read_to_string(&log)?;
            Ok(text.contains("command consumer open").then_some(()))
        })
        .await?;

        // (a) A command for web-02 under a huge epoch, relayed onto its command inbox.
        let now = opsfleet_proto::time::unix_ms(std::time::SystemTime::now());
        let forged = pb::Command {
            id: Uuid::now_v7().to_string(),
            epoch: FORGED_EPOCH,
            issued_by: "alice".into(),
            target: "web-02".into(),
            deadline_unix_ms: now + 600_000,
            issued_unix_ms: now,
            action: Some(pb::command::Action::Noop(pb::Noop {})),
        };
        // First (while web-02's cursor is still 0): the same command stored with what a
        // stream republish carries (a Nats-Msg-Id, OPS_CMDS, web-02's command subject, a place
        // right after nothing), relayed onto web-02's fast path, and onto its command subject,
        // where OPS_CMDS stores the copy and republishes it to the fast path.
        let mut posing = async_nats::HeaderMap::new();
        for (name, value) in [
            ("Nats-Msg-Id", forged.id.as_str()),
            ("Nats-Stream", subjects::COMMANDS_STREAM),
            ("Nats-Subject", "ops.cmd.web-02"),
            ("Nats-Sequence", "1000000"),
            ("Nats-Last-Sequence", "0"),
        ] {
            posing.insert(name, value);
        }
        let seq = store_with(&web01, "z", posing, forged.encode_to_vec()).await?;
        for (reply, no_hdr) in [
            (subjects::command_copy_subject("web-02"), false),
            (subjects::command_copy_subject("web-02"), true),
            (subjects::command_subject("web-02"), false),
        ] {
            relay(&reader, seq, &reply, no_hdr).await?;
        }
        let seq = store(&web01, "x", forged.encode_to_vec()).await?;
        relay(&reader, seq, &subjects::command_subject("web-02"), false).await?;
        // The same asked for without headers (`no_hdr`): no relay header, and no Nats-Msg-Id.
        relay(&reader, seq, &subjects::command_subject("web-02"), true).await?;

        // The active coordinator's own command after the relay copy still runs on web-02: the
        // copy raised no epoch (one in flight: the agent handled the copy before it).
        noop_completes(c, "web-02").await?;

        // (b) An event of web-02 and a coordinator event of blue, relayed onto their subjects.
        let lost = Body::HostLiveness(pb::HostLiveness {
            target_host: "web-02".into(),
            lost: true,
            last_seen_unix_ms: 0,
            interval_ms: 1000,
            epoch: FORGED_EPOCH,
        });
        let coord = event("blue", Uuid::now_v7(), 1, COORDINATOR_MODULE, lost);
        let hb = Body::Heartbeat(pb::Heartbeat::default());
        let host = event("web-02", Uuid::now_v7(), 1, "heartbeat", hb);
        for (ev, reply) in [
            (&host, subjects::event_subject("web-02", host.kind())),
            (
                &coord,
                subjects::coordinator_event_subject("blue", coord.kind()),
            ),
        ] {
            let seq = store(&web01, "y", ev.encode_to_vec()).await?;
            relay(&reader, seq, &reply, false).await?;
        }

        // The relay copies are parked under their rule, on the subjects they were relayed to
        // (the three originals are parked as malformed: web-01 published them as `x`/`y`;
        // its `z` posing with republish headers carries relay header names, so it is parked
        // as a relay copy itself; without the check the two copies are folded and only four
        // letters come).
        let letters = dead_letters(&carol.js, 6).await?;
        let relayed: Vec<_> = letters.iter().filter(|(r, _)| r == "relay_copy").collect();
        let subjects_relayed: Vec<&str> = relayed.iter().map(|(_, s)| s.as_str()).collect();
        ensure!(
            subjects_relayed
                == [
                    subjects::coordinator_event_subject("blue", coord.kind()),
                    subjects::event_subject("web-01", "z"),
                    subjects::event_subject("web-02", host.kind()),
                ],
            "relay copies not parked as relay_copy: {letters:?}"
        );

        // The forged command never reached web-02's ledger of answers, nor the fleet's.
        let cmds = super::ingest::json(c, &["commands", "--host", "web-02"]).await?;
        ensure!(
            !cmds.to_string().contains(&forged.id),
            "forged command answered: {cmds}"
        );
        let hosts = super::ingest::json(c, &["hosts"]).await?;
        ensure!(
            !hosts.to_string().contains("\"lost\""),
            "a relayed liveness event was folded: {hosts}"
        );
        Ok(())
    })
    .await;
}
