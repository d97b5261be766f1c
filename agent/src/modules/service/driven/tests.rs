//! The driven supervisor with a scripted manager: a state event on each change only, and
//! requests answered once the observed state matches, or with the command's failure.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use opsfleet_proto::pb::{self, ServiceRunState};
use tokio::sync::oneshot;

use super::*;

/// A manager whose state the test sets; operations are recorded and move the state as a real
/// manager would (after `lag` observations), or fail when `fail` is set.
#[derive(Clone, Default)]
struct Script {
    inner: Arc<Mutex<ScriptState>>,
}

#[derive(Default)]
struct ScriptState {
    observed: Observed,
    ops: Vec<String>,
    /// The state an operation leads to, reached after `lag` more observations.
    pending: Option<(ServiceRunState, u32)>,
    lag: u32,
    fail: Option<String>,
}

impl Script {
    fn set(&self, state: ServiceRunState, instance: &str) {
        let mut s = self.inner.lock().expect("script");
        s.observed.state = state;
        s.observed.instance = instance.to_owned();
    }

    fn op(&self, name: &str, leads_to: Option<ServiceRunState>) -> Result<(), DrivenError> {
        let mut s = self.inner.lock().expect("script");
        s.ops.push(name.to_owned());
        if let Some(reason) = s.fail.clone() {
            return Err(DrivenError::Failed {
                argv: name.to_owned(),
                code: "1".to_owned(),
                excerpt: reason,
            });
        }
        let lag = s.lag;
        s.pending = leads_to.map(|st| (st, lag));
        Ok(())
    }
}

impl Driven for Script {
    fn start(&mut self) -> Result<(), DrivenError> {
        self.op("start", Some(ServiceRunState::Running))
    }
    fn stop(&mut self, grace: Duration) -> Result<(), DrivenError> {
        self.op(&format!("stop {grace:?}"), Some(ServiceRunState::Stopped))
    }
    fn restart(&mut self, _grace: Duration) -> Result<(), DrivenError> {
        self.op("restart", Some(ServiceRunState::Running))
    }
    fn reload(&mut self) -> Result<(), DrivenError> {
        self.op("reload", None)
    }
    fn observe(&mut self) -> Result<Observed, DrivenError> {
        let mut s = self.inner.lock().expect("script");
        match s.pending {
            Some((st, 0)) => {
                s.observed.state = st;
                s.pending = None;
            }
            Some((st, n)) => s.pending = Some((st, n - 1)),
            None => {}
        }
        Ok(s.observed.clone())
    }
}

fn start(
    script: &Script,
    settle: Duration,
) -> (DrivenSupervisor, mpsc::Receiver<pb::ServiceState>) {
    let (tx, rx) = mpsc::channel();
    let timing = Timing {
        interval: Duration::from_millis(20),
        grace: Duration::from_secs(7),
        settle,
    };
    let sup = DrivenSupervisor::with_driver(
        "api".to_owned(),
        ServiceManager::Compose,
        Box::new(script.clone()),
        timing,
        Box::new(move |s| {
            let _ = tx.send(s);
        }),
    )
    .expect("thread");
    (sup, rx)
}

fn ask(sup: &DrivenSupervisor, op: ServiceOp) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    sup.request(op, tx);
    rx.blocking_recv().expect("answered")
}

fn next(rx: &mpsc::Receiver<pb::ServiceState>) -> pb::ServiceState {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a state event")
}

#[test]
fn a_state_is_reported_on_each_change_only() {
    let script = Script::default();
    script.set(ServiceRunState::Running, "c1");
    let (mut sup, rx) = start(&script, Duration::from_secs(10));
    let first = next(&rx);
    assert_eq!(
        (first.state(), first.instance.as_str()),
        (ServiceRunState::Running, "c1")
    );
    assert_eq!(
        (first.manager.as_str(), first.service.as_str()),
        ("compose", "api")
    );
    assert!(first.since_unix_ms > 0);
    script.set(ServiceRunState::Failed, "c1");
    assert_eq!(next(&rx).state(), ServiceRunState::Failed);
    script.set(ServiceRunState::Failed, "c2");
    assert_eq!(next(&rx).instance, "c2");
    sup.stop();
    assert!(rx.try_recv().is_err(), "no event without a change");
    assert!(
        script.inner.lock().expect("script").ops.is_empty(),
        "stop leaves the service alone"
    );
}

