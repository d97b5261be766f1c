//! The pure rules of a failover's handover (no second active while the old one can still
//! serve): whether the new active must wait for the old one to take the standby role, how that
//! wait stands (its `service_role standby` command in the ledger, its heartbeat's role, how
//! long it has waited), and since when a member has not been healthy in its current role.

use std::collections::HashMap;
use std::time::Duration;

use opsfleet_proto::api::{CommandState, Liveness, ServiceRunState};

use super::decide::{Fitness, Ident, Member, Told};

/// Whether the new active must wait for the old one to be standby first: yes, unless the old
/// one cannot serve anyway (its host lost, or its service down: stopped or failed). One that
/// is starting or stopping (restarting) may serve again as active: it is waited for.
pub fn must_wait(liveness: Liveness, state: ServiceRunState) -> bool {
    liveness != Liveness::Lost
        && !matches!(state, ServiceRunState::Stopped | ServiceRunState::Failed)
}

/// Where the old active's standby stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standby {
    /// Not yet: keep waiting.
    Waiting,
    /// Its command completed: the new one may be active.
    Done,
    /// Its command failed (or was rejected, or expired), or it waited `bound`: the failover
    /// fails and the old one keeps the role.
    Failed(String),
}

/// How the old active's standby stands: `command` is its `service_role standby` command's
/// state and detail in the ledger (`None` while the ledger has not seen it), `waited` how long
/// since it was told. Its heartbeat's role is not enough: the agent reports `standby` as soon
/// as the role is written, before the restart (`apply = "restart"`) that makes the app see it,
/// so only the command's completion says the old one has stopped serving as active.
pub fn standby(
    host: &str,
    command: Option<(CommandState, &str)>,
    waited: Duration,
    bound: Duration,
) -> Standby {
    match command {
        Some((CommandState::Completed, _)) => return Standby::Done,
        Some((state, detail)) if state.is_final() => {
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            };
            return Standby::Failed(format!(
                "{host} did not take the standby role (its command {}{detail}); it keeps the active role",
                state.as_str()
            ));
        }
        _ => {}
    }
    if waited >= bound {
        let within = humantime::format_duration(bound);
        return Standby::Failed(format!(
            "{host} did not take the standby role within {within}; it keeps the active role"
        ));
    }
    Standby::Waiting
}

/// Since when `m` has not been healthy (the caller's clock), kept per member in `memory` with
/// the role it had then: a member whose role changed starts afresh, so one that just became
/// active gets its whole `failover_after` before it is failed over from. `None` when healthy.
pub fn unhealthy_since(
    memory: &mut HashMap<Ident, (Told, i64)>,
    m: &Member,
    now_ms: i64,
) -> Option<i64> {
    let id = Ident::of(m);
    if m.fitness >= Fitness::Healthy {
        memory.remove(&id);
        return None;
    }
    let entry = memory.entry(id).or_insert((m.role, now_ms));
    if entry.0 != m.role {
        *entry = (m.role, now_ms);
    }
    Some(entry.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::decide::{decide, Decision};

    const BOUND: Duration = Duration::from_secs(60);

    #[test]
    fn waits_only_for_an_old_active_that_can_serve() {
        assert!(must_wait(Liveness::Up, ServiceRunState::Running));
        assert!(must_wait(Liveness::Late, ServiceRunState::Running));
        assert!(must_wait(Liveness::Up, ServiceRunState::Stopping));
        assert!(must_wait(Liveness::Up, ServiceRunState::Starting));
        assert!(!must_wait(Liveness::Lost, ServiceRunState::Running));
        assert!(!must_wait(Liveness::Up, ServiceRunState::Failed));
        assert!(!must_wait(Liveness::Up, ServiceRunState::Stopped));
    }

    #[test]
    fn standby_is_done_only_when_its_command_completed() {
        let short = Duration::from_secs(1);
        // Still restarting as active: the command is under way, the heartbeat says active.
        for state in [CommandState::Issued, CommandState::Accepted] {
            let s = standby("a", Some((state, "")), short, BOUND);
            assert_eq!(s, Standby::Waiting);
        }
        assert_eq!(standby("a", None, short, BOUND), Standby::Waiting);
        let done = Some((CommandState::Completed, ""));
        assert_eq!(standby("a", done, short, BOUND), Standby::Done);
    }

    #[test]
    fn standby_fails_on_a_failed_command_or_the_bound() {
        let short = Duration::from_secs(1);
        for state in [
            CommandState::Failed,
            CommandState::Rejected,
            CommandState::Expired,
        ] {
            let s = standby("a", Some((state, "restart failed")), short, BOUND);
            let Standby::Failed(why) = s else {
                panic!("{state:?}: {s:?}");
            };
            assert!(
                why.contains("restart failed") && why.contains(state.as_str()),
                "{why}"
            );
        }
        let s = standby("a", None, BOUND, BOUND);
        assert!(
            matches!(s, Standby::Failed(ref why) if why.contains("within 1m")),
            "{s:?}"
        );
        let accepted = Some((CommandState::Accepted, ""));
        let s = standby("a", accepted, BOUND * 2, BOUND);
        assert!(matches!(s, Standby::Failed(_)), "{s:?}");
    }

    fn member(role: Told, fitness: Fitness) -> Member {
        Member {
            host: "a".to_owned(),
            service: "router".to_owned(),
            role,
            fitness,
            why: String::new(),
            unhealthy_since_ms: None,
        }
    }

    #[test]
    fn unhealthy_since_restarts_when_the_role_changes() {
        let mut memory = HashMap::new();
        let starting = member(Told::Standby, Fitness::Starting);
        assert_eq!(unhealthy_since(&mut memory, &starting, 1_000), Some(1_000));
        assert_eq!(unhealthy_since(&mut memory, &starting, 50_000), Some(1_000));
        // It became active while still starting: its time starts now.
        let active = member(Told::Active, Fitness::Starting);
        assert_eq!(unhealthy_since(&mut memory, &active, 60_000), Some(60_000));
        assert_eq!(unhealthy_since(&mut memory, &active, 61_000), Some(60_000));
        let healthy = member(Told::Active, Fitness::Healthy);
        assert_eq!(unhealthy_since(&mut memory, &healthy, 62_000), None);
        assert!(memory.is_empty());
    }

    #[test]
    fn a_member_just_made_active_is_not_failed_back_at_once() {
        let after = 10_000;
        let mut memory = HashMap::new();
        let mut standby_b = member(Told::Standby, Fitness::Healthy);
        standby_b.host = "b".to_owned();
        // `a` has been starting as a standby for a long while, then becomes active.
        let old = member(Told::Standby, Fitness::Starting);
        unhealthy_since(&mut memory, &old, 0);
        let mut a = member(Told::Active, Fitness::Starting);
        a.unhealthy_since_ms = unhealthy_since(&mut memory, &a, 100_000);
        let members = [a.clone(), standby_b.clone()];
        assert_eq!(decide(&members, 100_000, after, None), Decision::Nothing);
        // Still starting `failover_after` later: now it is overdue.
        a.unhealthy_since_ms = unhealthy_since(&mut memory, &a, 110_000);
        let members = [a, standby_b];
        assert!(matches!(
            decide(&members, 110_000, after, None),
            Decision::Failover { .. }
        ));
    }
}
