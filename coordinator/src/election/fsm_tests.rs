//! Election state machine: scenarios, and a simulation against a model KV server with random
//! delays, losses and freezes that checks no two coordinators ever act at once.

use super::*;
use proptest::prelude::*;

const TTL: Duration = Duration::from_secs(3);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn timing() -> LeaseTiming {
    LeaseTiming::from_ttl(TTL)
}

#[test]
fn acquires_on_first_tick_and_renews_every_third_of_the_ttl() {
    let mut e = Election::new(timing());
    assert_eq!(e.step(ms(0), Input::Tick), vec![Action::SendCreate]);
    assert_eq!(
        e.step(
            ms(5),
            Input::Acquired {
                sent_at: ms(0),
                revision: 7
            }
        ),
        vec![Action::Activate { epoch: 7 }]
    );
    assert_eq!(e.acting_epoch(ms(5)), Some(7));
    assert!(e.step(ms(999), Input::Tick).is_empty());
    assert_eq!(
        e.step(ms(1000), Input::Tick),
        vec![Action::SendRenew { revision: 7 }]
    );
    // No second renew while one is in flight.
    assert!(e.step(ms(1100), Input::Tick).is_empty());
    // The driver stamps its send a little after the step that asked for it.
    assert!(e
        .step(
            ms(1010),
            Input::Renewed {
                sent_at: ms(1001),
                revision: 9
            }
        )
        .is_empty());
    // Epoch stays the term's first revision; the next CAS uses the new one.
    assert_eq!(e.acting_epoch(ms(3000)), Some(7));
    assert_eq!(
        e.step(ms(2001), Input::Tick),
        vec![Action::SendRenew { revision: 9 }]
    );
}

#[test]
fn stops_acting_at_the_local_deadline_even_without_an_answer() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    e.step(
        ms(1),
        Input::Acquired {
            sent_at: ms(0),
            revision: 3,
        },
    );
    e.step(ms(1000), Input::Tick); // renew sent, never answered
    let deadline = TTL - timing().margin;
    assert_eq!(e.acting_epoch(deadline - ms(1)), Some(3));
    assert_eq!(
        e.acting_epoch(deadline),
        None,
        "must not act at the deadline"
    );
    assert_eq!(
        e.step(deadline, Input::Tick),
        vec![Action::Deactivate {
            epoch: 3,
            reason: StepDown::LeaseLapsed
        }]
    );
    assert!(matches!(e.role(), Role::Standby { .. }));
}

#[test]
fn a_refused_renew_steps_down_at_once() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    e.step(
        ms(1),
        Input::Acquired {
            sent_at: ms(0),
            revision: 3,
        },
    );
    e.step(ms(1000), Input::Tick);
    assert_eq!(
        e.step(ms(1001), Input::RenewRefused),
        vec![Action::Deactivate {
            epoch: 3,
            reason: StepDown::LeaseLost
        }]
    );
    assert_eq!(e.acting_epoch(ms(1002)), None);
}

#[test]
fn a_standby_retries_on_its_own_and_at_once_when_the_lease_goes() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    e.step(ms(2), Input::AcquireRefused);
    assert!(e.step(ms(500), Input::Tick).is_empty());
    assert_eq!(e.step(ms(1002), Input::Tick), vec![Action::SendCreate]);
    e.step(ms(1003), Input::AcquireRefused);
    assert_eq!(e.step(ms(1100), Input::LeaseGone), vec![Action::SendCreate]);
}

#[test]
fn an_answer_that_arrives_after_the_lease_would_end_is_not_acted_on() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    assert!(e
        .step(
            ms(3000),
            Input::Acquired {
                sent_at: ms(0),
                revision: 4
            }
        )
        .is_empty());
    assert_eq!(e.acting_epoch(ms(3000)), None);
}

#[test]
fn release_stops_first_then_hands_over_and_keeps_quiet() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    e.step(
        ms(1),
        Input::Acquired {
            sent_at: ms(0),
            revision: 4,
        },
    );
    assert_eq!(
        e.step(
            ms(10),
            Input::Release {
                to: Some("green".into())
            }
        ),
        vec![
            Action::Deactivate {
                epoch: 4,
                reason: StepDown::Released
            },
            Action::SendHandover {
                to: "green".into(),
                revision: 4
            }
        ]
    );
    // It does not grab the lease back while the target takes over.
    assert!(e.step(ms(20), Input::LeaseGone).is_empty());
    assert!(e.step(ms(2000), Input::Tick).is_empty());
    assert_eq!(e.step(ms(3010), Input::Tick), vec![Action::SendCreate]);
}