#[test]
fn requests_are_answered_once_the_state_matches() {
    let script = Script::default();
    script.set(ServiceRunState::Stopped, "");
    script.inner.lock().expect("script").lag = 3;
    let (sup, rx) = start(&script, Duration::from_secs(10));
    let started = ask(&sup, ServiceOp::Start).expect("started");
    assert!(started.starts_with("running"), "{started}");
    let stopped = ask(&sup, ServiceOp::Stop).expect("stopped");
    assert!(stopped.starts_with("stopped"), "{stopped}");
    ask(&sup, ServiceOp::Restart).expect("restarted");
    let reloaded = ask(&sup, ServiceOp::Reload).expect("reloaded");
    assert!(reloaded.starts_with("reloaded; running"), "{reloaded}");
    assert_eq!(
        script.inner.lock().expect("script").ops,
        ["start", "stop 7s", "restart", "reload"]
    );
    let seen: Vec<pb::ServiceState> = rx.try_iter().collect();
    let states: Vec<ServiceRunState> = seen.iter().map(|s| s.state()).collect();
    assert_eq!(
        states,
        [
            ServiceRunState::Stopped,
            ServiceRunState::Running,
            ServiceRunState::Stopped,
            ServiceRunState::Running,
        ]
    );
    // Only the stop asked by a command says so (the service_down alert spares it).
    let details: Vec<&str> = seen.iter().map(|s| s.exit_detail.as_str()).collect();
    assert_eq!(details[0], "", "{details:?}");
    assert_eq!(
        details[2],
        crate::modules::service::STOPPED_BY_COMMAND,
        "{details:?}"
    );
}

#[test]
fn a_failed_command_or_a_state_that_never_comes_is_the_answer() {
    let script = Script::default();
    script.set(ServiceRunState::Stopped, "");
    script.inner.lock().expect("script").fail = Some("Unit app.service not found.".to_owned());
    let (sup, _rx) = start(&script, Duration::from_millis(300));
    let err = ask(&sup, ServiceOp::Start).expect_err("failed");
    assert!(
        err.contains("start failed") && err.contains("Unit app.service not found."),
        "{err}"
    );
    {
        let mut s = script.inner.lock().expect("script");
        s.fail = None;
        s.lag = 1_000_000;
    }
    let err = ask(&sup, ServiceOp::Restart).expect_err("never running");
    assert!(
        err.contains("restart ran, but the service is stopped"),
        "{err}"
    );
}

#[test]
fn a_request_after_stop_is_refused() {
    let script = Script::default();
    let (mut sup, _rx) = start(&script, Duration::from_secs(1));
    sup.stop();
    let err = ask(&sup, ServiceOp::Start).expect_err("stopped");
    assert!(err.contains("has stopped"), "{err}");
}

#[test]
fn the_configured_manager_is_built() {
    let cfg = ServiceConfig::systemd("app.service");
    assert!(driver(&cfg, Box::new(SystemRunner)).is_some());
    assert!(driver(
        &ServiceConfig::process(vec!["x".to_owned()]),
        Box::new(SystemRunner)
    )
    .is_none());
}

/// A stand-in `systemctl`: records its arguments, keeps the unit's state in a file, answers
/// `show` from it; `start` of `bad.service` fails as systemctl does.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
dir=$(dirname "$0")
echo "$@" >> "$dir/ran"
verb=$1; [ "$verb" = "--user" ] && verb=$2
unit=$(eval echo "\${$#}")
case "$verb" in
  start|restart) [ "$unit" = bad.service ] && { echo "Job for $unit failed." >&2; exit 1; }
                 echo active > "$dir/state" ;;
  stop) echo inactive > "$dir/state" ;;
  reload) ;;
  show) state=$(cat "$dir/state" 2>/dev/null || echo inactive)
        pid=0; [ "$state" = active ] && pid=4242
        printf 'LoadState=loaded\nActiveState=%s\nSubState=x\nMainPID=%s\nNRestarts=0\n' "$state" "$pid" ;;
esac
"#;

#[test]
fn the_systemd_manager_drives_a_unit_through_the_systemctl_program() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("systemctl");
    std::fs::write(&program, FAKE_SYSTEMCTL).expect("write");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cfg = ServiceConfig::systemd("app.service");
    cfg.interval = Duration::from_millis(50);
    if let Some(s) = cfg.systemd.as_mut() {
        s.systemctl = program.to_string_lossy().into_owned();
        s.user = true;
    }
    let (tx, rx) = mpsc::channel();
    let on_state = Box::new(move |s| {
        let _ = tx.send(s);
    });
    let sup = DrivenSupervisor::start("app".to_owned(), &cfg, on_state).expect("thread");
    assert_eq!(next(&rx).state(), ServiceRunState::Stopped);
    let started = ask(&sup, ServiceOp::Start).expect("started");
    assert_eq!(started, "running (app.service, pid 4242)");
    let running = next(&rx);
    assert_eq!((running.manager.as_str(), running.pid), ("systemd", 4242));
    assert!(ask(&sup, ServiceOp::Stop)
        .expect("stopped")
        .starts_with("stopped"));
    let ran = std::fs::read_to_string(dir.path().join("ran")).expect("ran");
    let verbs: Vec<&str> = ran.lines().filter(|l| !l.contains(" show ")).collect();
    assert_eq!(
        verbs,
        ["--user start app.service", "--user stop app.service"]
    );

    cfg.systemd = Some(Box::new(crate::config::SystemdSection {
        unit: "bad.service".to_owned(),
        systemctl: program.to_string_lossy().into_owned(),
        user: false,
    }));
    let bad = DrivenSupervisor::start("bad".to_owned(), &cfg, Box::new(|_| {})).expect("thread");
    let err = ask(&bad, ServiceOp::Start).expect_err("failed");
    assert!(
        err.contains("status 1") && err.contains("Job for bad.service failed."),
        "{err}"
    );
}
