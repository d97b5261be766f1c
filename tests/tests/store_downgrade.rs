//! A coordinator built before log segments refuses a store the current one wrote: its log read
//! hits the guard key the segment store sets, and `dump-log` / `rebuild --verify` exit non-zero
//! naming a malformed log key, instead of folding an empty log.
//!
//! Needs the older binary: `$OPSFLEET_OLD_COORDINATOR`, else
//! `/work/base-target/release/ops-coordinator`; without it the test says so and passes (the
//! store's unit tests replay the older read path on the same layout).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::ensure;
use opsfleet_tests::procs::run_with_config;
use opsfleet_tests::{AgentSpec, Cluster, CoordinatorSpec};

fn old_coordinator() -> Option<PathBuf> {
    let path = std::env::var_os("OPSFLEET_OLD_COORDINATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/base-target/release/ops-coordinator"));
    path.is_file().then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_from_before_segments_refuses_the_store() {
    let Some(old) = old_coordinator() else {
        println!("SKIPPED: no coordinator from before log segments (set OPSFLEET_OLD_COORDINATOR)");
        return;
    };
    Cluster::run("store-downgrade", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(20)))?;
        let min = [("web-01".to_owned(), 10)].into_iter().collect();
        c.wait_hosts_at_least("blue", &min).await?;
        let coord = c.coordinator("blue")?;
        coord.stop().await?;
        let log = coord.dump_log().await?;
        ensure!(!log.is_empty(), "the current coordinator's log is empty");

        for args in [&["dump-log"][..], &["rebuild", "--verify"][..]] {
            let out = run_with_config(&old, &coord.config_path, args).await?;
            println!("{}: {}\n{}", out.cmdline, out.status, out.stderr);
            ensure!(
                !out.status.success(),
                "the older coordinator's {args:?} succeeded on a segment store:\n{}",
                out.stdout
            );
            ensure!(
                out.stderr.contains("malformed log key"),
                "the older coordinator's {args:?} failed for another reason:\n{}",
                out.stderr
            );
        }
        // The store is untouched: the current coordinator still reads the whole log.
        ensure!(coord.dump_log().await? == log, "the log changed");
        Ok(())
    })
    .await;
}
