//! Runs the election state machine against the KV bucket `ops_leader`: one task owns the key's
//! requests (create / update with expected revision / delete), feeds their results and the
//! key's watch back into the machine, and publishes the resulting leadership view. Sightings
//! for fast takeover come only from this task's own watch of the key (server deliveries to a
//! consumer of ours), never from anything published on a plain subject.

use opsfleet_proto::api::LeaderRole;
use opsfleet_report::ErrorChain;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::fsm::{Action, Election, Input, StepDown};
use super::timing::LeaseTiming;

pub use opsfleet_proto::kv::{LeaderRecord, LEADER_KEY};

/// This coordinator's leadership as the rest of the process sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderView {
    /// The epoch of the current (or last) term of ours; 0 if never active.
    pub epoch: u64,
    /// We may act until this instant; `None` when standby.
    pub acting_until: Option<Instant>,
    /// Who holds the lease as far as the watch knows.
    pub holder: Option<String>,
}

impl LeaderView {
    /// The epoch to stamp on an action taken now, if we may act.
    pub fn acting_epoch(&self, now: Instant) -> Option<u64> {
        self.acting_until
            .filter(|until| now < *until)
            .map(|_| self.epoch)
    }

    pub fn role(&self, now: Instant) -> LeaderRole {
        if self.acting_epoch(now).is_some() {
            LeaderRole::Active
        } else {
            LeaderRole::Standby
        }
    }
}

/// Shared, cheap to read.
#[derive(Debug, Clone, Default)]
pub struct Leadership(Arc<RwLock<LeaderView>>);

impl Leadership {
    pub fn view(&self) -> LeaderView {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut LeaderView)) {
        f(&mut self.0.write().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Who asked for a release (`opsctl failover`), recorded on the step-down's leadership event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    /// The operator as the request's subject names it, or a body's claim marked unverified.
    pub name: String,
    /// The role it acted in; empty when unverified.
    pub role: String,
}

/// A release asked of the driver: hand over to `to` (or whoever is first), on whose behalf.
type ReleaseRequest = (Option<String>, Option<Requester>);

/// Asks the driver to give the lease up (to a named coordinator, or to whoever is first).
#[derive(Debug, Clone)]
pub struct ReleaseHandle(mpsc::Sender<ReleaseRequest>);

impl ReleaseHandle {
    pub async fn release(&self, to: Option<String>, by: Option<Requester>) -> bool {
        self.0.send((to, by)).await.is_ok()
    }
}

/// A change of this coordinator's role, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub active: bool,
    pub epoch: u64,
    /// Why it stepped down; empty when it became active.
    pub reason: &'static str,
    /// Who asked for a released step-down, if an operator did.
    pub requested_by: Option<Requester>,
}

pub struct Driver {
    kv: kv::Store,
    changes: Option<mpsc::UnboundedSender<RoleChange>>,
    name: String,
    color: String,
    election: Election,
    leadership: Leadership,
    origin: Instant,
    release_rx: mpsc::Receiver<ReleaseRequest>,
    /// The requester of the release being carried out, until its step-down is reported.
    requested_by: Option<Requester>,
}

impl Driver {
    pub fn new(
        kv: kv::Store,
        name: &str,
        color: &str,
        timing: LeaseTiming,
    ) -> (Self, Leadership, ReleaseHandle) {
        let (tx, rx) = mpsc::channel(4);
        let leadership = Leadership::default();
        (
            Driver {
                kv,
                changes: None,
                name: name.to_owned(),
                color: color.to_owned(),
                election: Election::new(timing),
                leadership: leadership.clone(),
                origin: Instant::now(),
                release_rx: rx,
                requested_by: None,
            },
            leadership,
            ReleaseHandle(tx),
        )
    }

    /// Reports every activation and step-down on `tx` (for leadership events).
    pub fn report_changes(mut self, tx: mpsc::UnboundedSender<RoleChange>) -> Self {
        self.changes = Some(tx);
        self
    }

