//! The active/standby groups as the fleet shows them (pure): every service whose heartbeat
//! names a group is a member; its role is what it reported, its fitness comes from its
//! service row (running, health) and its host (liveness at `now`, maintenance).

use std::collections::BTreeMap;

use opsfleet_proto::api::{Liveness, ProbeStatus, ServiceRunState};

use super::decide::{Fitness, Member, Told};
use crate::projection::presence::{declared_lost, liveness};
use crate::projection::{Fleet, HostState, ServiceRow};

/// A member as the fleet shows it, with what the views print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub member: Member,
    pub liveness: Liveness,
    pub state: ServiceRunState,
    pub health: Option<ProbeStatus>,
    pub maintenance: bool,
}

/// How fit a member is, and why not. Pure.
pub fn fitness(row: &ServiceRow, live: Liveness, maintenance: bool) -> (Fitness, String) {
    if live == Liveness::Lost {
        return (Fitness::Unfit, "host lost".to_owned());
    }
    if maintenance {
        return (Fitness::Unfit, "host in maintenance".to_owned());
    }
    if row.state != ServiceRunState::Running {
        return (Fitness::Unfit, format!("service {}", row.state.as_str()));
    }
    if row.is_unhealthy() {
        let h = row.health.map_or("unhealthy", |h| h.as_str());
        return (Fitness::Unfit, format!("service {h}"));
    }
    if live != Liveness::Up {
        return (Fitness::Starting, format!("host {}", live.as_str()));
    }
    if matches!(row.health, Some(ProbeStatus::Starting)) {
        return (Fitness::Starting, "service starting".to_owned());
    }
    (Fitness::Healthy, String::new())
}

fn member(fleet: &Fleet, h: &HostState, name: &str, row: &ServiceRow, now_ms: i64) -> Seen {
    let mut live = liveness(h, fleet.seen_unix_ms(h), now_ms);
    if declared_lost(fleet, h) {
        live = Liveness::Lost;
    }
    let maintenance = fleet.maintenance().contains(&h.host);
    let (fit, why) = fitness(row, live, maintenance);
    Seen {
        member: Member {
            host: h.host.clone(),
            service: name.to_owned(),
            role: Told::parse(&row.role),
            fitness: fit,
            why,
            unhealthy_since_ms: None,
        },
        liveness: live,
        state: row.state,
        health: row.health,
        maintenance,
    }
}

/// Every group with its members (by host, then service), at `now_ms`. Pure.
pub fn groups(fleet: &Fleet, now_ms: i64) -> BTreeMap<String, Vec<Seen>> {
    let mut out: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for h in fleet.hosts() {
        for (name, row) in h.services.iter().filter(|(_, r)| !r.group.is_empty()) {
            (out.entry(row.group.clone()).or_default()).push(member(fleet, h, name, row, now_ms));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitness_goes_by_host_then_service() {
        let running = ServiceRow {
            state: ServiceRunState::Running,
            ..Default::default()
        };
        assert_eq!(fitness(&running, Liveness::Up, false).0, Fitness::Healthy);
        assert_eq!(
            fitness(&running, Liveness::Late, false).0,
            Fitness::Starting
        );
        assert_eq!(
            fitness(&running, Liveness::Lost, false),
            (Fitness::Unfit, "host lost".to_owned())
        );
        assert_eq!(fitness(&running, Liveness::Up, true).0, Fitness::Unfit);
        let failed = ServiceRow {
            state: ServiceRunState::Failed,
            ..Default::default()
        };
        assert_eq!(
            fitness(&failed, Liveness::Up, false),
            (Fitness::Unfit, "service failed".to_owned())
        );
        let degraded = ServiceRow {
            health: Some(ProbeStatus::Degraded),
            ..running.clone()
        };
        assert_eq!(
            fitness(&degraded, Liveness::Up, false),
            (Fitness::Unfit, "service degraded".to_owned())
        );
        let starting = ServiceRow {
            health: Some(ProbeStatus::Starting),
            ..running
        };
        assert_eq!(fitness(&starting, Liveness::Up, false).0, Fitness::Starting);
    }
}
