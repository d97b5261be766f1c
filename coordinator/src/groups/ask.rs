//! An operator's failover of a group (`ops.api.service_failover`): the request as the driver
//! receives it, its answer, why it is refused, and the pure check of a request against the
//! group's members (known group, `--to` a member fit to be active, a standby to move to).

use tokio::sync::{mpsc, oneshot};

use super::decide::{Fitness, Ident, Member, Told};
use crate::acting::{Closed, Refusable};

/// A failover asked of the driver.
#[derive(Debug)]
pub struct Ask {
    pub group: String,
    pub to: Option<String>,
    pub drill: bool,
    pub requested_by: String,
    pub reply: oneshot::Sender<Result<Done, AskError>>,
}

impl Refusable for Ask {
    fn refuse(self, why: Closed) {
        let _ = self.reply.send(Err(match why {
            Closed::NotActive => AskError::NotActive,
            Closed::CatchingUp => AskError::CatchingUp,
        }));
    }
}

/// The API's way to the driver.
#[derive(Debug, Clone)]
pub struct GroupsHandle {
    tx: mpsc::Sender<Ask>,
}

impl GroupsHandle {
    pub(super) fn new(tx: mpsc::Sender<Ask>) -> Self {
        GroupsHandle { tx }
    }

    /// A failover of `group`; answered when it ends (or is refused).
    pub async fn failover(
        &self,
        group: String,
        to: Option<String>,
        drill: bool,
        requested_by: String,
    ) -> Result<Done, AskError> {
        let (reply, rx) = oneshot::channel();
        let ask = Ask {
            group,
            to,
            drill,
            requested_by,
            reply,
        };
        self.tx.send(ask).await.map_err(|_| AskError::NotActive)?;
        rx.await.unwrap_or(Err(AskError::NotActive))
    }
}

/// A finished failover: the new active reported its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub group: String,
    pub service: String,
    pub from: String,
    pub to: String,
    pub took_ms: u64,
    pub drill: bool,
    pub epoch: u64,
}

/// Why a failover was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("this coordinator is not active; the active one answers")]
    NotActive,
    #[error(
        "this coordinator is active but still catching up with the stream; try again in a moment"
    )]
    CatchingUp,
    #[error("unknown group {group:?} (known: {known})")]
    UnknownGroup { group: String, known: String },
    #[error("host {host} is not a member of group {group} (members: {members})")]
    NotMember {
        host: String,
        group: String,
        members: String,
    },
    #[error("{host} cannot take group {group}'s active role: {why}")]
    Unfit {
        host: String,
        group: String,
        why: String,
    },
    #[error("{host} is already the active member of group {group}")]
    AlreadyActive { host: String, group: String },
    #[error("group {group} has no active member to drill a failover from")]
    NothingToDrill { group: String },
    #[error("group {group} has no standby fit to take the active role ({members})")]
    NoStandby { group: String, members: String },
    #[error("a failover of group {group} is already running (to {to})")]
    Running { group: String, to: String },
    #[error("the failover of group {group} to {to} failed: {detail}")]
    Failed {
        group: String,
        to: String,
        detail: String,
    },
}

/// How a member shows in an error: `host (role, fitness)`.
fn shown(members: &[Member]) -> String {
    let text: Vec<String> = members
        .iter()
        .map(|m| {
            let role = match m.role {
                Told::Active => "active",
                Told::Standby => "standby",
                Told::Unknown => "no role",
            };
            let fit = if m.why.is_empty() {
                "healthy"
            } else {
                m.why.as_str()
            };
            format!("{} ({role}, {fit})", m.host)
        })
        .collect();
    if text.is_empty() {
        "none".to_owned()
    } else {
        text.join(", ")
    }
}