    fn report(&self, change: RoleChange) {
        if let Some(tx) = &self.changes {
            let _ = tx.send(change);
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn record(&self, holder: &str, handed_over_by: Option<&str>) -> bytes::Bytes {
        let rec = LeaderRecord {
            holder: holder.to_owned(),
            color: self.color.clone(),
            handed_over_by: handed_over_by.map(str::to_owned),
            acting_window_ms: (self.election.timing().promised_window())
                .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        };
        serde_json::to_vec(&rec).unwrap_or_default().into()
    }

    /// Runs until `cancel`; then releases the lease (so a standby takes over at once).
    pub async fn run(mut self, cancel: CancellationToken) {
        let tick_every = (self.election.timing().renew_every / 10).max(Duration::from_millis(20));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut watch = None;
        loop {
            if watch.is_none() {
                // Bounded: while the JetStream API is slow, an active's renewals must not wait
                // behind it (the next tick tries again); a standby can wait longer.
                let patience = match self.election.role() {
                    super::fsm::Role::Active { .. } => self.election.timing().renew_every / 2,
                    super::fsm::Role::Standby { .. } => self.election.timing().acting_window(),
                };
                match tokio::time::timeout(patience, self.kv.watch(LEADER_KEY)).await {
                    Ok(Ok(w)) => watch = Some(w),
                    Ok(Err(e)) => debug!(error = %ErrorChain(&e), "cannot watch the lease yet"),
                    Err(_) => debug!("watching the lease timed out; trying again"),
                }
            }
            // Unbiased on purpose: a busy watch must not starve the ticks that renew.
            let input = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => Input::Tick,
                asked = self.release_rx.recv() => match asked {
                    Some((to, by)) => {
                        self.requested_by = by;
                        Input::Release { to }
                    }
                    None => continue,
                },
                entry = next_entry(&mut watch, &self.name) => match entry {
                    Some(input) => input,
                    None => continue,
                },
            };
            self.feed(input).await;
        }
        self.requested_by = None;
        self.feed(Input::Release { to: None }).await;
    }

    /// Steps the machine and carries out its actions, feeding their results back in.
    async fn feed(&mut self, input: Input) {
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            let now = self.now();
            for action in self.election.step(now, input) {
                if let Some(result) = self.execute(action).await {
                    pending.push(result);
                }
            }
        }
        self.publish_view();
    }

    /// How long a request may take: a renewal until the end of the current acting window (a
    /// slow renewal that lands in time keeps the term); anything else one acting window (a
    /// later answer could not be acted on anyway).
    fn request_timeout(&self, renewing: bool) -> Duration {
        use super::fsm::Role;
        let window = self.election.timing().acting_window();
        match self.election.role() {
            Role::Active { valid_until, .. } if renewing => valid_until
                .saturating_sub(self.now())
                .max(Duration::from_millis(1)),
            _ => window,
        }
    }

