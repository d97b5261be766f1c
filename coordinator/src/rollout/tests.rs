//! The rollout state machine driven by a simulated fleet: every act of `decide` is folded
//! back as the driver would record it, commands end as a script says (completed, failed,
//! expired, refused by fencing, lost before they were issued), and time moves on. Proptested:
//! whatever the script, a rollout ends, no host runs a deploy twice or has two in flight, a
//! completed rollout updated every host exactly once, a rolled-back one put every host that ran
//! the new version back, and a refold of the recorded log gives the same state.

use std::collections::{BTreeMap, BTreeSet};

use opsfleet_proto::api::{CommandAction, ProbeStatus, RolloutPhase, ServiceRunState};
use opsfleet_proto::pb::{self, event::Body, rollout_step::Step};
use opsfleet_proto::EventEnvelope;
use proptest::prelude::*;
use uuid::Uuid;

use super::decide::{decide, Act, World, LOST_GRACE_MS};
use super::plan::waves;
use crate::projection::rollouts::Rollouts;
use crate::projection::ServiceRow;

#[derive(Default)]
struct Fake {
    maintenance: BTreeSet<String>,
    lost: BTreeSet<String>,
    services: BTreeMap<(String, String), ServiceRow>,
    alerts: BTreeMap<String, (String, i64)>,
}

impl World for Fake {
    fn in_maintenance(&self, host: &str) -> bool {
        self.maintenance.contains(host)
    }
    fn lost(&self, host: &str, _: i64) -> bool {
        self.lost.contains(host)
    }
    fn service(&self, host: &str, service: &str) -> Option<&ServiceRow> {
        self.services.get(&(host.to_owned(), service.to_owned()))
    }
    fn firing_since(&self, host: &str, since: i64) -> Option<String> {
        let (id, at) = self.alerts.get(host)?;
        (*at >= since).then(|| id.clone())
    }
}

/// How a command ends in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Fail,
    Expire,
    Fenced,
    /// Recorded by the rollout, never issued (the coordinator died in between).
    Lost,
    /// Stays in flight until the next round.
    Slow,
    /// Taken by the agent, which then dies for good (its host is lost).
    Abandon,
    /// Expired by the sweeper, then the agent's own completion arrives (it took the command
    /// just before its deadline).
    ExpireThenComplete,
}

#[derive(Debug, Clone)]
enum Logged {
    Step(pb::RolloutStep),
    Command(EventEnvelope, String),
}

struct Sim {
    rs: Rollouts,
    world: Fake,
    log: Vec<Logged>,
    now: i64,
    epoch: u64,
    seq: u64,
    id: String,
    /// Commands out: (id, host, outcome to apply, purpose).
    out: Vec<(String, String, Outcome, &'static str)>,
    /// Most deploys in flight at once in one wave.
    max_in_flight: usize,
    /// Most rollback commands in flight at once.
    max_rollbacks_in_flight: usize,
}

fn plan(hosts: &[&str], canary: u32) -> pb::RolloutStarted {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    pb::RolloutStarted {
        service: "web".into(),
        version: "2.0".into(),
        artifact: "http://127.0.0.1:1/web-2.0.tar.gz".into(),
        sha256: "ab".repeat(32),
        strategy: "canary".into(),
        waves: waves(&hosts, canary, &[50, 100])
            .into_iter()
            .map(|hosts| pb::RolloutWave { hosts })
            .collect(),
        previous: hosts
            .iter()
            .map(|h| (h.clone(), "1.0".to_owned()))
            .collect(),
        max_unavailable: 1,
        ready_samples: 3,
        soak_ms: 10_000,
        started_by: "alice".into(),
        started_role: "admin".into(),
        command_deadline_ms: 60_000,
        ..Default::default()
    }
}

fn running() -> ServiceRow {
    ServiceRow {
        state: ServiceRunState::Running,
        health: Some(ProbeStatus::Ready),
        ..ServiceRow::default()
    }
}

impl Sim {
    fn new(p: pb::RolloutStarted) -> Sim {
        let mut world = Fake::default();
        for w in &p.waves {
            for h in &w.hosts {
                world.services.insert((h.clone(), "web".into()), running());
                world
                    .services
                    .insert((h.clone(), "web-green".into()), running());
            }
        }
        let mut sim = Sim {
            rs: Rollouts::default(),
            world,
            log: Vec::new(),
            now: 1_000_000,
            epoch: 7,
            seq: 0,
            id: "web-1".into(),
            out: Vec::new(),
            max_in_flight: 0,
            max_rollbacks_in_flight: 0,
        };
        sim.record(Step::Started(p));
        sim
    }

