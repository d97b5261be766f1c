//! Supervisor tests with short real processes: restarts with backoff, stop with SIGTERM then
//! SIGKILL after the grace.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use opsfleet_proto::pb;

use super::{next_backoff, Boot, Supervisor};
use crate::config::{ServiceConfig, ServiceManager};
use crate::modules::service::adopt::{self, ChildRecord};

fn cfg(script: &str) -> ServiceConfig {
    let mut cfg = ServiceConfig::process(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]);
    cfg.name = Some("app".to_owned());
    cfg.restart_backoff_min = Duration::from_millis(100);
    cfg.restart_backoff_max = Duration::from_millis(400);
    assert_eq!(cfg.manager, ServiceManager::Process);
    cfg
}

fn start(cfg: ServiceConfig) -> (Supervisor, mpsc::Receiver<pb::ServiceState>) {
    start_adopting(cfg, None)
}

fn start_adopting(
    cfg: ServiceConfig,
    adopt: Option<ChildRecord>,
) -> (Supervisor, mpsc::Receiver<pb::ServiceState>) {
    let boot = match adopt {
        Some(rec) => Boot::Adopt(rec),
        None => Boot::Fresh,
    };
    start_boot(cfg, boot)
}

fn start_boot(cfg: ServiceConfig, boot: Boot) -> (Supervisor, mpsc::Receiver<pb::ServiceState>) {
    let (tx, rx) = mpsc::channel();
    let sup = Supervisor::start(
        "app".to_owned(),
        cfg,
        boot,
        Box::new(move |s| {
            let _ = tx.send(s);
        }),
    )
    .expect("supervisor starts");
    (sup, rx)
}

/// Collects states until one matches `done` (bounded: 30 s).
fn until(
    rx: &mpsc::Receiver<pb::ServiceState>,
    seen: &mut Vec<pb::ServiceState>,
    done: impl Fn(&pb::ServiceState) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(200)) {
            let hit = done(&s);
            seen.push(s);
            if hit {
                return;
            }
        }
    }
    panic!("no matching state within 30 s; seen {seen:?}");
}

fn state(s: &pb::ServiceState) -> pb::ServiceRunState {
    pb::ServiceRunState::try_from(s.state).unwrap_or(pb::ServiceRunState::Unspecified)
}

#[test]
fn backoff_doubles_up_to_the_cap_and_resets_after_a_long_run() {
    let c = cfg("true");
    let short = Duration::from_millis(10);
    let first = next_backoff(&c, None, short);
    assert_eq!(first, Duration::from_millis(100));
    let second = next_backoff(&c, Some(first), short);
    assert_eq!(second, Duration::from_millis(200));
    let third = next_backoff(&c, Some(second), short);
    assert_eq!(third, Duration::from_millis(400));
    assert_eq!(next_backoff(&c, Some(third), short), third, "capped");
    assert_eq!(
        next_backoff(&c, Some(third), Duration::from_secs(1)),
        Duration::from_millis(100),
        "a run as long as the cap resets the backoff"
    );
}

#[test]
fn a_child_that_exits_is_restarted_with_growing_waits() {
    let (mut sup, rx) = start(cfg("exit 3"));
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| {
        state(s) == pb::ServiceRunState::Running && s.restarts >= 3
    });
    sup.stop();
    let failed: Vec<_> = seen
        .iter()
        .filter(|s| state(s) == pb::ServiceRunState::Failed)
        .collect();
    assert!(failed.len() >= 3, "{seen:?}");
    assert!(failed
        .iter()
        .all(|s| s.exit_detail == "exited with status 3"));
    let runs: Vec<_> = seen
        .iter()
        .filter(|s| state(s) == pb::ServiceRunState::Running)
        .collect();
    assert!(runs.iter().all(|s| s.pid > 0 && s.manager == "process"));
    let restarts: Vec<u64> = runs.iter().map(|s| s.restarts).collect();
    assert_eq!(restarts, vec![0, 1, 2, 3], "{seen:?}");
    // Waits between starts: at least 100, 200, 400 ms (doubling from the minimum).
    for (i, want) in [100, 200, 400].into_iter().enumerate() {
        let gap = runs[i + 1].since_unix_ms - runs[i].since_unix_ms;
        assert!(gap >= want, "start {i} -> {}: {gap} ms < {want} ms", i + 1);
    }
}