    async fn execute(&mut self, action: Action) -> Option<Input> {
        let timeout = self.request_timeout(matches!(
            action,
            Action::SendRenew { .. } | Action::SendReassert { .. }
        ));
        match action {
            Action::SendCreate => {
                let sent_at = self.now();
                let value = self.record(&self.name, None);
                Some(
                    match tokio::time::timeout(timeout, self.kv.create(LEADER_KEY, value)).await {
                        Ok(Ok(revision)) => Input::Acquired { sent_at, revision },
                        Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                            Input::AcquireRefused
                        }
                        Ok(Err(e)) => {
                            debug!(error = %ErrorChain(&e), "lease create failed");
                            Input::RequestFailed
                        }
                        Err(_) => Input::RequestFailed,
                    },
                )
            }
            Action::SendRenew { revision } | Action::SendReassert { revision } => {
                if matches!(action, Action::SendReassert { .. }) {
                    warn!(
                        revision,
                        "foreign entry in the lease; re-asserting our record"
                    );
                }
                let sent_at = self.now();
                let value = self.record(&self.name, None);
                let answer = self.update(value, revision, sent_at, timeout).await;
                if answer == Input::RenewRefused
                    && matches!(self.election.role(), super::fsm::Role::Active { .. })
                {
                    return Some(self.refusal(timeout).await);
                }
                Some(answer)
            }
            Action::SendTakeover { revision } => {
                info!(
                    revision,
                    "lease holder silent past its promised window; taking over"
                );
                let sent_at = self.now();
                let value = self.record(&self.name, None);
                Some(self.update(value, revision, sent_at, timeout).await)
            }
            Action::SendHandover { to, revision } => {
                let sent_at = self.now();
                let value = self.record(&to, Some(&self.name.clone()));
                match self.update(value, revision, sent_at, timeout).await {
                    Input::Renewed { revision, .. } => {
                        info!(to = %to, revision, "lease handed over");
                    }
                    other => warn!(to = %to, result = ?other, "lease handover did not go through"),
                }
                None
            }
            Action::SendDelete { revision } => {
                let delete = self.kv.delete_expect_revision(LEADER_KEY, Some(revision));
                match tokio::time::timeout(timeout, delete).await {
                    Ok(Ok(())) => info!(revision, "lease released"),
                    Ok(Err(e)) => {
                        warn!(error = %ErrorChain(&e), "lease release failed; it ages out instead")
                    }
                    Err(_) => warn!("lease release timed out; it ages out instead"),
                }
                None
            }
            Action::Activate { epoch } => {
                info!(epoch, coordinator = %self.name, "active");
                self.report(RoleChange {
                    active: true,
                    epoch,
                    reason: "",
                    requested_by: None,
                });
                None
            }
            Action::Deactivate { epoch, reason } => {
                // Close the acting gate now, before any request that follows (a handover or a
                // delete may wait for its answer; the target acts as soon as it lands).
                self.publish_view();
                warn!(epoch, coordinator = %self.name, reason = reason.as_str(), "standby");
                let requested_by = match reason {
                    StepDown::Released => self.requested_by.take(),
                    _ => None,
                };
                self.report(RoleChange {
                    active: false,
                    epoch,
                    reason: reason.as_str(),
                    requested_by,
                });
                None
            }
        }
    }

    async fn update(
        &self,
        value: bytes::Bytes,
        revision: u64,
        sent_at: Duration,
        timeout: Duration,
    ) -> Input {
        match tokio::time::timeout(timeout, self.kv.update(LEADER_KEY, value, revision)).await {
            Ok(Ok(revision)) => Input::Renewed { sent_at, revision },
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Input::RenewRefused,
            Ok(Err(e)) => {
                debug!(error = %ErrorChain(&e), "lease update failed");
                Input::RequestFailed
            }
            Err(_) => Input::RequestFailed,
        }
    }

    /// Why an active's CAS was refused: a foreign entry on the key (read raw, with the
    /// headers as stored) or, as before, another coordinator's write (or no answer).
    async fn refusal(&self, timeout: Duration) -> Input {
        let subject = format!("{}{}", self.kv.prefix, LEADER_KEY);
        let read = self.kv.stream.get_last_raw_message_by_subject(&subject);
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(msg)) if super::foreign::is_foreign(Some(&msg.headers), &msg.payload) => {
                Input::LeaseForeign {
                    revision: msg.sequence,
                }
            }
            Ok(Ok(_)) => Input::RenewRefused,
            Ok(Err(e)) => {
                debug!(error = %ErrorChain(&e), "cannot read the lease after a refusal");
                Input::RenewRefused
            }
            Err(_) => Input::RenewRefused,
        }
    }

    fn publish_view(&self) {
        use super::fsm::Role;
        let (epoch, until) = match self.election.role() {
            Role::Active {
                epoch, valid_until, ..
            } => (Some(*epoch), Some(self.origin + *valid_until)),
            Role::Standby { .. } => (None, None),
        };
        self.leadership.update(|v| {
            if let Some(epoch) = epoch {
                v.epoch = epoch;
                v.holder = Some(self.name.clone());
            }
            v.acting_until = until;
        });
    }
}

/// The next watch entry as an election input; `None` for entries that say nothing new (and
/// when the watch broke, after which it is re-created).
async fn next_entry(watch: &mut Option<kv::Watch>, me: &str) -> Option<Input> {
    let Some(w) = watch.as_mut() else {
        // No watch: wait on the tick instead.
        std::future::pending::<()>().await;
        return None;
    };
    match w.next().await {
        Some(Ok(entry)) => match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => Some(Input::LeaseGone),
            kv::Operation::Put => {
                let rec: LeaderRecord = serde_json::from_slice(&entry.value).ok()?;
                let revision = entry.revision;
                let window = rec.acting_window_ms.map(Duration::from_millis);
                if rec.holder != me {
                    Some(Input::HeldByOther { revision, window })
                } else if rec.handed_over_by.is_some() {
                    Some(Input::HandedToUs { revision })
                } else {
                    Some(Input::OwnRecord { revision, window })
                }
            }
        },
        Some(Err(e)) => {
            debug!(error = %ErrorChain(&e), "lease watch error");
            None
        }
        None => {
            *watch = None;
            None
        }
    }
}
