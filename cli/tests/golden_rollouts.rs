//! Golden files for `opsctl rollout status|start` and `opsctl rollouts`: the status block in
//! every phase, the plan, the table, the lines a follow prints for a sequence of reads, and
//! the JSON. `UPDATE_GOLDEN=1 cargo test -p opsfleet-cli --test golden_rollouts` rewrites them;
//! review the diff.

use opsfleet_cli::rollout::progress::{changes, verdict, Aim, Verdict};
use opsfleet_cli::views::rollouts;
use opsfleet_proto::api::{
    LeaderRole, Responder, RolloutGates, RolloutHostState, RolloutHostView, RolloutPhase,
    RolloutStepView, RolloutStrategy, RolloutView, RolloutWaveView, RolloutsReply, SkippedHost,
};

const NOW: i64 = 1_790_000_000_000;
const ID: &str = "0193a4c2-7d1e-7abc-9def-0123456789ab";

fn check(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "golden file {} differs", path.display());
}

fn host(name: &str, wave: u32, state: RolloutHostState) -> RolloutHostView {
    let updated = matches!(state, RolloutHostState::Updated);
    RolloutHostView {
        host: name.into(),
        wave,
        state,
        previous: "2.4.0".into(),
        running: if updated { "2.4.1" } else { "2.4.0" }.into(),
        command_id: String::new(),
        detail: String::new(),
        deploys: u32::from(updated),
    }
}

fn wave(n: u32, hosts: &[&str], state: &str) -> RolloutWaveView {
    RolloutWaveView {
        wave: n,
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        state: state.into(),
        soak_until_unix_ms: 0,
        detail: String::new(),
    }
}

fn step(ago_s: i64, epoch: u64, step: &str, detail: &str) -> RolloutStepView {
    RolloutStepView {
        at_unix_ms: NOW - ago_s * 1000,
        epoch,
        step: step.into(),
        detail: detail.into(),
    }
}

/// `web` 2.4.0 -> 2.4.1 on six hosts labelled role=web: the canary updated and passed, wave 1
/// updating; web-07 skipped (drained).
fn start() -> RolloutView {
    RolloutView {
        id: ID.into(),
        service: "web".into(),
        version: "2.4.1".into(),
        strategy: RolloutStrategy::Canary,
        phase: RolloutPhase::Running,
        reason: String::new(),
        started_by: "carol".into(),
        started_at_unix_ms: NOW - 300_000,
        ended_at_unix_ms: 0,
        wave: 0,
        waves: vec![
            wave(0, &["web-01"], "pending"),
            wave(1, &["web-02", "web-03"], "pending"),
            wave(2, &["web-04"], "pending"),
            wave(3, &["web-05", "web-06"], "pending"),
        ],
        hosts: ["web-01", "web-02", "web-03", "web-04", "web-05", "web-06"]
            .iter()
            .zip([0, 1, 1, 2, 3, 3])
            .map(|(h, w)| host(h, w, RolloutHostState::Pending))
            .collect(),
        skipped: vec![SkippedHost {
            host: "web-07".into(),
            reason: "in maintenance (drained)".into(),
        }],
        gates: RolloutGates {
            ready_samples: 3,
            soak_ms: 60_000,
            manual: false,
            two_person: false,
            max_unavailable: 1,
            before_job: String::new(),
            keep_old_ms: 0,
            max_p95_ms: 0,
        },
        history: vec![step(
            300,
            7,
            "started",
            "web 2.4.1 on 6 hosts in 4 waves by carol",
        )],
    }
}

fn set_host(v: &mut RolloutView, name: &str, state: RolloutHostState, detail: &str) {
    let h = v.hosts.iter_mut().find(|h| h.host == name).unwrap();
    h.state = state;
    h.detail = detail.into();
    match state {
        RolloutHostState::Updated => {
            h.running = v.version.clone();
            h.deploys = 1;
            h.command_id = format!("0193a4c3-{name}");
        }
        RolloutHostState::RolledBack => h.running = h.previous.clone(),
        _ => {}
    }
}

fn set_wave(v: &mut RolloutView, n: u32, state: &str) {
    let w = v.waves.iter_mut().find(|w| w.wave == n).unwrap();
    w.state = state.into();
    if state == "soaking" {
        w.soak_until_unix_ms = NOW + 42_000;
    }
}

/// Canary passed, wave 1 updated and soaking.
fn soaking() -> RolloutView {
    let mut v = start();
    v.wave = 1;
    set_wave(&mut v, 0, "passed");
    set_wave(&mut v, 1, "soaking");
    for h in ["web-01", "web-02", "web-03"] {
        set_host(&mut v, h, RolloutHostState::Updated, "");
    }
    v.history.extend([
        step(290, 7, "wave_started", "canary: web-01"),
        step(280, 7, "host_command", "web-01: service_deploy 2.4.1"),
        step(200, 7, "gate", "canary passed: 3 ready samples, soak 1m"),
        step(190, 7, "wave_started", "wave 1: web-02, web-03"),
        step(180, 7, "host_command", "web-02: service_deploy 2.4.1"),
        step(60, 9, "host_command", "web-03: service_deploy 2.4.1"),
    ]);
    v
}

