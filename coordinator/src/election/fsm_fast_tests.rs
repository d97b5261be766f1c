//! Fast takeover: scenarios of the promise (window in the record, a standby's wait from its
//! own first sight), and a simulation of two or three coordinators with mixed configs (fast
//! takeover on or off, different windows), clocks running at different rates, arbitrary
//! network and watch delays, lost answers, freezes and releases, against a model KV server:
//! never two acting at one instant, and never acting without holding the live lease.

use super::*;
use proptest::prelude::*;

const TTL: Duration = Duration::from_secs(3);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fast() -> LeaseTiming {
    LeaseTiming::new(TTL, ms(1000))
}

/// Whether `acts` holds a takeover (a standby also polls `create` on its own).
fn takes_over(acts: &[Action]) -> bool {
    acts.iter()
        .any(|a| matches!(a, Action::SendTakeover { .. }))
}

fn held(revision: u64, window: Option<u64>) -> Input {
    Input::HeldByOther {
        revision,
        window: window.map(ms),
    }
}

#[test]
fn a_silent_holder_is_taken_over_only_after_its_window_plus_slack_from_first_sight() {
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    assert!(e.step(ms(100), held(5, Some(800))).is_empty());
    // The same revision again (a re-created watch) does not restart the wait.
    assert!(e.step(ms(500), held(5, Some(800))).is_empty());
    assert!(!takes_over(&e.step(ms(1099), Input::Tick)));
    e.step(ms(1099), Input::AcquireRefused);
    assert_eq!(
        e.step(ms(1100), Input::Tick),
        vec![Action::SendTakeover { revision: 5 }]
    );
    assert!(
        e.step(ms(1150), Input::Tick).is_empty(),
        "one CAS in flight"
    );
    assert_eq!(e.acting_epoch(ms(1101)), None);
    assert_eq!(
        e.step(
            ms(1110),
            Input::Renewed {
                sent_at: ms(1101),
                revision: 6
            }
        ),
        vec![Action::Activate { epoch: 6 }]
    );
    // Our own window: 800 ms from the send of the takeover.
    assert_eq!(e.acting_epoch(ms(1900)), Some(6));
    assert_eq!(e.acting_epoch(ms(1901)), None);
}

#[test]
fn every_new_revision_restarts_the_wait() {
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    e.step(ms(100), held(5, Some(800)));
    e.step(ms(300), held(6, Some(800)));
    assert!(!takes_over(&e.step(ms(1100), Input::Tick)));
    e.step(ms(1101), Input::AcquireRefused);
    assert_eq!(
        e.step(ms(1300), Input::Tick),
        vec![Action::SendTakeover { revision: 6 }]
    );
}

#[test]
fn no_promise_or_fast_takeover_off_means_the_ttl_only() {
    // A record without a window (older binary, or its fast takeover off).
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    e.step(ms(100), held(5, None));
    for t in (200..3000).step_by(50) {
        let acts = e.step(ms(t), Input::Tick);
        assert!(
            acts.iter().all(|a| *a == Action::SendCreate),
            "{t}: {acts:?}"
        );
        if !acts.is_empty() {
            e.step(ms(t), Input::AcquireRefused);
        }
    }
    // Fast takeover off here: a promise is ignored.
    let mut e = Election::new(LeaseTiming::from_ttl(TTL));
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    e.step(ms(100), held(5, Some(800)));
    assert!(e.sighting().is_some_and(|s| s.takeover_at.is_none()));
    for t in (200..3000).step_by(50) {
        let acts = e.step(ms(t), Input::Tick);
        assert!(acts.iter().all(|a| *a == Action::SendCreate), "{acts:?}");
        if !acts.is_empty() {
            e.step(ms(t), Input::AcquireRefused);
        }
    }
}

#[test]
fn a_refused_takeover_waits_for_the_next_revision_and_a_lost_answer_retries_later() {
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    e.step(ms(100), held(5, Some(800)));
    assert_eq!(
        e.step(ms(1100), Input::Tick),
        vec![Action::SendTakeover { revision: 5 }]
    );
    e.step(ms(1105), Input::RenewRefused);
    assert_eq!(e.sighting(), None);
    assert!(!takes_over(&e.step(ms(1200), Input::Tick)));
    // Outcome unknown: not retried before another renew period.
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    e.step(ms(100), held(5, Some(800)));
    e.step(ms(1100), Input::Tick);
    e.step(ms(1150), Input::RequestFailed);
    assert!(!takes_over(&e.step(ms(1349), Input::Tick)));
    assert_eq!(
        e.step(ms(1350), Input::Tick),
        vec![Action::SendTakeover { revision: 5 }]
    );
}