    fn record(&mut self, step: Step) {
        let s = pb::RolloutStep {
            rollout_id: self.id.clone(),
            epoch: self.epoch,
            at_unix_ms: self.now,
            step: Some(step),
        };
        self.rs.apply_step(&s);
        self.log.push(Logged::Step(s));
    }

    fn lifecycle(&mut self, host: &str, id: &str, body: Body) {
        self.seq += 1;
        let ev = EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq: self.seq,
            time_unix_ms: self.now,
            module: "agent".into(),
            incarnation: Uuid::nil(),
            body,
        };
        self.rs.apply_command(&ev, id);
        self.log.push(Logged::Command(ev, id.to_owned()));
    }

    fn rollout(&self) -> &crate::projection::Rollout {
        self.rs.get(&self.id).expect("started")
    }

    /// One driver round: decide, carry out, let commands end as `script` says.
    fn round(&mut self, script: &mut impl FnMut(&str, &'static str) -> Outcome) {
        let acts = decide(self.rollout(), &self.world, self.now);
        for act in acts {
            match act {
                Act::Record(step) => self.record(step),
                Act::Send {
                    host,
                    purpose,
                    wave,
                    version,
                    action,
                } => {
                    if purpose == "deploy" {
                        assert!(matches!(action, CommandAction::ServiceDeploy { .. }));
                    }
                    let id = Uuid::now_v7().to_string();
                    self.record(Step::HostCommand(pb::RolloutHostCommand {
                        host: host.clone(),
                        command_id: id.clone(),
                        purpose: purpose.to_owned(),
                        wave,
                        version,
                        deadline_unix_ms: self.now + 60_000,
                    }));
                    let outcome = script(&host, purpose);
                    if outcome != Outcome::Lost {
                        self.lifecycle(
                            &host,
                            &id,
                            Body::CommandIssued(pb::CommandIssued {
                                command_id: id.clone(),
                                ..Default::default()
                            }),
                        );
                    }
                    self.out.push((id, host, outcome, purpose));
                }
            }
        }
        let r = self.rollout();
        let in_flight = (r.hosts.values())
            .flat_map(|h| &h.commands)
            .filter(|c| c.purpose == "deploy" && !c.is_final() && c.state.rank() > 0)
            .count();
        let rollbacks = (r.hosts.iter())
            .filter(|(name, _)| !self.world.lost.contains(*name))
            .flat_map(|(_, h)| &h.commands)
            .filter(|c| c.purpose == "rollback" && !c.is_final() && c.state.rank() > 0)
            .count();
        self.max_in_flight = self.max_in_flight.max(in_flight);
        self.max_rollbacks_in_flight = self.max_rollbacks_in_flight.max(rollbacks);
        self.now += 5_000;
        for (id, host, outcome, _) in std::mem::take(&mut self.out) {
            let body = match outcome {
                Outcome::Complete => Body::CommandCompleted(pb::CommandCompleted {
                    command_id: id.clone(),
                    detail: "ok".into(),
                }),
                Outcome::Fail => Body::CommandFailed(pb::CommandFailed {
                    command_id: id.clone(),
                    reason: "not ready".into(),
                }),
                Outcome::Expire => Body::CommandExpired(pb::CommandExpired {
                    command_id: id.clone(),
                    deadline_unix_ms: 0,
                }),
                Outcome::Fenced => Body::CommandRejected(pb::CommandRejected {
                    command_id: id.clone(),
                    reason: "stale epoch".into(),
                    epoch: 3,
                    highest_epoch_seen: 7,
                }),
                Outcome::Lost => {
                    self.now += 60_000 + LOST_GRACE_MS;
                    continue;
                }
                Outcome::Slow => {
                    self.out.push((id, host, Outcome::Complete, "slow"));
                    continue;
                }
                Outcome::Abandon => {
                    self.world.lost.insert(host.clone());
                    Body::CommandAccepted(pb::CommandAccepted {
                        command_id: id.clone(),
                        epoch: 7,
                    })
                }
                Outcome::ExpireThenComplete => {
                    let expired = Body::CommandExpired(pb::CommandExpired {
                        command_id: id.clone(),
                        deadline_unix_ms: 0,
                    });
                    self.lifecycle(&host, &id, expired);
                    Body::CommandCompleted(pb::CommandCompleted {
                        command_id: id.clone(),
                        detail: "ok".into(),
                    })
                }
            };
            self.lifecycle(&host, &id, body);
        }
    }

    fn run(&mut self, mut script: impl FnMut(&str, &'static str) -> Outcome) {
        for _ in 0..400 {
            if self.rollout().is_ended() {
                return;
            }
            self.round(&mut script);
        }
        panic!("rollout did not end: {:#?}", self.rollout());
    }

    fn refold(&self) -> Rollouts {
        let mut rs = Rollouts::default();
        for l in &self.log {
            match l {
                Logged::Step(s) => {
                    rs.apply_step(s);
                }
                Logged::Command(ev, id) => {
                    rs.apply_command(ev, id);
                }
            }
        }
        rs
    }
}

#[test]
fn waves_take_the_canary_then_cumulative_percentages() {
    let hosts: Vec<String> = (0..10).map(|i| format!("h{i:02}")).collect();
    let sizes = |w: Vec<Vec<String>>| w.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(sizes(waves(&hosts, 1, &[25, 50, 100])), vec![1, 3, 2, 4]);
    assert_eq!(sizes(waves(&hosts, 0, &[50, 100])), vec![5, 5]);
    assert_eq!(
        sizes(waves(&hosts[..4], 1, &[25, 50, 100])),
        vec![1, 1, 1, 1]
    );
    assert_eq!(sizes(waves(&hosts[..2], 5, &[100])), vec![2]);
    assert_eq!(sizes(waves(&hosts[..3], 1, &[10, 20])), vec![1, 1, 1]);
}

#[test]
fn a_canary_updates_every_host_once_in_wave_order() {
    let mut sim = Sim::new(plan(&["web-a", "web-b", "web-c", "web-d"], 1));
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::Completed, "{:?}", r.reason());
    for (host, h) in &r.hosts {
        assert_eq!(h.deploys_completed(), 1, "{host}");
    }
    let order: Vec<&str> = (r.history.iter())
        .filter(|s| s.step == "host_command")
        .map(|s| s.detail.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(order, ["web-a", "web-b", "web-c", "web-d"]);
    // Each wave soaked before the next began.
    let soaks = r
        .gates
        .iter()
        .filter(|g| g.gate == "soak" && g.passed)
        .count();
    assert_eq!(soaks, r.plan.waves.len());
    assert_eq!(sim.max_in_flight, 1);
    assert_eq!(sim.refold(), sim.rs);
}

#[test]
fn a_failed_deploy_rolls_back_every_host_that_ran_it_and_no_other() {
    let mut sim = Sim::new(plan(&["web-a", "web-b", "web-c", "web-d"], 1));
    sim.run(|host, purpose| match (host, purpose) {
        ("web-b", "deploy") => Outcome::Fail,
        _ => Outcome::Complete,
    });
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::RolledBack);
    assert!(
        r.reason().contains("web-b: deploy failed: not ready"),
        "{}",
        r.reason()
    );
    for host in ["web-a", "web-b"] {
        let back = r.hosts[host].last("rollback").expect(host);
        assert_eq!(back.version, "1.0");
        assert_eq!(back.state, opsfleet_proto::api::CommandState::Completed);
    }
    for host in ["web-c", "web-d"] {
        assert!(r.hosts[host].commands.is_empty(), "{host} was touched");
    }
}

#[test]
fn an_unhealthy_canary_fails_the_soak_and_is_rolled_back() {
    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    let mut rounds = 0;
    sim.run(|_, _| {
        rounds += 1;
        Outcome::Complete
    });
    assert_eq!(sim.rollout().phase(), RolloutPhase::Completed);

    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    for _ in 0..3 {
        sim.round(&mut |_, _| Outcome::Complete);
    }
    sim.world
        .services
        .get_mut(&("web-a".into(), "web".into()))
        .unwrap()
        .health = Some(ProbeStatus::Failed);
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::RolledBack);
    assert!(
        r.reason().contains("web-a: web is failed"),
        "{}",
        r.reason()
    );
    assert!(r.hosts["web-b"].commands.is_empty());
}

