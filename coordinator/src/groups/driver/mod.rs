//! The group driver (active coordinator only, and only once caught up with the stream, like
//! the alert engine): every `interval` it reads the groups from the fleet, decides
//! (`decide`), and acts — a failover is recorded (`group_failover` started) before its
//! `service_role` commands are issued through the `Dispatcher` (standby to the old active
//! first; then, once its standby command completed — `handover`: not waited for when its host
//! is lost or its service down, as it cannot serve; it gets the command from `OPS_CMDS` when it
//! returns — active to the new one; a standby that fails or takes `complete_within` fails the
//! failover, the old one keeping the role), and recorded again once the new active's heartbeat
//! reports the role (`completed`, with `took_ms`) or after `complete_within` (`failed`). The
//! epoch is checked before each act
//! (fencing at the source; the agents check it again). Operators' failovers (`Ask`) arrive on
//! a channel (`ask::GroupsHandle`) and are answered when they end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use opsfleet_proto::api::{CommandRequestJson, CommandState, Role};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::error_chain;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::groups::ask::{plan, Ask, AskError, Done, GroupsHandle};

mod failover;
use crate::acting::{Gate, Turns};
use crate::dispatch::Dispatcher;
use crate::emit::Emitter;
use crate::groups::decide::{decide, Decision, Ident, Member, Told};
use crate::groups::handover;
use crate::groups::{members, GroupsConfig};
use crate::identity::Issuer;
use crate::state::Shared;

/// Patience of one emit.
const EMIT_PATIENCE: Duration = Duration::from_secs(10);
/// A role told and completed is not told again for this long (the heartbeat catching up).
const RETELL_AFTER: Duration = Duration::from_secs(30);

/// A failover under way.
struct Running {
    service: String,
    from: Option<Ident>,
    to: Ident,
    started: Instant,
    epoch: u64,
    drill: bool,
    requested_by: String,
    reason: String,
    waiter: Option<oneshot::Sender<Result<Done, AskError>>>,
    stage: Stage,
}

/// Where a failover stands.
enum Stage {
    /// The old active was told standby (this command) at `since`; the new one waits for it.
    Demoting { command: String, since: Instant },
    /// The new active was told its role at `since`.
    Promoting { since: Instant },
}

/// What one term remembers.
#[derive(Default)]
struct Memory {
    /// When each member not healthy was first seen so in its role (this coordinator's clock).
    unhealthy_since: HashMap<Ident, (Told, i64)>,
    /// The last role told each member: the role, the command, when.
    told: HashMap<Ident, (Told, String, Instant)>,
    running: BTreeMap<String, Running>,
}

/// One group as read at one moment.
struct Snapshot {
    groups: BTreeMap<String, Vec<Member>>,
    /// The host each group last failed over to (wins ties).
    preferred: BTreeMap<String, String>,
    /// Commands told: id → finished (and completed?).
    finished: HashMap<String, bool>,
    /// The members that could serve as active (`handover::must_wait`).
    serving: HashSet<Ident>,
    /// The standby commands failovers wait for: id → state and detail in the ledger.
    standbys: HashMap<String, (CommandState, String)>,
}

pub struct Driver {
    shared: Arc<Shared>,
    emitter: Emitter,
    dispatcher: Dispatcher,
    stream: Stream,
    cfg: GroupsConfig,
    issuer: Issuer,
    asks: mpsc::Receiver<Ask>,
}

