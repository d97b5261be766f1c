//! What the example consumer prints and skips (pure): the subject filter, the publisher check,
//! the (host, incarnation, seq) dedup and the one JSON line per event.

use std::collections::BTreeMap;

use opsfleet_proto::pb::event::Body;
use opsfleet_proto::subjects::{parse_any_event_subject, Publisher};
use opsfleet_proto::{body_class, BodyClass, EventEnvelope, COORDINATOR_MODULE};
use serde_json::{json, Value};

/// The server-side filter: `ops.*.<host|*>.<kind|*>` covers the agents' `ops.evt.` and the
/// coordinators' `ops.coord.` spaces, the only two in `OPS_EVENTS`.
pub fn filter_subject(host: Option<&str>, kind: Option<&str>) -> String {
    format!("ops.*.{}.{}", host.unwrap_or("*"), kind.unwrap_or("*"))
}

/// Whether the subject an event came on may carry it: NATS permissions let an agent publish
/// only under `ops.evt.<its host>.`, and only coordinators under `ops.coord.<name>.`, so the
/// subject vouches for the publisher; the envelope must agree with it (what the coordinators'
/// ingest also checks).
pub fn from_its_publisher(subject: &str, ev: &EventEnvelope) -> bool {
    let class = body_class(&ev.body);
    match parse_any_event_subject(subject) {
        Some(Publisher::Agent { host, kind }) => {
            host == ev.host
                && kind == ev.kind()
                && class != BodyClass::Coordinator
                && ev.module != COORDINATOR_MODULE
        }
        Some(Publisher::Coordinator { name, kind }) => {
            name == ev.host
                && kind == ev.kind()
                && ev.module == COORDINATOR_MODULE
                && (class == BodyClass::Coordinator || matches!(ev.body, Body::CommandExpired(_)))
        }
        None => false,
    }
}

/// Drops a copy of an event already seen: per (host, incarnation), `seq` only grows.
#[derive(Debug, Default)]
pub struct Dedup {
    highest: BTreeMap<(String, String), u64>,
}

impl Dedup {
    /// True the first time an event is seen; false for a copy or an older event.
    pub fn first_time(&mut self, ev: &EventEnvelope) -> bool {
        let key = (ev.host.clone(), ev.incarnation.to_string());
        match self.highest.get(&key) {
            Some(&h) if ev.seq <= h => false,
            _ => {
                self.highest.insert(key, ev.seq);
                true
            }
        }
    }
}

/// A few fields of the body (enums as their wire integers); `{}` for the other kinds.
fn summary(body: &Body) -> Value {
    match body {
        Body::Heartbeat(h) => json!({
            "uptime_ms": h.uptime_ms,
            "agent_version": h.agent_version,
            "modules": h.modules.len(),
        }),
        Body::Disk(d) => json!({
            "path": d.path,
            "used_basis_points": d.used_basis_points,
            "level": d.level,
        }),
        Body::ModuleState(m) => json!({ "module": m.module, "state": m.state }),
        Body::Leadership(l) => json!({
            "coordinator": l.coordinator,
            "role": l.role,
            "epoch": l.epoch,
        }),
        _ => json!({}),
    }
}

/// The JSON line printed for one event.
pub fn event_line(stream_seq: u64, subject: &str, ev: &EventEnvelope) -> Value {
    json!({
        "stream_seq": stream_seq,
        "subject": subject,
        "host": ev.host,
        "kind": ev.kind(),
        "module": ev.module,
        "seq": ev.seq,
        "incarnation": ev.incarnation.to_string(),
        "id": ev.id.to_string(),
        "time_unix_ms": ev.time_unix_ms,
        "body": summary(&ev.body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::pb;
    use uuid::Uuid;

    fn ev(host: &str, module: &str, seq: u64, body: Body) -> EventEnvelope {
        EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq,
            time_unix_ms: 1,
            module: module.to_owned(),
            incarnation: Uuid::nil(),
            body,
        }
    }

    #[test]
    fn the_filter_covers_both_spaces() {
        assert_eq!(filter_subject(None, None), "ops.*.*.*");
        assert_eq!(
            filter_subject(Some("web-01"), Some("disk")),
            "ops.*.web-01.disk"
        );
    }

    #[test]
    fn the_subject_must_vouch_for_the_envelope() {
        let hb = Body::Heartbeat(pb::Heartbeat::default());
        let lead = Body::Leadership(pb::LeadershipChanged::default());
        let ok = ev("web-01", "heartbeat", 1, hb.clone());
        assert!(from_its_publisher("ops.evt.web-01.heartbeat", &ok));
        // Another host's name, a wrong kind token, an unknown space.
        assert!(!from_its_publisher("ops.evt.web-02.heartbeat", &ok));
        assert!(!from_its_publisher("ops.evt.web-01.disk", &ok));
        assert!(!from_its_publisher("ops.other.web-01.heartbeat", &ok));
        // A coordinator body from an agent's subject, an agent body from a coordinator's.
        let forged = ev("web-01", "coordinator", 2, lead.clone());
        assert!(!from_its_publisher("ops.evt.web-01.leadership", &forged));
        let real = ev("blue", "coordinator", 2, lead);
        assert!(from_its_publisher("ops.coord.blue.leadership", &real));
        let odd = ev("blue", "coordinator", 3, hb);
        assert!(!from_its_publisher("ops.coord.blue.heartbeat", &odd));
    }

    #[test]
    fn copies_and_older_events_are_dropped_per_incarnation() {
        let hb = || Body::Heartbeat(pb::Heartbeat::default());
        let mut d = Dedup::default();
        assert!(d.first_time(&ev("a", "m", 1, hb())));
        assert!(d.first_time(&ev("a", "m", 2, hb())));
        assert!(!d.first_time(&ev("a", "m", 2, hb())));
        assert!(!d.first_time(&ev("a", "m", 1, hb())));
        assert!(d.first_time(&ev("b", "m", 1, hb())));
        let mut fresh = ev("a", "m", 1, hb());
        fresh.incarnation = Uuid::now_v7();
        assert!(d.first_time(&fresh), "a new incarnation restarts at 1");
    }

    #[test]
    fn a_line_carries_the_envelope_and_a_summary() {
        let disk = Body::Disk(pb::DiskUsage {
            path: "/".into(),
            used_basis_points: 4250,
            level: 2,
            ..Default::default()
        });
        let line = event_line(7, "ops.evt.web-01.disk", &ev("web-01", "disk", 3, disk));
        assert_eq!(line["stream_seq"], 7);
        assert_eq!(line["kind"], "disk");
        assert_eq!(line["seq"], 3);
        assert_eq!(line["body"]["used_basis_points"], 4250);
        assert_eq!(line["body"]["level"], 2);
    }
}