#[test]
fn a_new_alert_on_an_updated_host_fails_the_soak() {
    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    for _ in 0..3 {
        sim.round(&mut |_, _| Outcome::Complete);
    }
    // An alert that was firing before the rollout does not count; one that began since does.
    sim.world
        .alerts
        .insert("web-a".into(), ("disk_warn/web-a//".into(), 1));
    sim.round(&mut |_, _| Outcome::Complete);
    assert!(!sim.rollout().gates.iter().any(|g| !g.passed));
    sim.world
        .alerts
        .insert("web-a".into(), ("log_errors/web-a/app.log".into(), sim.now));
    sim.run(|_, _| Outcome::Complete);
    assert!(sim
        .rollout()
        .reason()
        .contains("alert log_errors/web-a/app.log firing"));
}

#[test]
fn commands_that_never_ran_are_sent_again_and_give_up_after_three_sends() {
    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    let mut tries = 0;
    sim.run(|host, purpose| match (host, purpose) {
        ("web-a", "deploy") => {
            tries += 1;
            [Outcome::Expire, Outcome::Fenced, Outcome::Complete][tries - 1]
        }
        _ => Outcome::Complete,
    });
    assert_eq!(sim.rollout().phase(), RolloutPhase::Completed);
    assert_eq!(sim.rollout().hosts["web-a"].deploys_completed(), 1);

    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    sim.run(|_, purpose| match purpose {
        "deploy" => Outcome::Lost,
        _ => Outcome::Complete,
    });
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::RolledBack);
    assert!(
        r.reason().contains("did not run after 3 sends"),
        "{}",
        r.reason()
    );
    // Nothing ran, so nothing is rolled back.
    assert!(r.hosts["web-a"].last("rollback").is_none());
}