fn responder() -> Responder {
    Responder {
        name: "blue".into(),
        color: "blue".into(),
        role: LeaderRole::Active,
        epoch: 9,
        applied_stream_seq: 4_211,
        behind: 0,
    }
}

#[test]
fn status_of_a_running_rollout_with_a_soaking_wave() {
    check("rollout-running.txt", &rollouts::status(&soaking(), NOW));
}

#[test]
fn status_of_a_rollout_waiting_for_promote() {
    let mut v = soaking();
    v.gates.manual = true;
    v.gates.two_person = true;
    v.gates.before_job = "nightly-db".into();
    v.phase = RolloutPhase::WaitingPromote;
    set_wave(&mut v, 1, "waiting_promote");
    v.waves[1].soak_until_unix_ms = NOW - 5_000;
    check("rollout-waiting-promote.txt", &rollouts::status(&v, NOW));
}

/// Wave 2's host failed its ready gate: every updated host goes back; web-02's rollback failed.
fn rolled_back() -> RolloutView {
    let mut v = soaking();
    v.wave = 2;
    set_wave(&mut v, 1, "passed");
    set_wave(&mut v, 2, "failed");
    v.waves[2].detail = "web-04 not ready: 1 of 3 ready samples within 1m".into();
    v.phase = RolloutPhase::RolledBack;
    v.reason = "wave 2 failed its gates: web-04 not ready: 1 of 3 ready samples within 1m".into();
    v.ended_at_unix_ms = NOW - 20_000;
    set_host(&mut v, "web-04", RolloutHostState::RolledBack, "");
    set_host(&mut v, "web-01", RolloutHostState::RolledBack, "");
    set_host(&mut v, "web-03", RolloutHostState::RolledBack, "");
    set_host(
        &mut v,
        "web-02",
        RolloutHostState::RollbackFailed,
        "releases/2.4.0 is gone (keep = 2)",
    );
    v.history.extend([
        step(50, 9, "gate", "wave 2 failed: web-04 not ready"),
        step(49, 9, "control", "rolling back 4 host(s)"),
        step(20, 9, "ended", "rolled_back"),
    ]);
    v
}

#[test]
fn status_of_a_rollout_rolled_back_with_a_host_that_could_not_go_back() {
    check(
        "rollout-rolled-back.txt",
        &rollouts::status(&rolled_back(), NOW),
    );
}

fn completed() -> RolloutView {
    let mut v = soaking();
    v.wave = 3;
    for n in 1..=3 {
        set_wave(&mut v, n, "passed");
    }
    for h in ["web-04", "web-05", "web-06"] {
        set_host(&mut v, h, RolloutHostState::Updated, "");
    }
    v.phase = RolloutPhase::Completed;
    v.ended_at_unix_ms = NOW - 1_000;
    v.history.push(step(1, 9, "ended", "completed"));
    v
}

#[test]
fn status_of_a_completed_rollout() {
    check(
        "rollout-completed.txt",
        &rollouts::status(&completed(), NOW),
    );
}

#[test]
fn the_plan_start_prints() {
    let mut v = start();
    v.gates.before_job = "nightly-db".into();
    check("rollout-plan.txt", &rollouts::plan(&v));
}

