//! The coordinator's store on a small filesystem of its own (a 16 MiB tmpfs) while an agent
//! keeps producing. When the disk is full the coordinator stops acknowledging (its consumer's
//! ack floor stands still while the stream grows), `/readyz` answers 503, `/metrics` shows the
//! store unhealthy and the lag, and the process keeps running; once space returns it is ready again without a restart. Started on a read-only
//! store it refuses to run, naming the store; once writable it catches up. Its log holds
//! every seq exactly once. Skipped, with a message, where the test may not mount a filesystem.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use opsfleet_proto::subjects;
use opsfleet_tests::coordinator::http_get;
use opsfleet_tests::{
    check_exactly_once, check_unique_ids, wait_until, AgentSpec, Cluster, CoordinatorSpec,
    SmallDisk,
};

const HOST: &str = "web-01";
const COORD: &str = "blue";
/// Events the agent must publish while the store is refused, to show they wait in the stream.
const WHILE_BROKEN: u64 = 50;

/// The stream's last sequence and the coordinator consumer's ack floor.
async fn positions(js: &jetstream::Context) -> Result<(u64, u64)> {
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let consumer = stream
        .consumer_info(subjects::coordinator_consumer(COORD))
        .await?;
    Ok((last, consumer.ack_floor.stream_sequence))
}

async fn wait_ready(c: &mut Cluster, want: u16, why: &str) -> Result<String> {
    wait_until(
        &format!("/readyz of {COORD} to answer {want} ({why})"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            c.check_alive()?;
            let (code, body) = c.coordinator(COORD)?.readyz().await?;
            Ok((code == want).then_some(body))
        },
    )
    .await
}

/// While the store refuses writes: not ready, and nothing acknowledged although the stream
/// grows by `WHILE_BROKEN` messages.
async fn check_refusing(c: &mut Cluster, js: &jetstream::Context, why: &str) -> Result<()> {
    let body = wait_ready(c, 503, why).await?;
    ensure!(
        body.contains("\"store_healthy\":false"),
        "/readyz body: {body}"
    );
    let (last, floor) = positions(js).await?;
    let (grown, floor_after) = wait_until(
        &format!("the stream to grow by {WHILE_BROKEN} while the store is refused ({why})"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            let (now_last, now_floor) = positions(js).await?;
            Ok((now_last >= last + WHILE_BROKEN).then_some((now_last, now_floor)))
        },
    )
    .await?;
    ensure!(
        floor_after == floor,
        "{why}: the ack floor moved from {floor} to {floor_after} while the store refused writes"
    );
    ensure!(
        floor_after < grown,
        "{why}: ack floor {floor_after}, stream at {grown}: nothing should be acknowledged"
    );
    let (code, _) = c.coordinator(COORD)?.readyz().await?;
    ensure!(
        code == 503,
        "{why}: /readyz turned {code} with the store still refused"
    );
    check_metrics(c, false, why).await?;
    println!("{why}: not ready; ack floor stays at {floor} while the stream grew to {grown}");
    Ok(())
}

/// `/metrics` tells the store's health and, while it refuses writes, a lag of at least what
/// waited in the stream (what `OpsfleetStoreUnhealthy` and `OpsfleetIngestStalled` page on).
async fn check_metrics(c: &mut Cluster, healthy: bool, why: &str) -> Result<()> {
    let addr = (c.coordinator(COORD)?.http_addr()).context("no HTTP address")?;
    let want = format!("opsfleet_coordinator_store_healthy {}", u8::from(healthy));
    wait_until(
        &format!("/metrics of {COORD} to show `{want}` ({why})"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            let (code, body) = http_get(addr, "/metrics").await?;
            let lag = (body.lines())
                .find_map(|l| l.strip_prefix("opsfleet_ingest_lag_messages "))
                .and_then(|v| v.parse::<u64>().ok());
            let lag_ok = healthy || lag.is_some_and(|l| l >= WHILE_BROKEN);
            Ok((code == 200 && body.lines().any(|l| l == want) && lag_ok).then_some(()))
        },
    )
    .await
}

