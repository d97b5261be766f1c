//! The election as a pure state machine: inputs are CAS results, watch hints, the active's
//! liveness announcements and ticks, each with `now` on the local monotonic clock; outputs are
//! the KV requests to send, the announcements to publish and the moments to start or stop
//! acting. Leadership is decided by CAS results only; the watch and the announcements only say
//! when to try. An active coordinator treats its lease as ending at (send time of its last
//! successful CAS + acting window) and stops acting then, renewed or not. A standby that has
//! heard no announcement and seen no new revision for `takeover_after` takes the lease by a CAS
//! on the revision it last saw; the acting window is shorter than that, so the old active has
//! stopped before such a CAS can succeed (docs/ARCHITECTURE.md, "Fast takeover").

use std::time::Duration;

pub use super::timing::LeaseTiming;

/// The lease as a standby last saw it: a revision, and when it first saw that revision (on
/// its own clock, so at or after the write that made it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub revision: u64,
    pub at: Duration,
}

/// A CAS a standby has in flight that makes it active when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirming {
    /// A handover to us, confirmed by a renew.
    Handover,
    /// A takeover of a silent holder's revision.
    Takeover,
}

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
        /// When to announce ourselves next.
        next_announce_at: Duration,
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
    /// A request failed without an answer (timeout, disconnect): outcome unknown.
    RequestFailed,
    /// The watch saw the lease deleted, purged or aged out.
    LeaseGone,
    /// The watch saw the active hand the lease to us with `revision`.
    HandedToUs { revision: u64 },
    /// The watch saw another coordinator write the lease at `revision` (a term of theirs is
    /// running).
    HeldByOther { revision: u64 },
    /// The watch saw a write of ours at `revision`.
    OwnWrite { revision: u64 },
    /// Another coordinator announced itself active at lease `revision`.
    Alive { revision: u64 },
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
    /// `delete(key)` expecting `revision`, so the standby can take over at once.
    SendDelete { revision: u64 },
    /// `update(key, record naming `to`, revision)`: hand the lease to `to`.
    SendHandover { to: String, revision: u64 },
    /// `update(key, our record, revision)` on a silent holder's revision; answer with
    /// Renewed / RenewRefused / RequestFailed.
    SendTakeover { revision: u64 },
    /// Publish our liveness announcement (term `epoch`, lease at `revision`).
    Announce { epoch: u64, revision: u64 },
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

/// One coordinator's view of the election.
#[derive(Debug, Clone)]
pub struct Election {
    timing: LeaseTiming,
    role: Role,
    /// A standby's CAS in flight that makes it active when it succeeds.
    confirming: Option<Confirming>,
    /// After a release we do not try to take the lease back before this instant.
    quiet_until: Duration,
    /// The newest lease revision seen (none when the lease is gone or was never seen).
    observed: Option<Observed>,
    /// When the holder last announced itself (or the lease was last seen written).
    life_at: Duration,
}

impl Election {
    pub fn new(timing: LeaseTiming) -> Self {
        Election {
            timing,
            role: Role::Standby {
                next_try_at: Duration::ZERO,
                acquiring: false,
            },
            confirming: None,
            quiet_until: Duration::ZERO,
            observed: None,
            life_at: Duration::ZERO,
        }
    }

    /// The newest lease revision seen, and when.
    pub fn observed(&self) -> Option<Observed> {
        self.observed
    }

    /// Notes that the lease was seen at `revision` at `now`: a newer revision is a sign of
    /// life and restarts the silence; the same one seen again changes nothing.
    fn observe(&mut self, now: Duration, revision: u64) -> bool {
        match self.observed {
            Some(o) if o.revision >= revision => o.revision == revision,
            _ => {
                self.observed = Some(Observed { revision, at: now });
                self.life_at = self.life_at.max(now);
                true
            }
        }
    }

    /// Whether a standby may take the lease over from a silent holder at `now`: the revision
    /// it last saw has stood for `takeover_after`, and nothing announced itself meanwhile.
    fn takeover_due(&self, now: Duration) -> Option<u64> {
        let after = self.timing.takeover_after?;
        let o = self.observed?;
        (now >= o.at + after && now >= self.life_at + after && now >= self.quiet_until)
            .then_some(o.revision)
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
        self.role = Role::Standby {
            next_try_at: (now + self.timing.ttl / 3).max(self.quiet_until),
            acquiring: false,
        };
        self.confirming = None;
    }