#[test]
fn stop_ends_a_child_with_sigterm_before_the_grace() {
    let (mut sup, rx) = start(cfg("sleep 30"));
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    let t0 = Instant::now();
    sup.stop();
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let states: Vec<_> = rx.try_iter().collect();
    let kinds: Vec<_> = states.iter().map(state).collect();
    assert_eq!(
        kinds,
        vec![pb::ServiceRunState::Stopping, pb::ServiceRunState::Stopped]
    );
    let detail = &states[1].exit_detail;
    assert!(
        detail == "killed by signal 15" || detail == "exited with status 143",
        "{detail}"
    );
}

#[test]
fn stop_kills_a_child_that_ignores_sigterm_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let mut c = cfg(&format!(
        "trap '' TERM; touch {}; sleep 30",
        ready.display()
    ));
    c.stop_grace = Duration::from_millis(500);
    let (mut sup, rx) = start(c);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the child never set its trap");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    sup.stop();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let last = rx.try_iter().last().expect("a stopped state");
    assert_eq!(state(&last), pb::ServiceRunState::Stopped);
    assert_eq!(last.exit_detail, "killed by signal 9 after the stop grace");
}

/// A child in its own process group, as a previous agent would have left it.
fn orphan(argv: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .process_group(0)
        .spawn()
        .expect("spawn")
}

fn argv_cfg(argv: &[&str]) -> ServiceConfig {
    let mut c = cfg("unused");
    c.argv = argv.iter().map(|a| (*a).to_owned()).collect();
    c
}

#[test]
fn a_live_child_of_a_previous_agent_is_adopted_not_started_again() {
    let mut left = orphan(&["sleep", "30"]);
    let c = argv_cfg(&["sleep", "30"]);
    let rec = adopt::record(left.id(), &c).expect("the child runs");
    let (mut sup, rx) = start_adopting(c, Some(rec));
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].pid, left.id());
    assert_eq!(seen[0].exit_detail, "adopted after an agent restart");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.try_iter().next().is_none(), "no second start");
    sup.stop();
    let kinds: Vec<_> = rx.try_iter().map(|s| state(&s)).collect();
    assert_eq!(
        kinds,
        vec![pb::ServiceRunState::Stopping, pb::ServiceRunState::Stopped]
    );
    let status = left.wait().expect("reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
}

#[test]
fn a_changed_config_replaces_the_old_child_and_a_reused_pid_is_left_alone() {
    // Started with another config: stopped, and the current config started.
    let mut old = orphan(&["sleep", "30"]);
    let rec = adopt::record(old.id(), &argv_cfg(&["sleep", "30"])).expect("runs");
    let (mut sup, rx) = start_adopting(argv_cfg(&["sleep", "31"]), Some(rec));
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    assert_ne!(seen[0].pid, old.id());
    assert!(old.wait().is_ok_and(|s| !s.success()), "old child stopped");
    sup.stop();

    // Same pid but another start time (a reused pid): not ours, not touched.
    let mut other = orphan(&["sleep", "30"]);
    let c = argv_cfg(&["sleep", "30"]);
    let mut rec = adopt::record(other.id(), &c).expect("runs");
    rec.start_ticks += 1;
    let (mut sup, rx) = start_adopting(c, Some(rec));
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    assert_ne!(seen[0].pid, other.id());
    sup.stop();
    assert!(other.try_wait().expect("poll").is_none(), "left running");
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn the_child_gets_its_env_and_workdir_and_its_output_is_appended_to_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out.log"), dir.path().join("err.log"));
    std::fs::write(&out, "before\n").expect("seed");
    let mut c = cfg("echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 2");
    c.env.insert("GREETING".to_owned(), "hello".to_owned());
    c.workdir = Some(dir.path().to_owned());
    c.stdout = Some(out.clone());
    c.stderr = Some(err.clone());
    let (mut sup, rx) = start(c);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| {
        s.restarts >= 1 && state(s) == pb::ServiceRunState::Failed
    });
    sup.stop();
    let line = format!("hello from {}", dir.path().display());
    let out_text = std::fs::read_to_string(&out).expect("stdout file");
    assert!(out_text.starts_with("before\n"), "{out_text}");
    assert_eq!(out_text.matches(&line).count(), 2, "{out_text}");
    let err_text = std::fs::read_to_string(&err).expect("stderr file");
    assert_eq!(err_text, "oops\noops\n");
}