#[test]
fn the_lease_going_away_clears_the_sighting_and_creates_at_once() {
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(ms(1), Input::AcquireRefused);
    e.step(ms(100), held(5, Some(800)));
    assert_eq!(e.step(ms(200), Input::LeaseGone), vec![Action::SendCreate]);
    assert_eq!(e.sighting(), None);
}

#[test]
fn a_fast_holder_renews_every_200_ms_and_stops_800_ms_after_its_last_successful_send() {
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(
        ms(3),
        Input::Acquired {
            sent_at: ms(1),
            revision: 2,
        },
    );
    assert_eq!(
        e.step(ms(201), Input::Tick),
        vec![Action::SendRenew { revision: 2 }]
    );
    // A slow renewal (answered 500 ms later) that lands in the window keeps the term.
    e.step(
        ms(700),
        Input::Renewed {
            sent_at: ms(201),
            revision: 3,
        },
    );
    assert_eq!(e.acting_epoch(ms(1000)), Some(2));
    assert_eq!(e.acting_epoch(ms(1001)), None);
    assert_eq!(
        e.step(ms(701), Input::Tick),
        vec![Action::SendRenew { revision: 3 }],
        "the renewal due at 401 waited for the slow one; the next one is asked at once"
    );
}

#[test]
fn a_holder_that_lapsed_in_a_stall_takes_its_own_revision_back_at_once() {
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(
        ms(3),
        Input::Acquired {
            sent_at: ms(1),
            revision: 2,
        },
    );
    // Stalled past the window: the next tick steps down, the one after CASes revision 2.
    assert_eq!(
        e.step(ms(900), Input::Tick),
        vec![Action::Deactivate {
            epoch: 2,
            reason: StepDown::LeaseLapsed
        }]
    );
    assert_eq!(e.acting_epoch(ms(900)), None);
    assert_eq!(
        e.step(ms(901), Input::Tick),
        vec![Action::SendTakeover { revision: 2 }]
    );
    // Nobody wrote since: a new term; had a standby taken over, the CAS is refused.
    assert_eq!(
        e.step(
            ms(905),
            Input::Renewed {
                sent_at: ms(901),
                revision: 3
            }
        ),
        vec![Action::Activate { epoch: 3 }]
    );
    let mut e = Election::new(fast());
    e.step(ms(0), Input::Tick);
    e.step(
        ms(3),
        Input::Acquired {
            sent_at: ms(1),
            revision: 2,
        },
    );
    e.step(ms(900), Input::Tick);
    e.step(ms(901), Input::Tick);
    assert!(e.step(ms(905), Input::RenewRefused).is_empty());
    assert_eq!(e.acting_epoch(ms(905)), None);
    assert!(
        !takes_over(&e.step(ms(906), Input::Tick)),
        "no second try of revision 2"
    );
}

// ---- simulation ------------------------------------------------------------------------

/// A model of the KV key under `max_age = TTL`, on real time.
#[derive(Debug, Default)]
struct Server {
    /// (holder, revision, written_at, promised window).
    key: Option<(usize, u64, Duration, Option<Duration>)>,
    revision: u64,
}

impl Server {
    fn live(&mut self, now: Duration) -> Option<(usize, u64)> {
        if self.key.is_some_and(|(_, _, at, _)| now >= at + TTL) {
            self.key = None;
        }
        self.key.map(|(h, r, _, _)| (h, r))
    }