#[test]
fn status_of_a_blue_green_rollout_with_hostile_text() {
    let mut v = start();
    v.strategy = RolloutStrategy::BlueGreen;
    v.gates.keep_old_ms = 1_800_000;
    v.service = "web\x1b[2J".into();
    set_host(
        &mut v,
        "web-01",
        RolloutHostState::Failed,
        "fetch failed\r\n\x1b[31mred",
    );
    let text = rollouts::status(&v, NOW);
    for line in text.lines() {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    check("rollout-hostile.txt", &text);
}

#[test]
fn the_rollouts_table() {
    let mut paused = start();
    paused.id = "0193a4b0-1111-7abc-9def-0123456789ab".into();
    paused.service = "api".into();
    paused.version = "7.0.0".into();
    paused.phase = RolloutPhase::Paused;
    paused.started_by = "alice".into();
    paused.started_at_unix_ms = NOW - 7_200_000;
    let reply = RolloutsReply {
        responder: responder(),
        rollouts: vec![soaking(), rolled_back(), completed(), paused],
    };
    check("rollouts.txt", &rollouts::table(&reply, NOW));
    let empty = RolloutsReply {
        responder: responder(),
        rollouts: vec![],
    };
    check("rollouts-empty.txt", &rollouts::table(&empty, NOW));
}

/// Each read after the first, as a follow prints it: the lines of the change, then the
/// closing line once the verdict stops.
fn follow(reads: &[RolloutView], aim: Aim) -> String {
    let mut out = rollouts::plan(&reads[0]);
    for pair in reads.windows(2) {
        for line in changes(&pair[0], &pair[1]) {
            out.push_str(&format!("{line}\n"));
        }
        if let Verdict::Done(end) = verdict(&pair[1], aim) {
            match end {
                Ok(line) => out.push_str(&format!("{line}\n")),
                Err(line) => out.push_str(&format!("opsctl: {line} (exit 1)\n")),
            }
            return out;
        }
    }
    out.push_str("(still following)\n");
    out
}

#[test]
fn the_lines_of_a_follow_that_rolls_back_by_itself() {
    let mut reads = vec![start()];
    let mut v = start();
    set_wave(&mut v, 0, "updating");
    set_host(&mut v, "web-01", RolloutHostState::Deploying, "");
    reads.push(v.clone());
    set_host(&mut v, "web-01", RolloutHostState::Updated, "");
    set_wave(&mut v, 0, "soaking");
    reads.push(v.clone());
    // Two changes in one read: wave 1 went from pending to soaking between two polls.
    set_wave(&mut v, 0, "passed");
    set_wave(&mut v, 1, "soaking");
    v.wave = 1;
    set_host(&mut v, "web-02", RolloutHostState::Updated, "");
    set_host(&mut v, "web-03", RolloutHostState::Updated, "");
    reads.push(v.clone());
    set_wave(&mut v, 1, "passed");
    set_wave(&mut v, 2, "updating");
    v.wave = 2;
    set_host(
        &mut v,
        "web-04",
        RolloutHostState::Failed,
        "not ready after 1m",
    );
    reads.push(v.clone());
    set_wave(&mut v, 2, "failed");
    v.waves[2].detail = "web-04 not ready".into();
    v.phase = RolloutPhase::RollingBack;
    v.reason = "wave 2 failed its gates: web-04 not ready".into();
    for h in ["web-01", "web-02", "web-03", "web-04"] {
        set_host(&mut v, h, RolloutHostState::RollingBack, "");
    }
    reads.push(v.clone());
    reads.push(v.clone());
    let final_view = rolled_back();
    reads.push(final_view);
    check(
        "rollout-follow-rolled-back.txt",
        &follow(&reads, Aim::Complete),
    );
}

#[test]
fn the_lines_of_a_follow_that_pauses_resumes_and_waits_for_promote() {
    let mut v = start();
    v.gates.manual = true;
    let mut reads = vec![v.clone()];
    v.phase = RolloutPhase::Paused;
    reads.push(v.clone());
    v.phase = RolloutPhase::Running;
    set_wave(&mut v, 0, "updating");
    reads.push(v.clone());
    set_host(&mut v, "web-01", RolloutHostState::Updated, "");
    set_wave(&mut v, 0, "waiting_promote");
    v.phase = RolloutPhase::WaitingPromote;
    reads.push(v.clone());
    check("rollout-follow-promote.txt", &follow(&reads, Aim::Complete));
}

#[test]
fn the_lines_of_a_follow_that_completes() {
    let reads = vec![soaking(), completed()];
    check(
        "rollout-follow-completed.txt",
        &follow(&reads, Aim::Complete),
    );
}

#[test]
fn an_undo_succeeds_when_undone_and_fails_otherwise() {
    let mut v = completed();
    v.phase = RolloutPhase::RollingBack;
    v.reason = "undo by carol".into();
    let mut reads = vec![v.clone()];
    for h in v.hosts.clone() {
        set_host(&mut v, &h.host, RolloutHostState::RolledBack, "");
    }
    v.phase = RolloutPhase::Undone;
    reads.push(v.clone());
    check("rollout-follow-undo.txt", &follow(&reads, Aim::Undo));
    // The same end is a failure for a start.
    assert!(matches!(verdict(&v, Aim::Complete), Verdict::Done(Err(_))));
    assert!(matches!(verdict(&v, Aim::Abort), Verdict::Done(Err(_))));
    // Waiting for promote ends a start's follow, not an undo's.
    v.phase = RolloutPhase::WaitingPromote;
    assert!(matches!(verdict(&v, Aim::Complete), Verdict::Done(Ok(_))));
    assert_eq!(verdict(&v, Aim::Undo), Verdict::Follow);
    v.phase = RolloutPhase::Paused;
    assert_eq!(verdict(&v, Aim::Complete), Verdict::Follow);
}

#[test]
fn no_read_without_a_change_prints_a_line() {
    for v in [start(), soaking(), rolled_back(), completed()] {
        assert!(changes(&v, &v).is_empty(), "{:?}", changes(&v, &v));
    }
}

#[test]
fn the_json_is_the_rollout_view() {
    let v = rolled_back();
    let json = serde_json::to_string_pretty(&v).unwrap();
    check("rollout-rolled-back.json", &format!("{json}\n"));
    let back: RolloutView = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
}
