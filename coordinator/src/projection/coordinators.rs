//! Projection of the coordinators themselves, from the events they publish about themselves
//! (module `coordinator`): current role and epoch, and the history of leadership changes.

use opsfleet_proto::api::LeaderRole;
use std::collections::BTreeMap;

use opsfleet_proto::pb::event::Body;
use opsfleet_proto::EventEnvelope;
use serde::{Deserialize, Serialize};

use super::{SeqTrack, Verdict};

/// How many leadership changes per coordinator the projection keeps.
pub const HISTORY: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadershipChange {
    pub epoch: u64,
    pub role: LeaderRole,
    pub reason: String,
    pub at_unix_ms: i64,
    /// Who asked for a released step-down (`opsctl failover`); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorState {
    pub name: String,
    pub color: String,
    pub streams: BTreeMap<String, SeqTrack>,
    pub role: LeaderRole,
    pub epoch: u64,
    pub last_seen_unix_ms: i64,
    /// Newest last.
    pub history: Vec<LeadershipChange>,
}

impl CoordinatorState {
    pub fn new(name: &str) -> Self {
        CoordinatorState {
            name: name.to_owned(),
            color: String::new(),
            streams: BTreeMap::new(),
            role: LeaderRole::Unknown,
            epoch: 0,
            last_seen_unix_ms: 0,
            history: Vec::new(),
        }
    }

    pub fn is_duplicate(&self, ev: &EventEnvelope) -> bool {
        self.streams
            .get(&ev.incarnation.to_string())
            .is_some_and(|t| t.contains(ev.seq))
    }

    pub(super) fn apply(&mut self, ev: &EventEnvelope) -> Verdict {
        let verdict = self
            .streams
            .entry(ev.incarnation.to_string())
            .or_default()
            .accept(ev.seq)
            .verdict;
        if !verdict.is_accepted() {
            return verdict;
        }
        self.last_seen_unix_ms = self.last_seen_unix_ms.max(ev.time_unix_ms);
        if let Body::Leadership(l) = &ev.body {
            let role = LeaderRole::from_wire(l.role);
            self.color = l.color.clone();
            // Epochs only grow; a late event of an older term does not roll the state back.
            if l.epoch >= self.epoch {
                self.epoch = l.epoch;
                self.role = role;
            }
            self.history.push(LeadershipChange {
                epoch: l.epoch,
                role,
                reason: l.reason.clone(),
                at_unix_ms: ev.time_unix_ms,
                requested_by: l.requested_by.clone(),
                requested_role: l.requested_role.clone(),
            });
            if self.history.len() > HISTORY {
                let excess = self.history.len() - HISTORY;
                self.history.drain(..excess);
            }
        }
        verdict
    }
}
