//! What `sync_interval: always` in the shipped NATS configs buys, measured on a real
//! nats-server under `strace`: with the shipped setting every acknowledged publish was fsynced
//! before its PubAck; with the server default (fsync every 2 min) a burst of acknowledged
//! publishes gets no fsync at all, so until the next interval those messages are only in the
//! page cache, and a power cut of the whole cluster loses them although every publisher was
//! told they were stored. (A `kill -9` cannot show that loss: the kernel keeps the page cache.
//! docs/chaos.md says why a power cut cannot be simulated on this machine's kernel.)
//!
//! Needs strace and ptrace (root); without them it prints why it skips and passes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use opsfleet_tests::secure::repo_root;
use opsfleet_tests::NatsServer;

const PUBLISHES: usize = 300;

/// The `sync_interval` the shipped cluster config sets.
fn shipped_sync_interval() -> Result<String> {
    let conf = std::fs::read_to_string(repo_root().join("deploy/nats/cluster.conf"))?;
    conf.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("sync_interval:"))
        .map(|v| v.trim().to_owned())
        .context("deploy/nats/cluster.conf sets no sync_interval")
}

fn strace_missing() -> Option<String> {
    match Command::new("strace").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("strace is not installed (scripts/test.sh installs it)".to_owned()),
    }
}

/// Starts a server with `sync` (None: the server default), publishes `PUBLISHES` messages one
/// at a time, each awaited to its PubAck, under `strace`; the fsync-family calls it made.
async fn fsyncs_for_acked_publishes(dir: &Path, sync: Option<&str>) -> Result<Option<usize>> {
    let store = dir.join("store");
    let setting = sync.map_or(String::new(), |s| format!("\n  sync_interval: {s}"));
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:-1\njetstream {{\n  store_dir: \"{}\"{setting}\n}}\n",
            store.display()
        ),
    )?;
    let mut server = NatsServer::start_with_config(dir, &conf).await?;
    let pid = server.proc_mut().pid().context("nats-server has no pid")?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "DURABLE".to_owned(),
        subjects: vec!["durable.>".to_owned()],
        ..Default::default()
    })
    .await?;
    // Attach only now: the stream's creation fsyncs its metadata whatever the setting.
    let trace = dir.join("strace.out");
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,sync_file_range",
            "-o",
        ])
        .arg(&trace)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run strace")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(Some(status)) = strace.try_wait() {
        let mut why = String::new();
        if let Some(mut e) = strace.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut why);
        }
        eprintln!("SKIPPED fsync_promise: strace could not attach ({status}): {why}");
        return Ok(None);
    }
    for i in 0..PUBLISHES {
        js.publish(format!("durable.{i}"), vec![b'x'; 200].into())
            .await?
            .await
            .with_context(|| format!("publish {i} was not acknowledged"))?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let calls = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("sync"))
        .count();
    Ok(Some(calls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_are_fsynced_only_with_the_shipped_setting() -> Result<()> {
    if let Some(why) = strace_missing() {
        eprintln!("SKIPPED fsync_promise: {why}");
        return Ok(());
    }
    let shipped = shipped_sync_interval()?;
    ensure!(
        shipped == "always",
        "the shipped cluster config must fsync every write, has sync_interval: {shipped}"
    );
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("shipped"), tmp.path().join("default"));
    std::fs::create_dir_all(&a)?;
    std::fs::create_dir_all(&b)?;
    let Some(with_shipped) = fsyncs_for_acked_publishes(&a, Some(&shipped)).await? else {
        return Ok(());
    };
    let Some(with_default) = fsyncs_for_acked_publishes(&b, None).await? else {
        return Ok(());
    };
    eprintln!(
        "fsync_promise: {PUBLISHES} acknowledged publishes: {with_shipped} fsync calls with \
         sync_interval: {shipped}, {with_default} with the server default"
    );
    ensure!(
        with_shipped >= PUBLISHES,
        "sync_interval: {shipped}: only {with_shipped} fsync calls for {PUBLISHES} acked publishes"
    );
    ensure!(
        with_default == 0,
        "the server default fsynced {with_default} times during a burst of {PUBLISHES} \
         publishes; the claim in docs/chaos.md needs revisiting"
    );
    Ok(())
}
