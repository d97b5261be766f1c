//! The election as a pure state machine: inputs are CAS results, watch hints and ticks, each with
//! `now` on the local monotonic clock; outputs are the KV requests to send and the moments to
//! start or stop acting. Leadership is decided by CAS results only; the watch only says when to
//! try. An active coordinator treats its lease as ending at (send time of its last successful
//! CAS + TTL - margin) and stops acting then, renewed or not. With fast takeover the window is
//! shorter and promised in the lease record; a standby may then CAS a revision it saw only
//! after (its own first sight of it) + the holder's window + slack (`timing`).

use std::time::Duration;

use super::timing::LeaseTiming;

/// Where this coordinator stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Standby {
        /// When to try `create` again without a hint from the watch.
        next_try_at: Duration,
        /// A `create` is in flight.
        acquiring: bool,
    },
    Active {
        /// Revision of the write that began this term: the fencing token.
        epoch: u64,
        /// Revision of our latest write, for the next CAS.
        revision: u64,
        /// We must not act at or after this instant without a newer successful renew.
        valid_until: Duration,
        next_renew_at: Duration,
        /// Send time of the renew in flight, if any.
        renewing: Option<Duration>,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed.
    Tick,
    /// Our `create` (sent at `sent_at`) succeeded with `revision`.
    Acquired { sent_at: Duration, revision: u64 },
    /// Our `create` found the key held.
    AcquireRefused,
    /// Our `update` (sent at `sent_at`) succeeded with `revision`.
    Renewed { sent_at: Duration, revision: u64 },
    /// Our `update` found another revision: someone else holds the lease now.
    RenewRefused,
    /// Our renew (or re-assertion) found another revision, and the driver's raw read of the
    /// key shows a foreign entry there (`revision`): no coordinator's record, but a JetStream
    /// answer or a direct-get copy that someone aimed at the key.
    LeaseForeign { revision: u64 },
    /// A request failed without an answer (timeout, disconnect): outcome unknown.
    RequestFailed,
    /// The watch saw the lease deleted, purged or aged out.
    LeaseGone,
    /// The watch saw the active hand the lease to us with `revision`.
    HandedToUs { revision: u64 },
    /// The watch saw another coordinator write the lease with `revision` (a term of theirs is
    /// running), promising to act at most `window` after sending that write (`None`: no
    /// promise, the TTL lease only).
    HeldByOther {
        revision: u64,
        window: Option<Duration>,
    },
    /// The watch saw a write in our own name that is no handover (a renewal, or one whose
    /// answer we lost), with its promise.
    OwnRecord {
        revision: u64,
        window: Option<Duration>,
    },
    /// Stop acting and give the lease up: to `to` (graceful failover) or to whoever is first.
    Release { to: Option<String> },
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `create(key, our record)`; answer with Acquired / AcquireRefused / RequestFailed.
    SendCreate,
    /// `update(key, our record, revision)`; answer with Renewed / RenewRefused / RequestFailed.
    SendRenew { revision: u64 },
    /// `update(key, our record, revision)` of a holder silent past its promise: answered like
    /// a renew; success makes us active.
    SendTakeover { revision: u64 },
    /// `update(key, our record, revision)` of a foreign entry while our term runs: answered
    /// like a renew (same epoch); success extends the term.
    SendReassert { revision: u64 },
    /// `delete(key)` expecting `revision`, so the standby can take over at once.
    SendDelete { revision: u64 },
    /// `update(key, record naming `to`, revision)`: hand the lease to `to`.
    SendHandover { to: String, revision: u64 },
    /// Start acting under `epoch`.
    Activate { epoch: u64 },
    /// Stop acting now.
    Deactivate { epoch: u64, reason: StepDown },
}

/// Why an active coordinator stopped acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// No successful renew before the local deadline.
    LeaseLapsed,
    /// A renew found another revision.
    LeaseLost,
    /// Released on request (shutdown or failover).
    Released,
}

impl StepDown {
    pub fn as_str(self) -> &'static str {
        match self {
            StepDown::LeaseLapsed => "lease_lapsed",
            StepDown::LeaseLost => "lease_lost",
            StepDown::Released => "released",
        }
    }
}

/// A revision of the lease a standby saw, for fast takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub revision: u64,
    /// When we first saw it (our watch's delivery: never before the write was sent).
    pub seen_at: Duration,
    /// When we may CAS it, if ever (see `LeaseTiming::takeover_at`).
    pub takeover_at: Option<Duration>,
}