/// What a request moves: from the active member (if any) to `to`. Pure.
pub fn plan(
    group: &str,
    members: Option<&[Member]>,
    known: &[String],
    to: Option<&str>,
    drill: bool,
) -> Result<(Option<Ident>, Ident), AskError> {
    let Some(members) = members else {
        return Err(AskError::UnknownGroup {
            group: group.to_owned(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        });
    };
    let active = members.iter().find(|m| m.role == Told::Active);
    if drill && active.is_none() {
        return Err(AskError::NothingToDrill {
            group: group.to_owned(),
        });
    }
    let target = match to {
        Some(host) => {
            let m = members
                .iter()
                .find(|m| m.host == host)
                .ok_or_else(|| AskError::NotMember {
                    host: host.to_owned(),
                    group: group.to_owned(),
                    members: shown(members),
                })?;
            if m.role == Told::Active {
                return Err(AskError::AlreadyActive {
                    host: host.to_owned(),
                    group: group.to_owned(),
                });
            }
            // An operator's target must be ready now: a member only starting may be a
            // crash-looping app between its restart and its first failed probe.
            if m.fitness != Fitness::Healthy {
                return Err(AskError::Unfit {
                    host: host.to_owned(),
                    group: group.to_owned(),
                    why: m.why.clone(),
                });
            }
            m
        }
        None => members
            .iter()
            .filter(|m| m.role != Told::Active && m.fitness > Fitness::Unfit)
            .max_by(|a, b| a.fitness.cmp(&b.fitness).then_with(|| b.host.cmp(&a.host)))
            .ok_or_else(|| AskError::NoStandby {
                group: group.to_owned(),
                members: shown(members),
            })?,
    };
    Ok((active.map(Ident::of), Ident::of(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &str, role: Told, fitness: Fitness, why: &str) -> Member {
        Member {
            host: host.to_owned(),
            service: "router".to_owned(),
            role,
            fitness,
            why: why.to_owned(),
            unhealthy_since_ms: None,
        }
    }

    #[test]
    fn refusals_name_what_is_known() {
        let members = vec![
            m("a", Told::Active, Fitness::Healthy, ""),
            m("b", Told::Standby, Fitness::Healthy, ""),
            m("c", Told::Standby, Fitness::Unfit, "host lost"),
        ];
        let known = vec!["edge".to_owned()];
        let err = plan("core", None, &known, None, false).unwrap_err();
        assert_eq!(err.to_string(), "unknown group \"core\" (known: edge)");
        let err = plan("edge", Some(&members), &known, Some("z"), false).unwrap_err();
        assert!(matches!(err, AskError::NotMember { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("a (active, healthy), b (standby, healthy), c (standby, host lost)"));
        let err = plan("edge", Some(&members), &known, Some("c"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c cannot take group edge's active role: host lost"
        );
        // A member only starting (a restarted app before its first probe) is no target yet.
        let starting = vec![
            m("a", Told::Active, Fitness::Healthy, ""),
            m("d", Told::Standby, Fitness::Starting, "service starting"),
        ];
        let err = plan("edge", Some(&starting), &known, Some("d"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "d cannot take group edge's active role: service starting"
        );
        let err = plan("edge", Some(&members), &known, Some("a"), true).unwrap_err();
        assert!(matches!(err, AskError::AlreadyActive { .. }));
        let no_active = vec![m("b", Told::Standby, Fitness::Healthy, "")];
        let err = plan("edge", Some(&no_active), &known, None, true).unwrap_err();
        assert!(matches!(err, AskError::NothingToDrill { .. }));
        let lonely = vec![
            m("a", Told::Active, Fitness::Healthy, ""),
            m("c", Told::Standby, Fitness::Unfit, "service failed"),
        ];
        let err = plan("edge", Some(&lonely), &known, None, false).unwrap_err();
        assert!(matches!(err, AskError::NoStandby { .. }));
    }

    #[test]
    fn the_fittest_standby_is_the_default_target() {
        let members = vec![
            m("a", Told::Active, Fitness::Healthy, ""),
            m("c", Told::Standby, Fitness::Healthy, ""),
            m("b", Told::Standby, Fitness::Starting, ""),
            m("d", Told::Standby, Fitness::Healthy, ""),
        ];
        let (from, to) = plan("edge", Some(&members), &[], None, true).expect("planned");
        assert_eq!(from.map(|f| f.host), Some("a".to_owned()));
        assert_eq!(to.host, "c");
        let (_, to) = plan("edge", Some(&members), &[], Some("d"), false).expect("planned");
        assert_eq!(to.host, "d");
        // Named, a member only starting is refused: it may be crash-looping.
        let err = plan("edge", Some(&members), &[], Some("b"), false).unwrap_err();
        assert!(matches!(err, AskError::Unfit { .. }), "{err}");
    }
}