#[test]
fn a_host_drained_before_its_wave_is_skipped_and_said_so() {
    let mut sim = Sim::new(plan(&["web-a", "web-b", "web-c"], 1));
    sim.world.maintenance.insert("web-c".into());
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::Completed);
    assert_eq!(r.hosts["web-c"].skipped, "in maintenance (opsctl drain)");
    assert!(r.hosts["web-c"].commands.is_empty());
    assert!(r.history.iter().any(|s| s.step == "host_skipped"));
}

fn control(sim: &mut Sim, op: &str, by: &str) {
    sim.record(Step::Control(pb::RolloutControl {
        op: op.into(),
        by: by.into(),
        role: "admin".into(),
    }));
}

#[test]
fn pause_holds_new_hosts_manual_waits_for_promote_and_undo_puts_the_old_version_back() {
    let mut p = plan(&["web-a", "web-b", "web-c"], 1);
    p.manual = true;
    let mut sim = Sim::new(p);
    control(&mut sim, "pause", "bob");
    for _ in 0..5 {
        sim.round(&mut |_, _| Outcome::Complete);
    }
    assert!(sim.rollout().hosts.values().all(|h| h.commands.is_empty()));
    control(&mut sim, "resume", "bob");
    for _ in 0..10 {
        sim.round(&mut |_, _| Outcome::Complete);
    }
    assert_eq!(sim.rollout().phase(), RolloutPhase::WaitingPromote);
    assert!(sim.rollout().hosts["web-b"].commands.is_empty());
    // Every wave but the last waits for its own promote.
    for _ in 0..2 {
        control(&mut sim, "promote", "carol");
        for _ in 0..10 {
            sim.round(&mut |_, _| Outcome::Complete);
        }
    }
    assert_eq!(sim.rollout().phase(), RolloutPhase::Completed);

    control(&mut sim, "undo", "carol");
    assert_eq!(sim.rollout().phase(), RolloutPhase::RollingBack);
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::Undone);
    assert!(r.hosts.values().all(|h| h.last("rollback").is_some()));
}

