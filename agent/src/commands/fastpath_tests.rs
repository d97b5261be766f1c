//! Tests of the fast path's rules: the message filter, and a model of one host's commands
//! (a stream, a one-in-flight durable consumer, a plain subscription that a reconnect may
//! empty) driven in random interleavings, where every command must run once, in order.

use std::collections::{HashSet, VecDeque};

use proptest::prelude::*;

use super::*;

#[test]
fn only_a_client_publish_on_the_own_subject_is_a_command() {
    let own = subjects::command_subject("web-01");
    assert!(published_to_own_subject("web-01", &own, None, false));
    assert!(published_to_own_subject(
        "web-01",
        &own,
        Some("_INBOX.blue.x.1"),
        false
    ));
    // Another host's subject, a push consumer's delivery, a stream's republish: no.
    let other = subjects::command_subject("web-02");
    assert!(!published_to_own_subject("web-01", &other, None, false));
    assert!(!published_to_own_subject(
        "web-01",
        &own,
        Some("$JS.ACK.OPS_EVENTS.spy.1.9.9.1.0"),
        false
    ));
    assert!(!published_to_own_subject("web-01", &own, None, true));
}

#[test]
fn the_gate_runs_only_when_caught_up_on_the_same_connection() {
    let mut g = FastGate::new(1);
    assert_eq!(g.step(1), FastStep::Leave, "behind until a reading");
    g.reading(2, 0, 1, 1);
    assert_eq!(g.step(1), FastStep::Leave, "older commands pending");
    g.reading(0, 1, 1, 1);
    assert_eq!(g.step(1), FastStep::Leave, "one delivered, not acked");
    g.reading(0, 0, 1, 2);
    assert_eq!(g.step(1), FastStep::Leave, "reconnected during the reading");
    g.reading(0, 0, 1, 1);
    assert_eq!(g.step(1), FastStep::Run);
    assert_eq!(
        g.step(2),
        FastStep::Reopen,
        "a reconnect may have lost messages"
    );
    g.lost();
    assert_eq!(g.step(1), FastStep::Leave);
}

/// One host's commands: ids `0..` published in order to the stream and, while subscribed, to
/// the fast-path channel; the durable consumer delivers one at a time and waits for the ack.
#[derive(Default)]
struct Model {
    published: u32,
    acked: u32,
    in_flight: Option<u32>,
    inbox: VecDeque<u32>,
    fast: VecDeque<u32>,
    connects: u64,
    gate: Option<FastGate>,
    seen: HashSet<u32>,
    runs: Vec<u32>,
}

impl Model {
    fn publish(&mut self) {
        let id = self.published;
        self.published += 1;
        if self.gate.is_some() {
            self.fast.push_back(id);
        }
    }

    fn handle(&mut self, id: u32) {
        if self.seen.insert(id) {
            self.runs.push(id);
        }
    }

    /// The agent's loop: start a session (subscribe, then read the consumer). A delivery the
    /// last session did not ack stays unacked until the server delivers it again.
    fn open(&mut self) {
        self.fast.clear();
        self.inbox.clear();
        let mut gate = FastGate::new(self.connects);
        self.read(&mut gate);
        self.gate = Some(gate);
    }

    fn read(&self, gate: &mut FastGate) {
        let pending = u64::from(self.published - self.acked - u32::from(self.in_flight.is_some()));
        gate.reading(
            pending,
            u64::from(self.in_flight.is_some()),
            self.connects,
            self.connects,
        );
    }

    fn step(&mut self, action: u8) {
        match action % 7 {
            0 => self.publish(),
            1 => {
                // The server delivers the next stored command to the consumer's pull, or
                // (its ack wait over) the unacked one again.
                if self.gate.is_some() && self.inbox.is_empty() {
                    if let Some(id) = self.in_flight {
                        self.inbox.push_back(id);
                    } else if self.acked < self.published {
                        self.in_flight = Some(self.acked);
                        self.inbox.push_back(self.acked);
                    }
                }
            }
            2 => {
                // The agent handles a durable delivery, acks it; caught up → a reading.
                if let Some(id) = self.inbox.pop_front() {
                    self.handle(id);
                    self.acked = id + 1;
                    self.in_flight = None;
                    if let Some(mut g) = self.gate.take() {
                        if !g.live() && self.acked == self.published {
                            self.read(&mut g);
                        }
                        self.gate = Some(g);
                    }
                }
            }
            3 => {
                // The agent handles a fast-path message.
                let Some(g) = self.gate.clone() else { return };
                if let Some(id) = self.fast.pop_front() {
                    match g.step(self.connects) {
                        FastStep::Run => self.handle(id),
                        FastStep::Leave => {}
                        FastStep::Reopen => self.open(),
                    }
                }
            }
            4 => {
                // A reconnect: what the subscription had not delivered is lost.
                if self.gate.is_some() {
                    self.connects += 1;
                    self.fast.clear();
                }
            }
            5 => {
                if self.gate.is_none() {
                    self.open();
                }
            }
            _ => {
                // The catch-up tick: a reading while behind, whatever is in flight.
                if let Some(mut g) = self.gate.take() {
                    if !g.live() {
                        self.read(&mut g);
                    }
                    self.gate = Some(g);
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn every_command_runs_once_in_order(away in 0u8..8, actions in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut m = Model::default();
        for _ in 0..away {
            m.publish();
        }
        for a in actions {
            m.step(a);
            let expected: Vec<u32> = (0..m.runs.len() as u32).collect();
            prop_assert_eq!(&m.runs, &expected, "ran out of order or twice");
        }
        // Drain: the durable consumer brings whatever is left.
        if m.gate.is_none() {
            m.open();
        }
        for _ in 0..(2 * m.published + 2) {
            m.step(1);
            m.step(2);
        }
        let all: Vec<u32> = (0..m.published).collect();
        prop_assert_eq!(m.runs, all);
    }
}