/// Ready again, and the coordinator persists (and acknowledges) past what was refused.
async fn check_recovered(c: &mut Cluster, js: &jetstream::Context, why: &str) -> Result<()> {
    wait_ready(c, 200, why).await?;
    let (last, _) = positions(js).await?;
    let floor = wait_until(
        &format!("the ack floor to pass {last} ({why})"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            let (_, floor) = positions(js).await?;
            Ok((floor >= last).then_some(floor))
        },
    )
    .await?;
    check_metrics(c, true, why).await?;
    println!("{why}: ready again; ack floor {floor}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_disk_stops_acks_and_loses_nothing() {
    Cluster::run("store-disk", async |c: &mut Cluster| {
        let disk = match SmallDisk::mount(&c.dir().join("small-disk"), 16) {
            Ok(d) => d,
            Err(e) => {
                println!(
                    "SKIPPED store_disk: cannot mount a small filesystem for the store ({e:#}); \
                     this test needs root"
                );
                return Ok(());
            }
        };
        c.add_coordinator(
            CoordinatorSpec::new(COORD)
                .http()
                .data_dir(&disk.dir().join("data")),
        )?;
        c.add_agent(AgentSpec::new(HOST).heartbeat(Duration::from_millis(20)))?;
        c.wait_hosts_at_least(COORD, &BTreeMap::from([(HOST.to_owned(), 20)]))
            .await?;
        wait_ready(c, 200, "start").await?;
        let js = jetstream::new(async_nats::connect(c.nats_url()).await?);

        let filled = disk.fill()?;
        println!("disk full: filler of {} KiB", filled / 1024);
        check_refusing(c, &js, "disk full").await?;
        // The log names the cause under the store error, not only the layer that met it.
        let log = c.coordinator(COORD)?.proc().log_since_start();
        let line = log
            .lines()
            .find(|l| l.contains("cannot persist batch"))
            .context("no \"cannot persist batch\" line in the coordinator's log")?;
        ensure!(
            line.contains("No space left on device"),
            "the persist failure does not say why: {line}"
        );
        disk.free()?;
        check_recovered(c, &js, "space freed").await?;

        // A filesystem cannot turn read-only under a process that holds files open for
        // writing (the kernel answers "busy"), so the read-only case is a coordinator killed
        // and started again on a read-only store: it must refuse to start, naming the store,
        // while the stream keeps everything for it.
        c.coordinator(COORD)?.sigkill().await?;
        disk.remount_ro()?;
        c.coordinator(COORD)?.restart()?;
        let status = c
            .coordinator(COORD)?
            .proc_mut()
            .wait_exit(Duration::from_secs(60))
            .await
            .context("the coordinator kept running on a read-only store")?;
        let log = c.coordinator(COORD)?.proc().log_since_start();
        ensure!(
            !status.success() && log.contains("coordinator.sled"),
            "on a read-only store the coordinator exited with {status} and logged:\n{log}"
        );
        println!(
            "read-only: refused to start ({status}): {}",
            log.lines().last().unwrap_or_default()
        );
        let (grown, floor) = positions(&js).await?;
        ensure!(
            floor < grown,
            "ack floor {floor}, stream at {grown}: expected a backlog"
        );
        disk.remount_rw()?;
        c.coordinator(COORD)?.restart()?;
        check_recovered(c, &js, "writable again").await?;

        let outboxes = c.stop_agents().await?;
        let outbox = outboxes.get(HOST).context("no outbox report")?.clone();
        let expected = BTreeMap::from([(HOST.to_owned(), outbox.last_seq)]);
        let live = c.wait_caught_up(COORD, &expected).await?;
        let coord = c.coordinator(COORD)?;
        coord.stop().await?;
        let log = coord.dump_log().await?;
        check_exactly_once(&log, HOST, &outbox.incarnation, outbox.last_seq)
            .map_err(anyhow::Error::msg)?;
        check_unique_ids(&log).map_err(anyhow::Error::msg)?;
        let (report, out) = coord.rebuild(true).await?;
        ensure!(
            out.status.success() && report.matches && report.digest == live.digest,
            "rebuild --verify: {report:?} (live digest {}); stderr:\n{}",
            live.digest,
            out.stderr
        );
        println!(
            "{HOST}: seqs 1..={} exactly once; digest {}",
            outbox.last_seq, report.digest
        );
        drop(disk);
        Ok(())
    })
    .await;
}
