//! Runner tests on a real sled outbox in a temp dir: scheduling, failing modules, event order,
//! and module state committed with events and restored before the first run.

use super::*;
use crate::modules::{ModuleCtx, ModuleError};

struct Counter {
    fail_every_other: bool,
    n: u32,
}

#[async_trait::async_trait]
impl Module for Counter {
    fn kind(&self) -> &'static str {
        "heartbeat"
    }
    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        self.n += 1;
        if self.fail_every_other && (self.n & 1) == 0 {
            return Err(ModuleError::Other("boom".into()));
        }
        Ok(vec![pb::event::Body::Heartbeat(pb::Heartbeat {
            modules: ctx.statuses.clone(),
            ..Default::default()
        })])
    }
}

#[tokio::test]
async fn runs_modules_commits_events_and_survives_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox =
        Arc::new(Outbox::open(&dir.path().join("agent.sled"), "web-01", 1000).expect("open"));
    let notify = Arc::new(Notify::new());
    let entries = vec![
        ModuleEntry {
            name: "hb".into(),
            interval: Duration::from_millis(20),
            fingerprint: "f1".into(),
            module: Box::new(Counter {
                fail_every_other: false,
                n: 0,
            }),
        },
        ModuleEntry {
            name: "flaky".into(),
            interval: Duration::from_millis(20),
            fingerprint: "f2".into(),
            module: Box::new(Counter {
                fail_every_other: true,
                n: 0,
            }),
        },
    ];
    let runner = Runner::new("web-01", outbox.clone(), notify, entries);
    let board = runner.status();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(runner.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    handle.await.expect("runner ends");

    let evs = outbox.pending_events().expect("events");
    // Module states first, in module order, with their fingerprints.
    let pb::event::Body::ModuleState(first) = &evs[0].body else {
        panic!("{:?}", evs[0])
    };
    assert_eq!(
        (first.module.as_str(), first.config_fingerprint.as_str()),
        ("hb", "f1")
    );
    assert!(matches!(&evs[1].body, pb::event::Body::ModuleState(s) if s.module == "flaky"));
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=evs.len() as u64).collect::<Vec<_>>());
    let slots = board.slots();
    assert!(slots[0].runs >= 3, "{slots:?}");
    assert!(slots[1].failures >= 1, "{slots:?}");
    // The flaky module kept running after failures.
    assert!(evs.iter().filter(|e| e.module == "flaky").count() >= 3);
    let hb = evs
        .iter()
        .find_map(|e| match &e.body {
            pb::event::Body::Heartbeat(h) => Some(h.clone()),
            _ => None,
        })
        .expect("a heartbeat");
    assert_eq!(hb.modules.len(), 2);
    assert_eq!(hb.modules[1].expected_interval_ms, 20);
}

/// Persists how many times it ran; restored on a new runner over the same sled.
struct Persistent {
    n: u64,
    restored: Option<u64>,
}

#[async_trait::async_trait]
impl Module for Persistent {
    fn kind(&self) -> &'static str {
        "heartbeat"
    }
    async fn run_once(&mut self, _: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        self.n += 1;
        Ok(vec![pb::event::Body::Heartbeat(pb::Heartbeat {
            uptime_ms: self.n,
            ..Default::default()
        })])
    }
    fn restore(&mut self, saved: Vec<(String, Vec<u8>)>) {
        for (k, v) in saved {
            if k == "n" {
                let n = String::from_utf8_lossy(&v).parse().unwrap_or(0);
                self.n = n;
                self.restored = Some(n);
            }
        }
    }
    fn take_state(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        vec![("n".into(), Some(self.n.to_string().into_bytes()))]
    }
}

async fn run_persistent(dir: &std::path::Path, ms: u64) -> (Vec<u64>, Option<u64>) {
    let outbox = Arc::new(Outbox::open(&dir.join("agent.sled"), "web-01", 1000).expect("open"));
    let restored = Arc::new(Mutex::new(None));
    struct Probe(Persistent, Arc<Mutex<Option<u64>>>);
    #[async_trait::async_trait]
    impl Module for Probe {
        fn kind(&self) -> &'static str {
            "heartbeat"
        }
        async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
            *self.1.lock().unwrap_or_else(|p| p.into_inner()) = self.0.restored;
            self.0.run_once(ctx).await
        }
        fn restore(&mut self, saved: Vec<(String, Vec<u8>)>) {
            self.0.restore(saved)
        }
        fn take_state(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
            self.0.take_state()
        }
    }
    let entries = vec![ModuleEntry {
        name: "counter".into(),
        interval: Duration::from_millis(10),
        fingerprint: "f".into(),
        module: Box::new(Probe(
            Persistent {
                n: 0,
                restored: None,
            },
            restored.clone(),
        )),
    }];
    let runner = Runner::new("web-01", outbox.clone(), Arc::new(Notify::new()), entries);
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(runner.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(ms)).await;
    cancel.cancel();
    handle.await.expect("runner ends");
    let counts: Vec<u64> = outbox
        .pending_events()
        .expect("events")
        .into_iter()
        .filter_map(|e| match e.body {
            pb::event::Body::Heartbeat(h) => Some(h.uptime_ms),
            _ => None,
        })
        .collect();
    let saved = outbox.module_state("counter").expect("state");
    let last = counts_last(&counts);
    assert_eq!(
        saved,
        [("n".to_owned(), last.to_string().into_bytes())],
        "state committed with the last run's event"
    );
    let r = *restored.lock().unwrap_or_else(|p| p.into_inner());
    (counts, r)
}

fn counts_last(v: &[u64]) -> u64 {
    v.last().copied().unwrap_or(0)
}

#[tokio::test]
async fn module_state_is_committed_with_events_and_restored_before_the_first_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, restored) = run_persistent(dir.path(), 80).await;
    assert_eq!(restored, None);
    assert!(first.len() >= 2, "{first:?}");
    let (all, restored) = run_persistent(dir.path(), 80).await;
    // The new runner's module started from the persisted count: the sequence continues.
    assert_eq!(restored, Some(counts_last(&first)));
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>());
}
