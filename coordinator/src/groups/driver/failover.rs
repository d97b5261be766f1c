//! A failover's lifecycle in the group driver: `start` (recorded, the old active told
//! standby), `promote` (the new one told active, once the old one's standby completed when it
//! could still serve — `handover`), `finish` (completed or failed) and `fail`.

use tokio::time::Instant;
use tracing::{info, warn};

use super::{failed, Driver, Memory, Running, Snapshot, Stage, Start, Telling, EMIT_PATIENCE};
use crate::acting::Gate;
use crate::groups::ask::Done;
use crate::groups::decide::{Ident, Told};
use crate::groups::handover::{self, Standby};
use opsfleet_report::ErrorChain;

impl Driver {
    /// Tells the new active its role once the old one is standby (or fails the failover),
    /// then records and answers every running failover whose new active reported its role,
    /// or that waited `complete_within`.
    pub(super) async fn finish(
        &self,
        snap: &Snapshot,
        memory: &mut Memory,
        gate: &Gate,
        epoch: u64,
    ) {
        let groups: Vec<String> = memory.running.keys().cloned().collect();
        for group in groups {
            let Some(r) = memory.running.get(&group) else {
                continue;
            };
            let since = match &r.stage {
                Stage::Demoting { command, since } => {
                    let host = r.from.as_ref().map_or("", |f| f.host.as_str());
                    let state = (snap.standbys.get(command)).map(|(s, d)| (*s, d.as_str()));
                    let bound = self.cfg.complete_within;
                    let standby = handover::standby(host, state, since.elapsed(), bound);
                    if standby == Standby::Waiting {
                        continue;
                    }
                    let Some(r) = memory.running.remove(&group) else {
                        continue;
                    };
                    match standby {
                        Standby::Failed(why) => self.fail(&group, r, &why).await,
                        _ => self.promote(group, r, snap, memory, gate, epoch).await,
                    }
                    continue;
                }
                Stage::Promoting { since } => *since,
            };
            let reported = (snap.groups.get(&group).into_iter().flatten())
                .any(|m| Ident::of(m) == r.to && m.role == Told::Active);
            let timed_out = since.elapsed() >= self.cfg.complete_within;
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

    /// Records the start and tells the old active standby; the new one is told active at
    /// once when the old one cannot serve (`handover::must_wait`), else by `finish` once the
    /// old one's standby command completed. The failover then runs until `finish`.
    pub(super) async fn start(
        &self,
        s: Start,
        snap: &Snapshot,
        memory: &mut Memory,
        gate: &Gate,
        epoch: u64,
    ) {
        // Fencing at the source: decided in this term, acted on only in it.
        if !gate.still(epoch) {
            return;
        }
        let mut running = Running {
            service: s.to.service.clone(),
            from: s.from.clone(),
            to: s.to.clone(),
            started: Instant::now(),
            epoch,
            drill: s.drill,
            requested_by: s.requested_by.clone(),
            reason: s.reason.clone(),
            waiter: None,
            stage: Stage::Promoting {
                since: Instant::now(),
            },
        };
        let body = self.event(&s.group, &running, "started", 0, "");
        if let Err(e) = self.emitter.emit(body, EMIT_PATIENCE).await {
            warn!(group = %s.group, error = %ErrorChain(&e), "cannot record a failover; not started");
            return;
        }
        info!(group = %s.group, from = s.from.as_ref().map_or("", |f| f.host.as_str()), to = %s.to.host, reason = %s.reason, drill = s.drill, "group failover started");
        if let Some(from) = &s.from {
            let told = self.tell(&s.group, from, Told::Standby, snap, memory).await;
            if snap.serving.contains(from) {
                // It could go on serving as active: the new one waits for its standby.
                let command = (memory.told.get(from))
                    .filter(|(role, id, _)| *role == Told::Standby && !id.is_empty())
                    .map(|(_, id, _)| id.clone());
                match command {
                    Some(command) if told != Telling::NotSent => {
                        running.stage = Stage::Demoting {
                            command,
                            since: Instant::now(),
                        };
                        memory.running.insert(s.group, running);
                    }
                    _ => {
                        let why = format!(
                            "the standby role could not be sent to {}; it keeps the active role",
                            from.host
                        );
                        self.fail(&s.group, running, &why).await;
                    }
                }
                return;
            }
        }
        self.promote(s.group, running, snap, memory, gate, epoch)
            .await;
    }

    /// Tells the new active its role (the epoch checked first); the failover then runs until
    /// `finish`, or fails here.
    async fn promote(
        &self,
        group: String,
        mut r: Running,
        snap: &Snapshot,
        memory: &mut Memory,
        gate: &Gate,
        epoch: u64,
    ) {
        let told = if gate.still(epoch) {
            self.tell(&group, &r.to, Told::Active, snap, memory).await
        } else {
            Telling::NotSent
        };
        if told == Telling::NotSent {
            self.fail(&group, r, "the active role could not be sent")
                .await;
            return;
        }
        r.stage = Stage::Promoting {
            since: Instant::now(),
        };
        memory.running.insert(group, r);
    }

    /// Records a failover `failed` with `detail` and answers its waiter.
    async fn fail(&self, group: &str, r: Running, detail: &str) {
        let took_ms = u64::try_from(r.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let body = self.event(group, &r, "failed", took_ms, detail);
        if let Err(e) = self.emitter.emit(body, EMIT_PATIENCE).await {
            warn!(group, error = %ErrorChain(&e), "failover failure not recorded");
        }
        warn!(group, to = %r.to.host, detail, "group failover failed");
        if let Some(w) = r.waiter {
            let _ = w.send(Err(failed(group, &r.to, detail)));
        }
    }
}