#[test]
fn after_a_release_the_quiet_period_ends_once_another_term_begins() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    e.step(
        ms(1),
        Input::Acquired {
            sent_at: ms(0),
            revision: 4,
        },
    );
    e.step(
        ms(10),
        Input::Release {
            to: Some("green".into()),
        },
    );
    assert!(
        e.step(ms(20), Input::LeaseGone).is_empty(),
        "quiet right after releasing"
    );
    // green took over, then went away at once (say, it was stopped): we take over now,
    // not a TTL later.
    assert!(e
        .step(
            ms(30),
            Input::HeldByOther {
                revision: 5,
                window: None
            }
        )
        .is_empty());
    assert_eq!(e.step(ms(40), Input::LeaseGone), vec![Action::SendCreate]);
}

#[test]
fn a_handover_is_confirmed_by_cas_before_acting() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    assert_eq!(
        e.step(ms(50), Input::HandedToUs { revision: 11 }),
        vec![Action::SendRenew { revision: 11 }]
    );
    assert_eq!(e.acting_epoch(ms(51)), None);
    assert_eq!(
        e.step(
            ms(52),
            Input::Renewed {
                sent_at: ms(50),
                revision: 12
            }
        ),
        vec![Action::Activate { epoch: 12 }]
    );
}

// ---- simulation ------------------------------------------------------------------------

/// A model of the KV key under `max_age = TTL`: a write lives TTL from the server's clock.
#[derive(Debug, Default)]
struct Server {
    holder: Option<(usize, u64, Duration)>, // (coordinator, revision, written_at)
    revision: u64,
}

impl Server {
    fn live(&mut self, now: Duration) -> Option<(usize, u64)> {
        if let Some((_, _, at)) = self.holder {
            if now >= at + TTL {
                self.holder = None;
            }
        }
        self.holder.map(|(h, r, _)| (h, r))
    }