#[test]
fn blue_green_switches_keeps_the_old_slot_then_stops_it_and_undo_switches_back() {
    let mut p = plan(&["web-a", "web-b"], 0);
    p.strategy = "blue-green".into();
    p.green_service = "web-green".into();
    p.keep_old_ms = 60_000;
    let mut sim = Sim::new(p.clone());
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::Completed);
    for h in r.hosts.values() {
        let purposes: Vec<&str> = h.commands.iter().map(|c| c.purpose.as_str()).collect();
        assert_eq!(purposes, ["deploy", "switch", "stop_old"]);
    }

    // Undo while the old slot is still up: the traffic goes back, nothing is stopped.
    let mut sim = Sim::new(p);
    while sim.rollout().gate(1, "soak").is_none() {
        sim.round(&mut |_, _| Outcome::Complete);
    }
    control(&mut sim, "undo", "alice");
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::Undone);
    for h in r.hosts.values() {
        let purposes: Vec<&str> = h.commands.iter().map(|c| c.purpose.as_str()).collect();
        assert_eq!(purposes, ["deploy", "switch", "switch_back"]);
    }
}

#[test]
fn steps_of_an_older_term_are_ignored() {
    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    sim.round(&mut |_, _| Outcome::Complete);
    sim.epoch = 3;
    control(&mut sim, "abort", "mallory");
    assert_eq!(sim.rollout().phase(), RolloutPhase::Running);
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Complete),
        1 => Just(Outcome::Abandon),
        1 => Just(Outcome::ExpireThenComplete),
        1 => Just(Outcome::Fail),
        1 => Just(Outcome::Expire),
        1 => Just(Outcome::Fenced),
        1 => Just(Outcome::Lost),
        2 => Just(Outcome::Slow),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn whatever_the_commands_do_a_rollout_ends_and_no_host_is_updated_twice(
        n in 1usize..7,
        canary in 0u32..3,
        max_unavailable in 1u32..3,
        script in proptest::collection::vec(outcome(), 1..40),
    ) {
        let names: Vec<String> = (0..n).map(|i| format!("web-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut p = plan(&refs, canary);
        p.max_unavailable = max_unavailable;
        let mut sim = Sim::new(p);
        let mut i = 0;
        sim.run(|_, _| {
            i += 1;
            script[i % script.len()]
        });
        let r = sim.rollout();
        prop_assert!(sim.max_in_flight <= max_unavailable as usize);
        prop_assert!(sim.max_rollbacks_in_flight <= max_unavailable as usize);
        for (host, h) in &r.hosts {
            prop_assert!(h.deploys_completed() <= 1, "{} deployed twice", host);
            // A deploy that ran (or may have: taken by an agent that died) is rolled back.
            let ran_deploy = h.commands.iter().any(|c| {
                c.purpose == "deploy"
                    && (c.ran() || c.state == opsfleet_proto::api::CommandState::Accepted)
            });
            match r.phase() {
                RolloutPhase::Completed => prop_assert_eq!(h.deploys_completed(), 1),
                RolloutPhase::RolledBack if ran_deploy => {
                    let back = h.last("rollback");
                    let done = back.is_some_and(|b| b.state == opsfleet_proto::api::CommandState::Completed);
                    prop_assert!(done || r.reason().contains(host.as_str()), "{} left on the new version: {}", host, r.reason());
                }
                RolloutPhase::RolledBack => prop_assert!(h.last("rollback").is_none()),
                other => prop_assert!(false, "ended {:?}", other),
            }
        }
        prop_assert_eq!(sim.refold(), sim.rs.clone());
    }
}

#[test]
fn a_deploy_taken_by_an_agent_that_dies_fails_the_wave_and_is_rolled_back() {
    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    sim.run(|host, purpose| match (host, purpose) {
        ("web-a", "deploy") => Outcome::Abandon,
        _ => Outcome::Complete,
    });
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::RolledBack);
    assert!(
        r.reason().contains("no answer (accepted, host lost)"),
        "{}",
        r.reason()
    );
    assert!(
        r.hosts["web-a"].last("rollback").is_some(),
        "a deploy that may have run"
    );
}

#[test]
fn an_expiry_that_folded_before_the_agents_completion_does_not_hide_the_deploy() {
    let mut sim = Sim::new(plan(&["web-a", "web-b"], 1));
    sim.run(|host, purpose| match (host, purpose) {
        ("web-a", "deploy") => Outcome::ExpireThenComplete,
        ("web-b", "deploy") => Outcome::Fail,
        _ => Outcome::Complete,
    });
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::RolledBack);
    assert_eq!(r.hosts["web-a"].deploys_completed(), 1);
    assert!(r.hosts["web-a"].last("rollback").is_some());
}