impl Driver {
    pub fn new(
        shared: Arc<Shared>,
        emitter: Emitter,
        dispatcher: Dispatcher,
        stream: Stream,
        cfg: &GroupsConfig,
    ) -> (Driver, GroupsHandle) {
        let (tx, asks) = mpsc::channel(16);
        let issuer = Issuer {
            name: format!("coordinator {} (groups)", shared.name),
            role: Some(Role::Operator),
        };
        let driver = Driver {
            shared,
            emitter,
            dispatcher,
            stream,
            cfg: cfg.clone(),
            issuer,
            asks,
        };
        (driver, GroupsHandle::new(tx))
    }

    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        if !self.cfg.enabled {
            info!("groups: automatic activation and failover disabled; operators' failovers only");
        }
        let gate = Gate::new(Arc::clone(&self.shared), self.stream.clone(), "groups");
        let mut turns = Turns::new(gate, self.cfg.interval);
        let mut memory = Memory::default();
        while let Some(turn) = turns.next(&mut self.asks, &cancel).await {
            let (epoch, gate) = (turn.epoch, turns.gate());
            if turn.new_term {
                for (group, r) in std::mem::take(&mut memory.running) {
                    if let Some(w) = r.waiter {
                        let _ = w.send(Err(failed(&group, &r.to, "the coordinator's term ended")));
                    }
                }
                memory = Memory::default();
            }
            let snap = self.snapshot(&mut memory);
            if let Some(ask) = turn.ask {
                self.asked(ask, &snap, &mut memory, gate, epoch).await;
                continue;
            }
            self.finish(&snap, &mut memory, gate, epoch).await;
            if self.cfg.enabled {
                self.keep(&snap, &mut memory, gate, epoch).await;
            }
        }
    }

    /// The groups now, with each member's `unhealthy_since` from this term's memory.
    fn snapshot(&self, memory: &mut Memory) -> Snapshot {
        let now = now_unix_ms();
        let fleet = self.shared.fleet();
        let mut groups = BTreeMap::new();
        let mut serving = HashSet::new();
        for (name, seen) in members::groups(&fleet, now) {
            let mut list = Vec::with_capacity(seen.len());
            for s in seen {
                let mut m = s.member;
                m.unhealthy_since_ms =
                    handover::unhealthy_since(&mut memory.unhealthy_since, &m, now);
                if handover::must_wait(s.liveness, s.state) {
                    serving.insert(Ident::of(&m));
                }
                list.push(m);
            }
            groups.insert(name, list);
        }
        let preferred = (fleet.groups().iter())
            .filter_map(|(g, h)| {
                let last = h.failovers.iter().rev().find(|r| r.phase == "completed")?;
                Some((g.clone(), last.to_host.clone()))
            })
            .collect();
        let finished = (memory.told.values())
            .filter_map(|(_, id, _)| {
                let rec = fleet.command(id)?;
                rec.is_finished().then(|| {
                    let ok = rec.state == opsfleet_proto::api::CommandState::Completed;
                    (id.clone(), ok)
                })
            })
            .collect();
        let standbys = (memory.running.values())
            .filter_map(|r| match &r.stage {
                Stage::Demoting { command, .. } => {
                    let rec = fleet.command(command)?;
                    Some((command.clone(), (rec.state, rec.detail.clone())))
                }
                Stage::Promoting { .. } => None,
            })
            .collect();
        Snapshot {
            groups,
            preferred,
            finished,
            serving,
            standbys,
        }
    }

    /// Keeps one active per group: the decision of each group without a running failover.
    async fn keep(&self, snap: &Snapshot, memory: &mut Memory, gate: &Gate, epoch: u64) {
        let after_ms = i64::try_from(self.cfg.failover_after.as_millis()).unwrap_or(i64::MAX);
        let now = now_unix_ms();
        for (group, members) in &snap.groups {
            if memory.running.contains_key(group) {
                continue;
            }
            let preferred = snap.preferred.get(group).map(String::as_str);
            match decide(members, now, after_ms, preferred) {
                Decision::Nothing => {}
                Decision::Activate { to, reason } => {
                    let start = Start::auto(group, None, to, reason);
                    self.start(start, snap, memory, gate, epoch).await;
                }
                Decision::Failover { from, to, reason } => {
                    let start = Start::auto(group, Some(from), to, reason);
                    self.start(start, snap, memory, gate, epoch).await;
                }
                Decision::Demote { keep, demote } => {
                    for d in demote {
                        if !gate.still(epoch) {
                            return;
                        }
                        let told = self.tell(group, &d, Told::Standby, snap, memory).await;
                        if told == Telling::Sent {
                            info!(group = %group, keep = %keep.host, demoted = %d.host, "two actives: told one standby");
                        }
                    }
                }
            }
        }
    }

    /// An operator's failover: checked against the group, then started; answered when it
    /// ends.
    async fn asked(&self, ask: Ask, snap: &Snapshot, memory: &mut Memory, gate: &Gate, epoch: u64) {
        if let Some(r) = memory.running.get(&ask.group) {
            let _ = ask.reply.send(Err(AskError::Running {
                group: ask.group.clone(),
                to: r.to.host.clone(),
            }));
            return;
        }
        let known: Vec<String> = snap.groups.keys().cloned().collect();
        let members = snap.groups.get(&ask.group).map(Vec::as_slice);
        let (from, to) = match plan(&ask.group, members, &known, ask.to.as_deref(), ask.drill) {
            Ok(planned) => planned,
            Err(e) => {
                let _ = ask.reply.send(Err(e));
                return;
            }
        };
        let what = if ask.drill { "drill" } else { "failover" };
        let start = Start {
            group: ask.group.clone(),
            from,
            to,
            reason: format!("{what} requested by {}", ask.requested_by),
            drill: ask.drill,
            requested_by: ask.requested_by.clone(),
        };
        let group = ask.group.clone();
        self.start(start, snap, memory, gate, epoch).await;
        match memory.running.get_mut(&group) {
            Some(r) => r.waiter = Some(ask.reply),
            None => {
                let _ = ask.reply.send(Err(AskError::Failed {
                    group,
                    to: ask.to.unwrap_or_default(),
                    detail: "could not be started (see the coordinator's log)".to_owned(),
                }));
            }
        }
    }

    /// Issues `service_role` `role` to `who`, unless the same role was told and its command
    /// is still under way (or completed within `RETELL_AFTER`).
    async fn tell(
        &self,
        group: &str,
        who: &Ident,
        role: Told,
        snap: &Snapshot,
        memory: &mut Memory,
    ) -> Telling {
        if let Some((told, id, at)) = memory.told.get(who) {
            let recent = match snap.finished.get(id) {
                None => true,
                Some(true) => at.elapsed() < RETELL_AFTER,
                Some(false) => at.elapsed() < Duration::from_secs(5),
            };
            if *told == role && recent {
                return Telling::AlreadyTold;
            }
        }
        let text = if role == Told::Active {
            "active"
        } else {
            "standby"
        };
        let req = CommandRequestJson {
            action: "service_role".to_owned(),
            module: Some(who.service.clone()),
            hosts: vec![who.host.clone()],
            deadline_ms: u64::try_from(self.cfg.command_deadline.as_millis()).unwrap_or(u64::MAX),
            issued_by: self.issuer.name.clone(),
            role: Some(text.to_owned()),
            group: Some(group.to_owned()),
            ..Default::default()
        };
        match self.dispatcher.issue(req, &self.issuer).await {
            Ok(reply) => {
                let id = reply
                    .commands
                    .first()
                    .map(|c| c.command_id.clone())
                    .unwrap_or_default();
                memory.told.insert(who.clone(), (role, id, Instant::now()));
                Telling::Sent
            }
            Err(e) => {
                warn!(group, host = %who.host, role = text, error = %error_chain(&e), "cannot send a role");
                Telling::NotSent
            }
        }
    }

    fn event(&self, group: &str, r: &Running, phase: &str, took_ms: u64, detail: &str) -> Body {
        Body::GroupFailover(pb::GroupFailover {
            group: group.to_owned(),
            service: r.service.clone(),
            from_host: r.from.as_ref().map(|f| f.host.clone()).unwrap_or_default(),
            to_host: r.to.host.clone(),
            reason: r.reason.clone(),
            phase: phase.to_owned(),
            drill: r.drill,
            epoch: r.epoch,
            requested_by: r.requested_by.clone(),
            took_ms,
            detail: detail.to_owned(),
        })
    }
}

/// What `tell` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telling {
    Sent,
    /// The same role was told and is still on its way (or just arrived).
    AlreadyTold,
    NotSent,
}

/// A failover to start.
struct Start {
    group: String,
    from: Option<Ident>,
    to: Ident,
    reason: String,
    drill: bool,
    requested_by: String,
}

impl Start {
    fn auto(group: &str, from: Option<Ident>, to: Ident, reason: String) -> Start {
        Start {
            group: group.to_owned(),
            from,
            to,
            reason,
            drill: false,
            requested_by: String::new(),
        }
    }
}

fn failed(group: &str, to: &Ident, detail: &str) -> AskError {
    AskError::Failed {
        group: group.to_owned(),
        to: to.host.clone(),
        detail: detail.to_owned(),
    }
}
