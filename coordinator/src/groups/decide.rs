//! The pure decision of one active/standby group: given its members (their role, how fit they
//! are, since when the ones not healthy have been so) and `now`, what to do — nothing, make
//! one active (none is), fail over from the active to a fitter standby (the active has not been
//! healthy for `failover_after`: failed, unhealthy, lost, in maintenance, or crash-looping
//! through `starting`), or tell the extra actives standby (more than one reports active).
//! Never decides a second active; never picks an unfit member as the new active.

/// How fit a member is to be the active one, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fitness {
    /// Its service is not running, or unhealthy, or its host lost or in maintenance.
    Unfit,
    /// Running, its probes not decided yet (or unknown host liveness).
    Starting,
    /// Running and ready (or without probes), its host up.
    Healthy,
}

/// What a member told (its heartbeat's role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    Active,
    Standby,
    /// No role reported yet.
    Unknown,
}

impl Told {
    pub fn parse(text: &str) -> Told {
        match text {
            "active" => Told::Active,
            "standby" => Told::Standby,
            _ => Told::Unknown,
        }
    }
}

/// One member of a group: a service on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub host: String,
    pub service: String,
    pub role: Told,
    pub fitness: Fitness,
    /// Why it is unfit (`service failed`, `host lost`); empty when it is not.
    pub why: String,
    /// When it was first seen not healthy (the caller's clock), while it is not.
    pub unhealthy_since_ms: Option<i64>,
}

/// A member, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ident {
    pub host: String,
    pub service: String,
}

impl Ident {
    pub fn of(m: &Member) -> Ident {
        Ident {
            host: m.host.clone(),
            service: m.service.clone(),
        }
    }
}

/// What to do with a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// No member is active: make `to` active.
    Activate {
        to: Ident,
        reason: String,
    },
    /// The active `from` has been unfit too long: standby to it, active to `to`.
    Failover {
        from: Ident,
        to: Ident,
        reason: String,
    },
    /// More than one reports active: `keep` stays, each of `demote` is told standby.
    Demote {
        keep: Ident,
        demote: Vec<Ident>,
    },
}

/// Ordering of candidates: fitter first, then `preferred` (the last failover's target), then
/// by host and service name.
fn better<'m>(
    members: impl Iterator<Item = &'m Member>,
    preferred: Option<&str>,
) -> Option<&'m Member> {
    members.min_by(|a, b| {
        (b.fitness.cmp(&a.fitness))
            .then_with(|| {
                (Some(b.host.as_str()) == preferred).cmp(&(Some(a.host.as_str()) == preferred))
            })
            .then_with(|| (&a.host, &a.service).cmp(&(&b.host, &b.service)))
    })
}

/// The best member fitter than `above` to become active, other than `except`.
fn target<'m>(
    members: &'m [Member],
    except: Option<&Member>,
    above: Fitness,
    preferred: Option<&str>,
) -> Option<&'m Member> {
    better(
        members
            .iter()
            .filter(|m| m.fitness > above)
            .filter(|m| except.is_none_or(|e| Ident::of(e) != Ident::of(m))),
        preferred,
    )
}

/// The decision for one group at `now` (the caller's clock, as `unhealthy_since_ms`).
/// `preferred`: the host the group last failed over to, which wins ties.
pub fn decide(
    members: &[Member],
    now_ms: i64,
    failover_after_ms: i64,
    preferred: Option<&str>,
) -> Decision {
    let actives: Vec<&Member> = members.iter().filter(|m| m.role == Told::Active).collect();
    match actives.as_slice() {
        [] => match target(members, None, Fitness::Unfit, preferred) {
            Some(t) => Decision::Activate {
                to: Ident::of(t),
                reason: "no member is active".to_owned(),
            },
            None => Decision::Nothing,
        },
        [active] => {
            let overdue = active.fitness < Fitness::Healthy
                && active
                    .unhealthy_since_ms
                    .is_some_and(|since| now_ms.saturating_sub(since) >= failover_after_ms);
            if !overdue {
                return Decision::Nothing;
            }
            match target(members, Some(active), active.fitness, preferred) {
                Some(t) => Decision::Failover {
                    from: Ident::of(active),
                    to: Ident::of(t),
                    reason: format!(
                        "active {} on {}: {}",
                        active.service,
                        active.host,
                        if active.why.is_empty() {
                            "not ready"
                        } else {
                            &active.why
                        }
                    ),
                },
                None => Decision::Nothing,
            }
        }
        several => {
            let keep = better(several.iter().copied(), preferred).map(Ident::of);
            let Some(keep) = keep else {
                return Decision::Nothing;
            };
            let demote = several
                .iter()
                .map(|m| Ident::of(m))
                .filter(|i| *i != keep)
                .collect();
            Decision::Demote { keep, demote }
        }
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