#[test]
fn an_undo_waits_for_a_stop_of_the_old_slot_in_flight_then_starts_it_and_switches_back() {
    let mut p = plan(&["web-a"], 1);
    p.strategy = "blue-green".into();
    p.green_service = "web-green".into();
    let mut sim = Sim::new(p);
    // Everything completes, except that the stop of the old slot stays out for a while.
    while sim.rollout().hosts["web-a"].last("stop_old").is_none() {
        sim.round(&mut |_, purpose| match purpose {
            "stop_old" => Outcome::Slow,
            _ => Outcome::Complete,
        });
    }
    assert!(!sim.rollout().hosts["web-a"]
        .last("stop_old")
        .unwrap()
        .is_final());
    control(&mut sim, "undo", "alice");
    let acts = decide(sim.rollout(), &sim.world, sim.now);
    assert!(acts.is_empty(), "sent {acts:?} while the stop runs");
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    let purposes: Vec<&str> = r.hosts["web-a"]
        .commands
        .iter()
        .map(|c| c.purpose.as_str())
        .collect();
    assert_eq!(
        purposes,
        ["deploy", "switch", "stop_old", "start_old", "switch_back"]
    );
    assert_eq!(r.phase(), RolloutPhase::Undone);
}

#[test]
fn the_fold_takes_one_rollout_per_service_and_no_undo_of_a_superseded_one() {
    let mut sim = Sim::new(plan(&["web-a"], 1));
    // A second start of the same service while the first runs is ignored.
    let first = sim.id.clone();
    sim.id = "web-2".into();
    sim.record(Step::Started(plan(&["web-a"], 1)));
    assert!(sim.rs.get("web-2").is_none());
    sim.id = first;
    sim.run(|_, _| Outcome::Complete);
    sim.id = "web-2".into();
    sim.now += 1;
    sim.record(Step::Started(plan(&["web-a"], 1)));
    assert!(sim.rs.get("web-2").is_some());
    sim.id = "web-1".into();
    control(&mut sim, "undo", "alice");
    assert_eq!(
        sim.rollout().phase(),
        RolloutPhase::Completed,
        "undo of a superseded rollout"
    );
}

#[test]
fn a_probe_latency_p95_over_the_bound_fails_the_soak() {
    let mut p = plan(&["web-a", "web-b"], 1);
    p.max_p95_ms = 500;
    let mut sim = Sim::new(p);
    for row in sim.world.services.values_mut() {
        row.probe_p95_ms = 120;
    }
    for _ in 0..3 {
        sim.round(&mut |_, _| Outcome::Complete);
    }
    assert!(sim.rollout().gates.iter().all(|g| g.passed));
    let row = sim
        .world
        .services
        .get_mut(&("web-a".into(), "web".into()))
        .unwrap();
    row.probe_p95_ms = 900;
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::RolledBack);
    assert!(
        r.reason()
            .contains("web-a: web probe latency p95 900 ms over the 500 ms bound"),
        "{}",
        r.reason()
    );
}

#[test]
fn the_before_step_runs_first_on_each_host_and_its_failure_stops_the_rollout() {
    let mut p = plan(&["web-a", "web-b"], 1);
    p.before_job = "db-dump".into();
    let mut sim = Sim::new(p.clone());
    sim.run(|_, _| Outcome::Complete);
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::Completed);
    for h in r.hosts.values() {
        let purposes: Vec<&str> = h.commands.iter().map(|c| c.purpose.as_str()).collect();
        assert_eq!(purposes, ["before", "deploy"]);
    }

    // The canary's backup fails: nothing is deployed anywhere, nothing rolled back.
    let mut sim = Sim::new(p);
    sim.run(|_, purpose| match purpose {
        "before" => Outcome::Fail,
        _ => Outcome::Complete,
    });
    let r = sim.rollout();
    assert_eq!(r.phase(), RolloutPhase::RolledBack);
    assert!(
        r.reason().contains("web-a: before failed"),
        "{}",
        r.reason()
    );
    assert!(r.hosts.values().all(|h| h.last("deploy").is_none()));
    assert!(r.hosts.values().all(|h| h.last("rollback").is_none()));
}
