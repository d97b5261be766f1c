//! Run-time control through the real runner and a real sled outbox in a temp dir: pause,
//! resume, disable across a restart, reconfigure (good, bad, file changed), and the pure rules.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsfleet_proto::pb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::parse_str;
use crate::runner::{Runner, StatusBoard};

const FILE: &str = r#"
host = "web-01"
[[modules]]
type = "heartbeat"
name = "hb"
interval = "20ms"
[[modules]]
type = "disk"
name = "disk"
interval = "50ms"
paths = ["/"]
"#;

pub(super) struct Agent {
    pub(super) outbox: Arc<Outbox>,
    pub(super) control: ControlHandle,
    pub(super) board: StatusBoard,
    pub(super) cancel: CancellationToken,
    pub(super) task: tokio::task::JoinHandle<()>,
}

/// Polls `cond` every 10 ms for up to 30 s: a loaded machine is slow, not wrong.
pub(super) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(super) async fn start(dir: &Path, text: &str) -> Agent {
    let cfg = parse_str(text).expect("valid config");
    // The previous life's background rewrites may hold the store for a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let outbox = loop {
        match Outbox::open(&dir.join("agent.sled"), "web-01", 10_000) {
            Ok(o) => break Arc::new(o),
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot reopen the outbox: {e}"),
        }
    };
    let runner = Runner::from_config("web-01", outbox.clone(), Arc::new(Notify::new()), &cfg);
    let control = runner.control();
    let board = runner.status();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    // The runner applies the persisted control records before any module runs, so one
    // finished run means they are in place.
    eventually("a first module run", || {
        board.slots().iter().any(|s| s.runs > 0)
    })
    .await;
    Agent {
        outbox,
        control,
        board,
        cancel,
        task,
    }
}

impl Agent {
    /// Stops the runner and returns every event it committed (the outbox is closed after).
    pub(super) async fn stop(self) -> Vec<opsfleet_proto::EventEnvelope> {
        self.cancel.cancel();
        self.task.await.expect("runner ends");
        let evs = self.outbox.pending_events().expect("events");
        drop(self.outbox);
        // Background rewrites of control records hold the outbox for a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        evs
    }

    pub(super) fn slot(&self, name: &str) -> crate::runner::ModuleSlot {
        self.board
            .slots()
            .into_iter()
            .find(|s| s.name == name)
            .expect("slot")
    }
}

pub(super) fn states(
    evs: &[opsfleet_proto::EventEnvelope],
    module: &str,
) -> Vec<(i32, String, String)> {
    evs.iter()
        .filter_map(|e| match &e.body {
            pb::event::Body::ModuleState(s) if s.module == module => {
                Some((s.state, s.reason.clone(), s.config_fingerprint.clone()))
            }
            _ => None,
        })
        .collect()
}

const RUNNING: i32 = pb::ModuleRunState::Running as i32;
const PAUSED: i32 = pb::ModuleRunState::Paused as i32;
const DISABLED: i32 = pb::ModuleRunState::Disabled as i32;

#[tokio::test]
async fn pause_stops_runs_and_resume_restarts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(dir.path(), FILE).await;
    eventually("two heartbeat runs", || a.slot("hb").runs >= 2).await;
    let reply = a.control.pause("hb").await.expect("pause");
    assert_eq!((reply.state, reply.changed), (RunState::Paused, true));
    // A run in flight may still finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = a.slot("hb").runs;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.slot("hb").runs, runs, "no run while paused");
    assert_eq!(a.slot("hb").state, pb::ModuleRunState::Paused);
    // Pausing again changes nothing.
    assert!(!a.control.pause("hb").await.expect("pause").changed);
    a.control.resume("hb").await.expect("resume");
    eventually("runs after resume", || a.slot("hb").runs >= runs + 2).await;
    let fp = a.slot("hb").fingerprint;
    let evs = a.stop().await;
    let hb = states(&evs, "hb");
    assert_eq!(hb.len(), 3, "{hb:?}");
    assert_eq!(hb[0].0, RUNNING);
    assert_eq!((hb[1].0, hb[1].1.as_str()), (PAUSED, "pause (control)"));
    assert_eq!(hb[2].0, RUNNING);
    assert!(hb.iter().all(|s| s.2 == fp));
    // Heartbeats reported the paused state while paused... and the module list in order.
    let paused_seen = evs.iter().any(|e| match &e.body {
        pb::event::Body::Heartbeat(h) => h.modules.iter().any(|m| m.state == PAUSED),
        _ => false,
    });
    assert!(
        !paused_seen,
        "a paused heartbeat module does not run, so never reports itself paused"
    );
}