    fn apply(&mut self, now: Duration, who: usize, action: &Action) -> Input {
        match *action {
            Action::SendCreate => {
                if self.live(now).is_some() {
                    Input::AcquireRefused
                } else {
                    self.revision += 1;
                    self.holder = Some((who, self.revision, now));
                    Input::Acquired {
                        sent_at: Duration::ZERO,
                        revision: self.revision,
                    }
                }
            }
            Action::SendRenew { revision } | Action::SendHandover { revision, .. } => {
                match self.live(now) {
                    Some((_, r)) if r == revision => {
                        self.revision += 1;
                        let new_holder = match action {
                            Action::SendHandover { .. } => 1 - who,
                            _ => who,
                        };
                        self.holder = Some((new_holder, self.revision, now));
                        Input::Renewed {
                            sent_at: Duration::ZERO,
                            revision: self.revision,
                        }
                    }
                    _ => Input::RenewRefused,
                }
            }
            Action::SendDelete { revision } => {
                if self.live(now).is_some_and(|(_, r)| r == revision) {
                    self.holder = None;
                }
                Input::Tick
            }
            _ => Input::Tick,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Advance time by this many ms.
    Wait(u16),
    /// Freeze coordinator i (SIGSTOP) for this many ms.
    Freeze(usize, u16),
    /// Set coordinator i's one-way network delay to this many ms.
    Delay(usize, u16),
    /// Coordinator i releases (to the other one if true).
    Release(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u16..400).prop_map(Op::Wait),
        1 => (0usize..2, 100u16..6000).prop_map(|(i, d)| Op::Freeze(i, d)),
        1 => (0usize..2, 0u16..2500).prop_map(|(i, d)| Op::Delay(i, d)),
        1 => (0usize..2, any::<bool>()).prop_map(|(i, h)| Op::Release(i, h)),
    ]
}

struct Node {
    e: Election,
    frozen_until: Duration,
    delay: Duration,
    /// Requests on their way to the server: (arrival, sent_at, action).
    outbound: Vec<(Duration, Duration, Action)>,
    /// Answers on their way back: (arrival, input).
    inbound: Vec<(Duration, Input)>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn never_two_actors_and_never_acting_without_a_live_lease(ops in proptest::collection::vec(op(), 1..120)) {
        let mut server = Server::default();
        let mut nodes: Vec<Node> = (0..2).map(|_| Node {
            e: Election::new(timing()),
            frozen_until: Duration::ZERO,
            delay: ms(1),
            outbound: vec![],
            inbound: vec![],
        }).collect();
        let mut now = Duration::ZERO;
        let step = ms(10);
        for op in ops {
            let mut wait = Duration::ZERO;
            match op {
                Op::Wait(d) => wait = ms(d as u64),
                Op::Freeze(i, d) => nodes[i].frozen_until = now + ms(d as u64),
                Op::Delay(i, d) => nodes[i].delay = ms(d as u64),
                Op::Release(i, handover) => {
                    if now >= nodes[i].frozen_until {
                        let to = handover.then(|| "other".to_owned());
                        let acts = nodes[i].e.step(now, Input::Release { to });
                        let d = nodes[i].delay;
                        for a in acts {
                            if !matches!(a, Action::Activate { .. } | Action::Deactivate { .. }) {
                                nodes[i].outbound.push((now + d, now, a));
                            }
                        }
                    }
                }
            }
            let end = now + wait;
            loop {
                // Deliver requests to the server and answers back.
                for i in 0..2 {
                    let due: Vec<_> = nodes[i].outbound.iter().filter(|(at, _, _)| *at <= now).cloned().collect();
                    nodes[i].outbound.retain(|(at, _, _)| *at > now);
                    for (_, sent_at, action) in due {
                        let answer = match server.apply(now, i, &action) {
                            Input::Acquired { revision, .. } => Input::Acquired { sent_at, revision },
                            Input::Renewed { revision, .. } => Input::Renewed { sent_at, revision },
                            other => other,
                        };
                        if !matches!(answer, Input::Tick) {
                            let d = nodes[i].delay;
                            nodes[i].inbound.push((now + d, answer));
                        }
                        // A handover is seen by the other node's watch.
                        if let Action::SendHandover { .. } = action {
                            if let Some((h, r)) = server.live(now) {
                                if h != i { let at = now + nodes[h].delay; nodes[h].inbound.push((at, Input::HandedToUs { revision: r })); }
                            }
                        }
                    }
                }
                for node in nodes.iter_mut() {
                    if now < node.frozen_until { continue; }
                    let mut inputs: Vec<_> = node.inbound.iter().filter(|(at, _)| *at <= now).map(|(_, x)| x.clone()).collect();
                    node.inbound.retain(|(at, _)| *at > now);
                    inputs.push(Input::Tick);
                    for input in inputs {
                        let acts = node.e.step(now, input);
                        for a in acts {
                            if !matches!(a, Action::Activate { .. } | Action::Deactivate { .. }) {
                                node.outbound.push((now + node.delay, now, a));
                            }
                        }
                    }
                }
                // Invariants, checked at every instant.
                let acting: Vec<(usize, u64)> = (0..2).filter_map(|i| nodes[i].e.acting_epoch(now).map(|e| (i, e))).collect();
                prop_assert!(acting.len() <= 1, "two actors at {:?}: {:?}", now, acting);
                if let Some((i, _)) = acting.first() {
                    let live = server.live(now);
                    prop_assert!(live.is_some_and(|(h, _)| h == *i),
                        "node {} acts at {:?} but the server lease is {:?}", i, now, live);
                }
                if now >= end { break; }
                now += step;
            }
        }
    }
}

fn active_at_3(e: &mut Election) {
    e.step(ms(0), Input::Tick);
    e.step(
        ms(1),
        Input::Acquired {
            sent_at: ms(0),
            revision: 3,
        },
    );
}

#[test]
fn a_foreign_entry_is_taken_back_by_cas_in_the_same_term() {
    let mut e = Election::new(timing());
    active_at_3(&mut e);
    e.step(ms(1000), Input::Tick); // renew of 3, refused: a foreign entry is at 4
    assert_eq!(
        e.step(ms(1001), Input::LeaseForeign { revision: 4 }),
        vec![Action::SendReassert { revision: 4 }]
    );
    assert_eq!(e.acting_epoch(ms(1002)), Some(3), "no step-down");
    assert!(e
        .step(
            ms(1010),
            Input::Renewed {
                sent_at: ms(1002),
                revision: 5
            }
        )
        .is_empty());
    assert_eq!(
        e.acting_epoch(ms(3500)),
        Some(3),
        "same epoch, term extended"
    );
    assert_eq!(
        e.step(ms(2002), Input::Tick),
        vec![Action::SendRenew { revision: 5 }]
    );
}

#[test]
fn reassertions_are_bounded_and_never_outlive_the_term() {
    let mut e = Election::new(timing());
    active_at_3(&mut e);
    e.step(ms(1000), Input::Tick);
    for i in 0..MAX_REASSERTS as u64 {
        assert_eq!(
            e.step(ms(1001 + i), Input::LeaseForeign { revision: 4 + i }),
            vec![Action::SendReassert { revision: 4 + i }]
        );
    }
    // A writer racing us: past the bound nothing more is sent, and the term lapses.
    assert!(e
        .step(ms(1100), Input::LeaseForeign { revision: 99 })
        .is_empty());
    assert!(e.step(ms(2000), Input::Tick).is_empty());
    let deadline = TTL - timing().margin;
    assert_eq!(
        e.step(deadline, Input::Tick),
        vec![Action::Deactivate {
            epoch: 3,
            reason: StepDown::LeaseLapsed
        }]
    );
    // After the deadline a foreign entry is never re-asserted over.
    let mut late = Election::new(timing());
    active_at_3(&mut late);
    late.step(ms(1000), Input::Tick);
    assert!(late
        .step(deadline, Input::LeaseForeign { revision: 4 })
        .is_empty());
}

#[test]
fn a_standby_treats_a_foreign_refusal_like_any_refusal() {
    let mut e = Election::new(timing());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    assert!(e
        .step(ms(5), Input::LeaseForeign { revision: 9 })
        .is_empty());
    assert!(matches!(e.role(), Role::Standby { .. }));
}