/// One coordinator's view of the election.
#[derive(Debug, Clone)]
pub struct Election {
    timing: LeaseTiming,
    role: Role,
    /// A CAS whose success makes us active (a handover's confirmation or a takeover) is in
    /// flight.
    confirming_handover: bool,
    /// The newest revision the standby saw and when (cleared when the lease goes).
    sighting: Option<Sighting>,
    /// After a release we do not try to take the lease back before this instant.
    quiet_until: Duration,
    /// Re-assertions over foreign entries since our last successful CAS.
    reasserts: u32,
}

/// Re-assertions over foreign entries allowed in a row without a successful CAS of ours; past
/// it we send nothing more and the term lapses at its local deadline.
pub const MAX_REASSERTS: u32 = 4;

impl Election {
    pub fn new(timing: LeaseTiming) -> Self {
        Election {
            timing,
            role: Role::Standby {
                next_try_at: Duration::ZERO,
                acquiring: false,
            },
            confirming_handover: false,
            sighting: None,
            quiet_until: Duration::ZERO,
            reasserts: 0,
        }
    }

    /// The revision a standby watches for fast takeover, if any.
    pub fn sighting(&self) -> Option<Sighting> {
        self.sighting
    }

    /// Notes a write of the lease seen by the watch: a new revision starts its own clock;
    /// the same one again (a re-created watch) keeps the first sight.
    fn sight(&mut self, now: Duration, revision: u64, window: Option<Duration>) {
        if self.sighting.is_some_and(|s| s.revision == revision) {
            return;
        }
        self.sighting = Some(Sighting {
            revision,
            seen_at: now,
            takeover_at: self.timing.takeover_at(now, window),
        });
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// The epoch we may act under at `now`, if any.
    pub fn acting_epoch(&self, now: Duration) -> Option<u64> {
        match self.role {
            Role::Active {
                epoch, valid_until, ..
            } if now < valid_until => Some(epoch),
            _ => None,
        }
    }

    fn standby(&mut self, now: Duration) {
        self.reasserts = 0;
        self.role = Role::Standby {
            next_try_at: (now + self.timing.retry_every).max(self.quiet_until),
            acquiring: false,
        };
        self.confirming_handover = false;
    }

    /// Advances the machine. Pure: the result depends only on the state, `now` and `input`.
    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match (&mut self.role, input) {
            // ---- standby ----
            (
                Role::Standby {
                    next_try_at,
                    acquiring,
                },
                Input::Tick,
            ) => {
                let takeover = self
                    .sighting
                    .filter(|s| s.takeover_at.is_some_and(|at| now >= at));
                if !*acquiring && now >= self.quiet_until {
                    if let Some(s) = takeover {
                        // The holder promised to stop acting before now (its window, plus
                        // our slack, after we first saw this revision): CAS exactly that
                        // revision.
                        *acquiring = true;
                        self.confirming_handover = true;
                        out.push(Action::SendTakeover {
                            revision: s.revision,
                        });
                    } else if now >= *next_try_at {
                        *acquiring = true;
                        out.push(Action::SendCreate);
                    }
                }
            }
            (Role::Standby { acquiring, .. }, Input::LeaseGone) => {
                self.sighting = None;
                if !*acquiring && now >= self.quiet_until {
                    *acquiring = true;
                    out.push(Action::SendCreate);
                }
            }
            (Role::Standby { acquiring, .. }, Input::HandedToUs { revision }) => {
                // Confirm by CAS before acting: only a successful renew makes us active.
                if !*acquiring {
                    *acquiring = true;
                    self.confirming_handover = true;
                    out.push(Action::SendRenew { revision });
                }
            }
            (Role::Standby { .. }, Input::Acquired { sent_at, revision }) => {
                self.become_active(now, sent_at, revision, &mut out);
            }
            (Role::Standby { .. }, Input::Renewed { sent_at, revision })
                if self.confirming_handover =>
            {
                self.become_active(now, sent_at, revision, &mut out);
            }
            (Role::Standby { .. }, Input::RenewRefused | Input::LeaseForeign { .. }) => {
                // The revision we tried moved on: wait for the watch to show the new one.
                self.sighting = None;
                self.standby(now);
            }
            (Role::Standby { .. }, Input::RequestFailed) => {
                // Outcome unknown: a takeover may be tried again a little later, never sooner.
                if let Some(s) = self.sighting.as_mut() {
                    s.takeover_at = s
                        .takeover_at
                        .map(|at| at.max(now + self.timing.renew_every));
                }
                self.standby(now);
            }
            (Role::Standby { .. }, Input::AcquireRefused) => {
                self.standby(now);
            }
            (Role::Standby { .. }, Input::Release { .. }) => {
                // Nothing held; just stay quiet for a lease so a failover target can win.
                self.quiet_until = now + self.timing.ttl;
                self.standby(now);
            }
            (Role::Standby { .. }, Input::Renewed { .. }) => {}
            (Role::Standby { .. }, Input::HeldByOther { revision, window }) => {
                // Someone else took over after our release: we may compete again when it goes.
                self.quiet_until = Duration::ZERO;
                self.sight(now, revision, window);
            }
            (Role::Standby { .. }, Input::OwnRecord { revision, window }) => {
                // A write in our name we do not act under (its answer was lost or late): the
                // same promise binds it.
                self.sight(now, revision, window);
            }

            // ---- active ----
            (
                Role::Active {
                    epoch,
                    revision,
                    valid_until,
                    next_renew_at,
                    renewing,
                },
                Input::Tick,
            ) => {
                if now >= *valid_until {
                    let (epoch, revision) = (*epoch, *revision);
                    out.push(Action::Deactivate {
                        epoch,
                        reason: StepDown::LeaseLapsed,
                    });
                    self.standby(now);
                    // We stopped acting, so our own last revision may be taken back at once:
                    // the CAS wins only if nobody wrote since (a stall, not a takeover), and a
                    // brief stall then costs a new term instead of a failover.
                    self.sighting = Some(Sighting {
                        revision,
                        seen_at: now,
                        takeover_at: Some(now),
                    });
                } else if renewing.is_none() && now >= *next_renew_at {
                    *renewing = Some(now);
                    out.push(Action::SendRenew {
                        revision: *revision,
                    });
                }
            }
            (
                Role::Active {
                    revision,
                    valid_until,
                    next_renew_at,
                    renewing,
                    ..
                },
                Input::Renewed {
                    sent_at,
                    revision: new_revision,
                },
            ) => {
                // The driver stamps `sent_at` just before sending, at or after the step that
                // asked for the renew.
                if renewing.is_some_and(|asked_at| sent_at >= asked_at) {
                    *revision = new_revision;
                    *valid_until = (*valid_until).max(self.timing.valid_until(sent_at));
                    *next_renew_at = sent_at + self.timing.renew_every;
                    *renewing = None;
                    self.reasserts = 0;
                }
            }
            (
                Role::Active {
                    valid_until,
                    next_renew_at,
                    renewing,
                    ..
                },
                Input::LeaseForeign { revision },
            ) => {
                // Nobody else may have written since our revision while our term runs (a
                // takeover waits out our window; a create needs the key gone): the foreign
                // entry sits right on top of ours, so taking it back by CAS displaces no
                // coordinator. Same epoch; bounded so a writer racing us cannot keep us busy.
                if now < *valid_until && self.reasserts < MAX_REASSERTS {
                    self.reasserts += 1;
                    *renewing = Some(now);
                    out.push(Action::SendReassert { revision });
                } else {
                    *renewing = None;
                    *next_renew_at = *valid_until;
                }
            }
            (Role::Active { epoch, .. }, Input::RenewRefused) => {
                let epoch = *epoch;
                out.push(Action::Deactivate {
                    epoch,
                    reason: StepDown::LeaseLost,
                });
                self.standby(now);
            }
            (
                Role::Active {
                    renewing,
                    next_renew_at,
                    ..
                },
                Input::RequestFailed,
            ) => {
                // Unknown outcome: try again soon; the local deadline still holds.
                *renewing = None;
                *next_renew_at = now + self.timing.renew_every / 4;
            }
            (
                Role::Active {
                    epoch, revision, ..
                },
                Input::Release { to },
            ) => {
                let (epoch, revision) = (*epoch, *revision);
                // Stop acting first, then give the lease away.
                out.push(Action::Deactivate {
                    epoch,
                    reason: StepDown::Released,
                });
                out.push(match to {
                    Some(to) => Action::SendHandover { to, revision },
                    None => Action::SendDelete { revision },
                });
                self.quiet_until = now + self.timing.ttl;
                self.standby(now);
            }
            (
                Role::Active { .. },
                Input::Acquired { .. }
                | Input::AcquireRefused
                | Input::LeaseGone
                | Input::HandedToUs { .. }
                | Input::HeldByOther { .. }
                | Input::OwnRecord { .. },
            ) => {
                // Stale answers or our own writes seen by the watch; the next renew decides.
            }
        }
        out
    }

    fn become_active(
        &mut self,
        now: Duration,
        sent_at: Duration,
        revision: u64,
        out: &mut Vec<Action>,
    ) {
        let valid_until = self.timing.valid_until(sent_at);
        self.confirming_handover = false;
        self.sighting = None;
        if now >= valid_until {
            // The answer came too late to act on; the next renew may still save the term,
            // but we start as standby.
            self.standby(now);
            return;
        }
        self.role = Role::Active {
            epoch: revision,
            revision,
            valid_until,
            next_renew_at: sent_at + self.timing.renew_every,
            renewing: None,
        };
        out.push(Action::Activate { epoch: revision });
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fsm_fast_tests.rs"]
mod fast_tests;
