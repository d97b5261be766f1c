//! On-demand runs ("backup run now") through the real runner, a real sled outbox and real
//! source/destination directories in a temp dir; and the TOML a `module_state` carries.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsfleet_proto::pb::event::Body;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{parse_module_toml, parse_str};
use crate::modules::backup::{naming, MANIFEST_SUFFIX};
use crate::runner::Runner;

fn config(tmp: &Path) -> String {
    let src = tmp.join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"alpha\n").expect("write");
    std::fs::write(src.join("sub/b.bin"), vec![7u8; 4096]).expect("write");
    format!(
        r#"
host = "db-01"
[[modules]]
type = "heartbeat"
name = "hb"
interval = "20ms"
[[modules]]
type = "backup"
name = "backup"
interval = "50ms"
[[modules.jobs]]
name = "app"
sources = ["{src}"]
destination = "{dest}"
schedule = "24h"
keep_count = 5
"#,
        src = src.display(),
        dest = tmp.join("dest").display()
    )
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn archives(dest: &Path) -> Vec<String> {
    naming::list_archives(dest, "app")
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.name)
        .collect()
}

#[tokio::test]
async fn backup_run_now_writes_an_archive_and_queues_its_events_before_answering() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = parse_str(&config(tmp.path())).expect("valid config");
    let outbox =
        Arc::new(Outbox::open(&tmp.path().join("agent.sled"), "db-01", 10_000).expect("outbox"));
    let runner = Runner::from_config("db-01", outbox.clone(), Arc::new(Notify::new()), &cfg);
    let control = runner.control();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    let dest = tmp.path().join("dest");

    // No archive yet: the schedule runs the job once at start; wait for it to finish.
    eventually("the scheduled first archive", || archives(&dest).len() == 1).await;
    let scheduled = archives(&dest);
    let mut detail = Err(ControlError::Stopped);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        detail = control.run_now("backup", "app").await;
        match &detail {
            // The scheduled run may still be closing (manifest written, flag not yet down).
            Err(ControlError::RunFailed { reason, .. }) if reason.contains("already running") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => break,
        }
    }
    let detail = detail.expect("backup run now succeeds");
    let now = archives(&dest);
    assert_eq!(now.len(), 2, "one more archive: {now:?}");
    let new = now
        .iter()
        .find(|a| !scheduled.contains(a))
        .expect("a new archive");
    assert!(detail.contains(new.as_str()), "{detail} names {new}");
    assert!(dest.join(format!("{new}{MANIFEST_SUFFIX}")).exists());
    // The run's closing events went to the writer before the answer.
    eventually(
        "backup_completed of the on-demand run in the outbox",
        || {
            outbox.pending_events().unwrap_or_default().iter().any(|e| {
            matches!(&e.body, Body::BackupCompleted(c) if c.archive.ends_with(new.as_str()))
        })
        },
    )
    .await;

    // Refusals are clear.
    let err = control.run_now("backup", "nope").await.unwrap_err();
    assert!(err.to_string().contains("no backup job \"nope\""), "{err}");
    let err = control.run_now("hb", "").await.unwrap_err();
    assert!(err.to_string().contains("cannot run on demand"), "{err}");
    control.pause("backup").await.expect("pause");
    let err = control.run_now("backup", "").await.unwrap_err();
    assert!(err.to_string().contains("paused"), "{err}");
    assert_eq!(archives(&dest).len(), 2, "refused runs wrote nothing");

    cancel.cancel();
    task.await.expect("runner ends");
}

#[test]
fn module_configs_round_trip_through_their_toml_with_the_same_fingerprint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut text = config(tmp.path());
    text.push_str(
        r#"
[[modules]]
type = "disk"
name = "disk"
interval = "30s"
paths = ["/"]
[[modules]]
type = "log"
paths = ["/var/log/app/*.log"]
[[modules.patterns]]
name = "oom"
regex = 'Out of memory: Killed process \d+'
[[modules]]
type = "sentinel"
paths = ["/var/lib/app/last-ok"]
max_age = "26h"
[[modules]]
type = "janitor"
interval = "1h"
[[modules.roots]]
path = "/var/tmp/app-runs"
older_than = "7d"
include = ["*.log", "runs/**/*.tmp"]
[[modules]]
type = "health"
interval = "5s"
[[modules.probes]]
name = "api"
type = "http"
url = "http://127.0.0.1:8080/healthz"
body_contains = "ok"
[[modules.probes]]
name = "queue"
type = "command"
argv = ["sh", "-c", "exit 0"]
timeout = "1s"
"#,
    );
    let cfg = parse_str(&text).expect("valid config");
    assert_eq!(cfg.modules.len(), 7, "every module kind");
    for m in &cfg.modules {
        let toml = config_toml(m);
        assert!(!toml.is_empty(), "{} serialises", m.name());
        let back = parse_module_toml(&toml).unwrap_or_else(|p| panic!("{toml}\n{p:?}"));
        assert_eq!(back.fingerprint(), m.fingerprint(), "{toml}");
    }
}