    /// Applies one request; the answer, and the write the watches see (if any).
    fn apply(
        &mut self,
        now: Duration,
        who: usize,
        window: Option<Duration>,
        a: &Action,
    ) -> (Input, bool) {
        let write = |s: &mut Server, holder| {
            s.revision += 1;
            s.key = Some((holder, s.revision, now, window));
            s.revision
        };
        match a {
            Action::SendCreate => match self.live(now) {
                Some(_) => (Input::AcquireRefused, false),
                None => {
                    let revision = write(self, who);
                    (
                        Input::Acquired {
                            sent_at: Duration::ZERO,
                            revision,
                        },
                        true,
                    )
                }
            },
            Action::SendRenew { revision }
            | Action::SendTakeover { revision }
            | Action::SendHandover { revision, .. } => match self.live(now) {
                Some((_, r)) if r == *revision => {
                    let holder = match a {
                        Action::SendHandover { to, .. } => to[1..].parse().unwrap_or(who),
                        _ => who,
                    };
                    let revision = write(self, holder);
                    (
                        Input::Renewed {
                            sent_at: Duration::ZERO,
                            revision,
                        },
                        true,
                    )
                }
                _ => (Input::RenewRefused, false),
            },
            Action::SendDelete { revision } => {
                let hit = self.live(now).is_some_and(|(_, r)| r == *revision);
                if hit {
                    self.key = None;
                }
                (Input::Tick, hit)
            }
            _ => (Input::Tick, false),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Wait(u16),
    Freeze(usize, u16),
    Delay(usize, u16),
    WatchDelay(usize, u16),
    /// Answers to node i are lost (it sees RequestFailed; the server applied the request).
    Lose(usize, bool),
    Release(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u16..600).prop_map(Op::Wait),
        1 => (0usize..3, 50u16..5000).prop_map(|(i, d)| Op::Freeze(i, d)),
        1 => (0usize..3, 0u16..1500).prop_map(|(i, d)| Op::Delay(i, d)),
        1 => (0usize..3, 0u16..1500).prop_map(|(i, d)| Op::WatchDelay(i, d)),
        1 => (0usize..3, any::<bool>()).prop_map(|(i, l)| Op::Lose(i, l)),
        1 => (0usize..3, any::<bool>()).prop_map(|(i, h)| Op::Release(i, h)),
    ]
}

/// One coordinator: its config, its clock (rate in permille of real time, offset) and links.
struct Node {
    e: Election,
    rate: u64,
    offset: Duration,
    frozen_until: Duration,
    delay: Duration,
    watch_delay: Duration,
    lose: bool,
    /// Requests on their way: (arrival, local sent_at, action).
    outbound: Vec<(Duration, Duration, Action)>,
    /// Answers and watch entries on their way: (arrival, input).
    inbound: Vec<(Duration, Input)>,
}

impl Node {
    fn local(&self, real: Duration) -> Duration {
        self.offset + real * self.rate as u32 / 1000
    }