/// Asks `op` and waits for its answer (bounded: 30 s).
fn ask(sup: &Supervisor, op: crate::modules::service::ServiceOp) -> Result<String, String> {
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    sup.request(op, tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.try_recv() {
            Ok(r) => return r,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no answer to {op:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{op:?} abandoned: {e}"),
        }
    }
}

#[test]
fn stop_keeps_it_down_start_brings_it_back_and_restart_counts() {
    use crate::modules::service::ServiceOp;
    let (mut sup, rx) = start(cfg("sleep 30"));
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    let first = seen[0].pid;
    assert!(ask(&sup, ServiceOp::Start)
        .expect("start")
        .starts_with("already running"));

    let stopped = ask(&sup, ServiceOp::Stop).expect("stop");
    assert!(stopped.starts_with("stopped"), "{stopped}");
    let kinds: Vec<_> = rx.try_iter().collect();
    assert_eq!(
        kinds.iter().map(state).collect::<Vec<_>>(),
        vec![pb::ServiceRunState::Stopping, pb::ServiceRunState::Stopped]
    );
    assert_eq!(kinds[1].exit_detail, super::STOPPED_BY_COMMAND);
    // Down: no restart after the backoff.
    std::thread::sleep(Duration::from_millis(500));
    assert!(rx.try_iter().next().is_none(), "stays down");
    assert_eq!(ask(&sup, ServiceOp::Stop), Ok("already stopped".to_owned()));
    let reload = ask(&sup, ServiceOp::Reload).expect_err("nothing to reload");
    assert!(reload.contains("not running"), "{reload}");

    let started = ask(&sup, ServiceOp::Start).expect("start");
    assert!(started.starts_with("running (pid "), "{started}");
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    let second = seen[0].pid;
    assert_ne!(second, first);

    ask(&sup, ServiceOp::Restart).expect("restart");
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    let last = seen.last().expect("running");
    assert_ne!(last.pid, second);
    assert_eq!(last.restarts, 1, "{seen:?}");
    assert!(
        last.exit_detail.starts_with("restarted by command"),
        "{last:?}"
    );
    sup.stop();
}

#[test]
fn a_service_booted_down_is_not_started_until_asked() {
    use crate::modules::service::ServiceOp;
    let (mut sup, rx) = start_boot(cfg("sleep 30"), Boot::Down);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Stopped);
    assert_eq!(seen[0].exit_detail, super::STOPPED_BY_COMMAND);
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.try_iter().next().is_none(), "not started");
    ask(&sup, ServiceOp::Start).expect("start");
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    sup.stop();
}

#[test]
fn reload_signals_the_group_or_runs_the_reload_command() {
    use crate::modules::service::ServiceOp;
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("hup");
    let c = cfg(&format!(
        "trap 'touch {}' HUP; while true; do sleep 0.1; done",
        marker.display()
    ));
    let (mut sup, rx) = start(c);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    // Let the shell set its trap.
    std::thread::sleep(Duration::from_millis(300));
    let sent = ask(&sup, ServiceOp::Reload).expect("reload");
    assert!(sent.contains("SIGHUP"), "{sent}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the child never saw SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rx
        .try_iter()
        .all(|s| state(&s) != pb::ServiceRunState::Failed));
    sup.stop();

    let mut c = cfg("sleep 30");
    c.reload_argv = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo bad >&2; exit 4".into(),
    ]);
    let (mut sup, rx) = start(c);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    let err = ask(&sup, ServiceOp::Reload).expect_err("the command fails");
    assert_eq!(err, "reload command failed: exited with status 4: bad");
    sup.stop();
}

#[test]
fn a_start_during_the_backoff_starts_now() {
    use crate::modules::service::ServiceOp;
    let mut c = cfg("exit 1");
    c.restart_backoff_min = Duration::from_secs(20);
    c.restart_backoff_max = Duration::from_secs(40);
    let (mut sup, rx) = start(c);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Failed);
    let t0 = Instant::now();
    ask(&sup, ServiceOp::Start).expect("started");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "not after the backoff"
    );
    sup.stop();
}

#[test]
fn the_child_runs_as_the_configured_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIP: running a child as another user needs root");
        return;
    }
    let mut c = argv_cfg(&["sleep", "30"]);
    c.user = Some("nobody".to_owned());
    let (mut sup, rx) = start(c);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Running);
    let pid = seen.last().map(|s| s.pid).expect("a running state");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid_line}"
    );
    sup.stop();
}

#[test]
fn an_unknown_user_fails_the_start_with_the_reason() {
    let mut c = argv_cfg(&["sleep", "30"]);
    c.user = Some("no-such-user-opsfleet".to_owned());
    let (mut sup, rx) = start(c);
    let mut seen = Vec::new();
    until(&rx, &mut seen, |s| state(s) == pb::ServiceRunState::Failed);
    let failed = seen.last().expect("a failed state");
    assert!(
        failed
            .exit_detail
            .contains("no user \"no-such-user-opsfleet\""),
        "{failed:?}"
    );
    sup.stop();
}
