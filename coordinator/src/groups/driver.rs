//! The group driver (active coordinator only, and only once caught up with the stream, like
//! the alert engine): every `interval` it reads the groups from the fleet, decides
//! (`decide`), and acts — a failover is recorded (`group_failover` started) before its
//! `service_role` commands are issued through the `Dispatcher` (standby to the old active
//! first: unreachable, it gets the command from `OPS_CMDS` when it returns; then active to the
//! new one), and recorded again once the new active's heartbeat reports the role (`completed`,
//! with `took_ms`) or after `complete_within` (`failed`). The epoch is checked before each act
//! (fencing at the source; the agents check it again). Operators' failovers (`Ask`) arrive on
//! a channel (`ask::GroupsHandle`) and are answered when they end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use opsfleet_proto::api::{CommandRequestJson, Role};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::{error_chain, ErrorChain};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ask::{plan, Ask, AskError, Done, GroupsHandle};
use super::decide::{decide, Decision, Fitness, Ident, Member, Told};
use super::{members, GroupsConfig};
use crate::acting::{Closed, Gate};
use crate::dispatch::Dispatcher;
use crate::emit::Emitter;
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
}

/// What one term remembers.
#[derive(Default)]
struct Memory {
    /// When each member not healthy was first seen so (this coordinator's clock).
    unhealthy_since: HashMap<Ident, i64>,
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
        let mut gate = Gate::new(Arc::clone(&self.shared), self.stream.clone(), "groups");
        let mut memory = Memory::default();
        let mut term = 0;
        let mut asks_open = true;
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ask = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => None,
                // Once the API is gone, only the ticks are left.
                ask = self.asks.recv(), if asks_open => {
                    asks_open = ask.is_some();
                    ask
                }
            };
            let epoch = match gate.open_or_why().await {
                Ok(epoch) => epoch,
                Err(closed) => {
                    if let Some(ask) = ask {
                        let _ = ask.reply.send(Err(match closed {
                            Closed::NotActive => AskError::NotActive,
                            Closed::CatchingUp => AskError::CatchingUp,
                        }));
                    }
                    continue;
                }
            };
            if epoch != term {
                term = epoch;
                for (group, r) in std::mem::take(&mut memory.running) {
                    if let Some(w) = r.waiter {
                        let _ = w.send(Err(failed(&group, &r.to, "the coordinator's term ended")));
                    }
                }
                memory = Memory::default();
            }
            let snap = self.snapshot(&mut memory);
            if let Some(ask) = ask {
                self.asked(ask, &snap, &mut memory, &gate, epoch).await;
                continue;
            }
            self.finish(&snap, &mut memory).await;
            if self.cfg.enabled {
                self.keep(&snap, &mut memory, &gate, epoch).await;
            }
        }
    }

    /// The groups now, with each member's `unhealthy_since` from this term's memory.
    fn snapshot(&self, memory: &mut Memory) -> Snapshot {
        let now = now_unix_ms();
        let fleet = self.shared.fleet();
        let mut groups = BTreeMap::new();
        for (name, seen) in members::groups(&fleet, now) {
            let mut list = Vec::with_capacity(seen.len());
            for s in seen {
                let mut m = s.member;
                let id = Ident::of(&m);
                if m.fitness < Fitness::Healthy {
                    m.unhealthy_since_ms = Some(*memory.unhealthy_since.entry(id).or_insert(now));
                } else {
                    memory.unhealthy_since.remove(&id);
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
        Snapshot {
            groups,
            preferred,
            finished,
        }
    }

    /// Records and answers every running failover whose new active reported its role, or
    /// that waited `complete_within`.
    async fn finish(&self, snap: &Snapshot, memory: &mut Memory) {
        let groups: Vec<String> = memory.running.keys().cloned().collect();
        for group in groups {
            let Some(r) = memory.running.get(&group) else {
                continue;
            };
            let reported = (snap.groups.get(&group).into_iter().flatten())
                .any(|m| Ident::of(m) == r.to && m.role == Told::Active);
            let timed_out = r.started.elapsed() >= self.cfg.complete_within;
            if !reported && !timed_out {
                continue;
            }
            let Some(r) = memory.running.remove(&group) else {
                continue;
            };
            let took_ms = u64::try_from(r.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (phase, detail) = if reported {
                ("completed", String::new())
            } else {
                let within = humantime::format_duration(self.cfg.complete_within);
                (
                    "failed",
                    format!(
                        "{} did not report the active role within {within}",
                        r.to.host
                    ),
                )
            };
            let body = self.event(&group, &r, phase, took_ms, &detail);
            if let Err(e) = self.emitter.emit(body, EMIT_PATIENCE).await {
                warn!(group = %group, error = %ErrorChain(&e), phase, "failover outcome not recorded");
            }
            info!(group = %group, to = %r.to.host, phase, took_ms, "group failover ended");
            if let Some(w) = r.waiter {
                let answer = if reported {
                    Ok(Done {
                        group: group.clone(),
                        service: r.service.clone(),
                        from: r.from.as_ref().map(|f| f.host.clone()).unwrap_or_default(),
                        to: r.to.host.clone(),
                        took_ms,
                        drill: r.drill,
                        epoch: r.epoch,
                    })
                } else {
                    Err(failed(&group, &r.to, &detail))
                };
                let _ = w.send(answer);
            }
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

    /// Records the start, tells the old active standby and the new one active; the failover
    /// then runs until `finish`.
    async fn start(&self, s: Start, snap: &Snapshot, memory: &mut Memory, gate: &Gate, epoch: u64) {
        // Fencing at the source: decided in this term, acted on only in it.
        if !gate.still(epoch) {
            return;
        }
        let running = Running {
            service: s.to.service.clone(),
            from: s.from.clone(),
            to: s.to.clone(),
            started: Instant::now(),
            epoch,
            drill: s.drill,
            requested_by: s.requested_by.clone(),
            reason: s.reason.clone(),
            waiter: None,
        };
        let body = self.event(&s.group, &running, "started", 0, "");
        if let Err(e) = self.emitter.emit(body, EMIT_PATIENCE).await {
            warn!(group = %s.group, error = %ErrorChain(&e), "cannot record a failover; not started");
            return;
        }
        info!(group = %s.group, from = s.from.as_ref().map_or("", |f| f.host.as_str()), to = %s.to.host, reason = %s.reason, drill = s.drill, "group failover started");
        if let Some(from) = &s.from {
            self.tell(&s.group, from, Told::Standby, snap, memory).await;
        }
        let told = if gate.still(epoch) {
            self.tell(&s.group, &s.to, Told::Active, snap, memory).await
        } else {
            Telling::NotSent
        };
        if told == Telling::NotSent {
            let body = self.event(
                &s.group,
                &running,
                "failed",
                0,
                "the active role could not be sent",
            );
            if let Err(e) = self.emitter.emit(body, EMIT_PATIENCE).await {
                warn!(group = %s.group, error = %ErrorChain(&e), "failover failure not recorded");
            }
            return;
        }
        memory.running.insert(s.group, running);
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