    fn send(&mut self, real: Duration, acts: Vec<Action>) {
        let local = self.local(real);
        for a in acts {
            if !matches!(a, Action::Activate { .. } | Action::Deactivate { .. }) {
                self.outbound.push((real + self.delay, local, a));
            }
        }
    }
}

fn node_config() -> impl Strategy<Value = (u64, u64, u64)> {
    // takeover_after (0 = off, mixed with fast ones), clock rate ±5 %, clock offset.
    (
        prop_oneof![Just(0u64), Just(1000), Just(1500), Just(2000)],
        950u64..=1050,
        0u64..100_000,
    )
}

/// Runs `ops` on nodes configured by `configs`; checks the invariants at every 5 ms.
fn simulate(configs: &[(u64, u64, u64)], ops: Vec<Op>) -> Result<u32, TestCaseError> {
    let n = configs.len();
    let mut server = Server::default();
    let mut nodes: Vec<Node> = (configs.iter())
        .map(|&(after, rate, offset)| Node {
            e: Election::new(LeaseTiming::new(TTL, ms(after))),
            rate,
            offset: ms(offset),
            frozen_until: Duration::ZERO,
            delay: ms(1),
            watch_delay: ms(1),
            lose: false,
            outbound: vec![],
            inbound: vec![],
        })
        .collect();
    let mut now = Duration::ZERO;
    let mut announced_gone = true;
    let mut takeovers = 0;
    for op in ops {
        let mut wait = Duration::ZERO;
        match op {
            Op::Wait(d) => wait = ms(d.into()),
            Op::Freeze(i, d) => nodes[i % n].frozen_until = now + ms(d.into()),
            Op::Delay(i, d) => nodes[i % n].delay = ms(d.into()),
            Op::WatchDelay(i, d) => nodes[i % n].watch_delay = ms(d.into()),
            Op::Lose(i, l) => nodes[i % n].lose = l,
            Op::Release(i, handover) => {
                let node = &mut nodes[i % n];
                if now >= node.frozen_until {
                    let to = handover.then(|| format!("n{}", (i + 1) % n));
                    let acts = node.e.step(node.local(now), Input::Release { to });
                    node.send(now, acts);
                }
            }
        }
        let end = now + wait;
        loop {
            for i in 0..n {
                let due: Vec<_> = (nodes[i].outbound.iter())
                    .filter(|(at, _, _)| *at <= now)
                    .cloned()
                    .collect();
                nodes[i].outbound.retain(|(at, _, _)| *at > now);
                let window = nodes[i].e.timing().promised_window();
                for (_, sent_at, action) in due {
                    let (answer, wrote) = server.apply(now, i, window, &action);
                    takeovers += u32::from(matches!(action, Action::SendTakeover { .. }) && wrote);
                    let answer = match answer {
                        _ if nodes[i].lose => Input::RequestFailed,
                        Input::Acquired { revision, .. } => Input::Acquired { sent_at, revision },
                        Input::Renewed { revision, .. } => Input::Renewed { sent_at, revision },
                        other => other,
                    };
                    if !matches!(answer, Input::Tick) {
                        let at = now + nodes[i].delay;
                        nodes[i].inbound.push((at, answer));
                    }
                    if wrote {
                        announced_gone = server.key.is_none();
                        for (j, node) in nodes.iter_mut().enumerate() {
                            let seen = match server.key {
                                None => Input::LeaseGone,
                                Some((h, revision, _, window)) if h != j => {
                                    Input::HeldByOther { revision, window }
                                }
                                Some((_, revision, _, _))
                                    if matches!(action, Action::SendHandover { .. }) =>
                                {
                                    Input::HandedToUs { revision }
                                }
                                Some((_, revision, _, window)) => {
                                    Input::OwnRecord { revision, window }
                                }
                            };
                            node.inbound.push((now + node.watch_delay, seen));
                        }
                    }
                }
            }
            // An aged-out key: the limit marker reaches every watch.
            if server.live(now).is_none() && !announced_gone {
                announced_gone = true;
                for node in nodes.iter_mut() {
                    node.inbound
                        .push((now + node.watch_delay, Input::LeaseGone));
                }
            }
            for node in nodes.iter_mut() {
                if now < node.frozen_until {
                    continue;
                }
                let mut inputs: Vec<_> = (node.inbound.iter())
                    .filter(|(at, _)| *at <= now)
                    .map(|(_, x)| x.clone())
                    .collect();
                node.inbound.retain(|(at, _)| *at > now);
                inputs.push(Input::Tick);
                for input in inputs {
                    let acts = node.e.step(node.local(now), input);
                    node.send(now, acts);
                }
            }
            let acting: Vec<(usize, u64)> = (0..n)
                .filter_map(|i| nodes[i].e.acting_epoch(nodes[i].local(now)).map(|e| (i, e)))
                .collect();
            prop_assert!(acting.len() <= 1, "two actors at {:?}: {:?}", now, acting);
            if let Some((i, _)) = acting.first() {
                let live = server.live(now);
                prop_assert!(
                    live.is_some_and(|(h, _)| h == *i),
                    "node {} acts at {:?} but the server lease is {:?}",
                    i,
                    now,
                    live
                );
            }
            if now >= end {
                break;
            }
            now += ms(5);
        }
    }
    Ok(takeovers)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn mixed_configs_skewed_clocks_and_any_delays_never_give_two_actors(
        configs in proptest::collection::vec(node_config(), 2..=3),
        ops in proptest::collection::vec(op(), 1..100),
    ) {
        simulate(&configs, ops)?;
    }
}

#[test]
fn the_simulation_does_take_over_fast_when_the_holder_freezes() {
    // Both fast; node 0 acquires, then freezes for good: node 1 takes over by CAS well
    // before the TTL.
    let configs = [(1000, 1000, 0), (1000, 1000, 0)];
    let ops = vec![Op::Wait(300), Op::Freeze(0, 60_000), Op::Wait(2000)];
    assert_eq!(simulate(&configs, ops).ok(), Some(1));
}