#[tokio::test]
async fn disabled_module_stays_disabled_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(dir.path(), FILE).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    a.control.disable("disk").await.expect("disable");
    let err = a.control.resume("disk").await.expect_err("resume refused");
    assert!(matches!(err, ControlError::Conflict { .. }), "{err}");
    let err = a.control.pause("nope").await.expect_err("unknown");
    assert!(matches!(err, ControlError::UnknownModule { .. }), "{err}");
    let first = a.stop().await;
    let last_seq = first.last().map_or(0, |e| e.seq);

    let b = start(dir.path(), FILE).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.slot("disk").state, pb::ModuleRunState::Disabled);
    assert_eq!(b.slot("disk").runs, 0);
    // Heartbeats of the second life report disk as disabled.
    let control = b.control.clone();
    let evs = b.stop().await;
    let second: Vec<_> = evs.iter().filter(|e| e.seq > last_seq).cloned().collect();
    let disk = states(&second, "disk");
    assert_eq!(disk.len(), 1, "{disk:?}");
    assert_eq!(disk[0].0, DISABLED);
    assert!(disk[0].1.contains("disabled at run time"), "{}", disk[0].1);
    assert!(!second
        .iter()
        .any(|e| matches!(e.body, pb::event::Body::Disk(_))));
    let hb_reports_disabled = second.iter().any(|e| match &e.body {
        pb::event::Body::Heartbeat(h) => h
            .modules
            .iter()
            .any(|m| m.name == "disk" && m.state == DISABLED),
        _ => false,
    });
    assert!(hb_reports_disabled);
    assert!(matches!(
        control.pause("hb").await,
        Err(ControlError::Stopped)
    ));

    // Enabled again: the record goes away and the next life runs it.
    let c = start(dir.path(), FILE).await;
    c.control.enable("disk").await.expect("enable");
    c.stop().await;
    let d = start(dir.path(), FILE).await;
    eventually("disk to run again", || d.slot("disk").runs >= 1).await;
    assert_eq!(d.slot("disk").state, pb::ModuleRunState::Running);
    d.stop().await;
}

#[tokio::test]
async fn bad_reconfigure_keeps_the_old_config_and_emits_config_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(dir.path(), FILE).await;
    let old = a.slot("disk").fingerprint;
    let bad = "type = \"disk\"\nname = \"disk\"\ninterval = \"0s\"\nwarn_percent = 99.0\npaths = [\"relative\"]\n";
    let err = a
        .control
        .reconfigure_toml("disk", bad, Origin::command(""))
        .await
        .expect_err("rejected");
    let ControlError::Rejected { problems, .. } = &err else {
        panic!("{err}")
    };
    let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 3, "every problem at once: {problems:?}");
    for k in ["interval", "paths[0]", "warn_percent"] {
        assert!(keys.contains(&k), "{k} in {problems:?}");
    }
    // A typed config under another name is refused too.
    let renamed = crate::config::parse_module_toml("type = \"disk\"\nname = \"disk2\"\n")
        .expect("valid on its own");
    assert!(matches!(
        a.control
            .reconfigure("disk", renamed, Origin::command(""))
            .await,
        Err(ControlError::Rejected { .. })
    ));
    // Unparseable text is rejected with the parser's problems.
    assert!(matches!(
        a.control
            .reconfigure_toml("disk", "type = \"disk\"\nbogus = 1\n", Origin::admin())
            .await,
        Err(ControlError::Rejected { .. })
    ));
    eventually("disk to run with its old config", || {
        a.slot("disk").runs >= 1
    })
    .await;
    assert_eq!(a.slot("disk").fingerprint, old);
    let evs = a.stop().await;
    let rejected: Vec<&pb::ConfigRejected> = evs
        .iter()
        .filter_map(|e| match &e.body {
            pb::event::Body::ConfigRejected(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[0].module, "disk");
    assert_eq!(rejected[0].kept_fingerprint, old);
    assert!(
        rejected[0].reason.contains("warn_percent"),
        "{}",
        rejected[0].reason
    );
    assert!(!rejected[0].rejected_fingerprint.is_empty());
    assert_eq!(
        states(&evs, "disk").len(),
        1,
        "no module_state for a refused change"
    );
}

#[tokio::test]
async fn good_reconfigure_swaps_persists_and_yields_to_a_changed_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(dir.path(), FILE).await;
    a.control.pause("hb").await.expect("pause");
    let new = "type = \"heartbeat\"\nname = \"hb\"\ninterval = \"30ms\"\n";
    let reply = a
        .control
        .reconfigure_toml("hb", new, Origin::command(""))
        .await
        .expect("accepted");
    assert!(reply.changed);
    assert_eq!(reply.state, RunState::Paused, "run state kept");
    let slot = a.slot("hb");
    assert_eq!(slot.interval, Duration::from_millis(30));
    assert_eq!(slot.fingerprint, reply.fingerprint);
    let before = a.slot("hb").runs;
    a.control.resume("hb").await.expect("resume");
    eventually("the new instance to run", || a.slot("hb").runs > before).await;
    let evs = a.stop().await;
    let hb = states(&evs, "hb");
    assert!(
        hb.iter()
            .any(|s| s.1 == "reconfigured" && s.2 == reply.fingerprint && s.0 == PAUSED),
        "{hb:?}"
    );

    // Same file: the override is restored.
    let b = start(dir.path(), FILE).await;
    assert_eq!(b.slot("hb").fingerprint, reply.fingerprint);
    assert_eq!(b.slot("hb").interval, Duration::from_millis(30));
    b.stop().await;

    // The file changed since: the file wins.
    let changed = FILE.replace("interval = \"20ms\"", "interval = \"40ms\"");
    let c = start(dir.path(), &changed).await;
    assert_eq!(c.slot("hb").interval, Duration::from_millis(40));
    let evs = c.stop().await;
    let hb = states(&evs, "hb");
    assert!(
        hb.last()
            .is_some_and(|s| s.1.contains("run-time config dropped")),
        "{hb:?}"
    );
}