    /// Advances the machine. Pure: the result depends only on the state, `now` and `input`.
    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if let (Role::Standby { .. }, Input::HandedToUs { revision }) = (&self.role, &input) {
            self.observe(now, *revision);
        }
        let takeover_due = self.takeover_due(now);
        match (&mut self.role, input) {
            // ---- standby ----
            (
                Role::Standby {
                    next_try_at,
                    acquiring,
                },
                Input::Tick,
            ) => {
                if !*acquiring {
                    if let Some(revision) = takeover_due {
                        *acquiring = true;
                        self.confirming = Some(Confirming::Takeover);
                        out.push(Action::SendTakeover { revision });
                    } else if now >= *next_try_at && now >= self.quiet_until {
                        *acquiring = true;
                        out.push(Action::SendCreate);
                    }
                }
            }
            (Role::Standby { acquiring, .. }, Input::LeaseGone) => {
                self.observed = None;
                if !*acquiring && now >= self.quiet_until {
                    *acquiring = true;
                    out.push(Action::SendCreate);
                }
            }
            (Role::Standby { acquiring, .. }, Input::HandedToUs { revision }) => {
                // Confirm by CAS before acting: only a successful renew makes us active.
                if !*acquiring {
                    *acquiring = true;
                    self.confirming = Some(Confirming::Handover);
                    out.push(Action::SendRenew { revision });
                }
            }
            (Role::Standby { .. }, Input::Acquired { sent_at, revision }) => {
                self.become_active(now, sent_at, revision, &mut out);
            }
            (Role::Standby { .. }, Input::Renewed { sent_at, revision })
                if self.confirming.is_some() =>
            {
                self.become_active(now, sent_at, revision, &mut out);
            }
            (Role::Standby { .. }, Input::RenewRefused) => {
                // The revision we tried moved on: wait for the watch to show the new one.
                self.observed = None;
                self.standby(now);
            }
            (Role::Standby { .. }, Input::AcquireRefused | Input::RequestFailed) => {
                self.standby(now);
            }
            (Role::Standby { .. }, Input::Release { .. }) => {
                // Nothing held; just stay quiet for a lease so a failover target can win.
                self.quiet_until = now + self.timing.ttl;
                self.standby(now);
            }
            (Role::Standby { .. }, Input::Renewed { .. }) => {}
            (Role::Standby { .. }, Input::HeldByOther { revision }) => {
                // Someone else took over after our release: we may compete again when it goes.
                self.quiet_until = Duration::ZERO;
                self.observe(now, revision);
            }
            (Role::Standby { .. }, Input::OwnWrite { revision }) => {
                // A write of ours seen late (a renew answered after we stepped down).
                self.observe(now, revision);
            }
            (Role::Standby { .. }, Input::Alive { revision }) => {
                // An announcement of an older revision than we saw comes from a deposed
                // holder: it is no sign of life of the current one.
                if self.observe(now, revision) {
                    self.life_at = now;
                }
            }

            // ---- active ----
            (
                Role::Active {
                    epoch,
                    revision,
                    valid_until,
                    next_renew_at,
                    renewing,
                    next_announce_at,
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
                    // As a standby we may take our own silent lease back like anyone else.
                    self.observe(now, revision);
                    return out;
                }
                if renewing.is_none() && now >= *next_renew_at {
                    *renewing = Some(now);
                    out.push(Action::SendRenew {
                        revision: *revision,
                    });
                }
                if self.timing.takeover_after.is_some() && now >= *next_announce_at {
                    *next_announce_at = now + self.timing.alive_every;
                    out.push(Action::Announce {
                        epoch: *epoch,
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
                }
            }
            (Role::Active { epoch, .. }, Input::RenewRefused) => {
                let epoch = *epoch;
                out.push(Action::Deactivate {
                    epoch,
                    reason: StepDown::LeaseLost,
                });
                self.standby(now);
                // Someone else wrote the lease; its revision comes through the watch.
                self.observed = None;
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
                self.observed = None;
            }
            (
                Role::Active { .. },
                Input::Acquired { .. }
                | Input::AcquireRefused
                | Input::LeaseGone
                | Input::HandedToUs { .. }
                | Input::HeldByOther { .. }
                | Input::OwnWrite { .. }
                | Input::Alive { .. },
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
        self.confirming = None;
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
            next_announce_at: now,
        };
        self.observed = None;
        out.push(Action::Activate { epoch: revision });
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