#[test]
fn transitions_follow_the_documented_rules() {
    use Action::*;
    use RunState::*;
    assert_eq!(transition(Running, Pause), Ok(Some(Paused)));
    assert_eq!(transition(Paused, Resume), Ok(Some(Running)));
    assert_eq!(transition(Paused, Disable), Ok(Some(Disabled)));
    assert_eq!(transition(Disabled, Enable), Ok(Some(Running)));
    assert_eq!(transition(Running, Resume), Ok(None));
    assert_eq!(transition(Paused, Enable), Ok(None));
    assert_eq!(transition(Disabled, Disable), Ok(None));
    assert!(transition(Disabled, Pause).is_err());
    assert!(transition(Disabled, Resume).is_err());
}

#[test]
fn start_plan_state_wins_and_override_needs_the_same_file() {
    let cfg =
        crate::config::parse_module_toml("type = \"heartbeat\"\nname = \"hb\"\n").expect("valid");
    let rec = Record {
        state: RunState::Paused,
        reason: String::new(),
        config: Some(cfg.clone()),
        file_fingerprint: "aaa".into(),
        changed_unix_ms: 0,
    };
    let allow = |_: &ModuleConfig| Vec::new();
    let same = start_plan(Some(&rec), "aaa", &allow);
    assert_eq!(same.state, RunState::Paused);
    assert_eq!(same.config, Some(cfg));
    assert!(!same.dropped_override);
    let changed = start_plan(Some(&rec), "bbb", &allow);
    assert_eq!(changed.state, RunState::Paused);
    assert_eq!(changed.config, None);
    assert!(changed.dropped_override);
    assert_eq!(start_plan(None, "x", &allow).state, RunState::Running);
    // The host policy now refuses the override: dropped, naming the rule.
    let refuse = |_: &ModuleConfig| {
        vec![crate::config::Violation {
            rule: "policy.log_paths",
            key: "paths[0]".into(),
            reason: "outside".into(),
        }]
    };
    let refused = start_plan(Some(&rec), "aaa", &refuse);
    assert_eq!(refused.config, None);
    assert!(refused.dropped_override);
    assert_eq!(refused.refused_by, ["policy.log_paths"]);
    assert_eq!(refused.state, RunState::Paused, "the run state still wins");
}

#[tokio::test]
async fn paused_for_names_only_the_modules_paused_for_that_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(dir.path(), FILE).await;
    a.control
        .act("hb", Action::Pause, "command")
        .await
        .expect("pause");
    a.control
        .act("disk", Action::Pause, "drain")
        .await
        .expect("pause");
    assert_eq!(super::paused_for(&a.outbox, "drain"), ["disk"]);
    assert_eq!(super::paused_for(&a.outbox, "command"), ["hb"]);
    a.control
        .act("disk", Action::Resume, "undrain")
        .await
        .expect("resume");
    assert!(super::paused_for(&a.outbox, "drain").is_empty());
    a.stop().await;
}
