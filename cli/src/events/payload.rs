//! `opsctl events -o json`'s `payload`: an event body's own fields as JSON (names as in
//! `event.proto`), with states, levels and roles by the names the API uses. Pure.

use opsfleet_proto::api::{
    AlertState, CertLevel, DiskLevel, LeaderRole, ModuleState, NotifyOutcome, ProbeStatus,
    SentinelStatus, ServiceRunState,
};
use opsfleet_proto::pb::event::Body;
use serde_json::Value;

/// The fields of `body`'s message as a JSON object (the oneof's tag dropped: `kind` says it),
/// with states, levels and roles by name (`"warn"`, `"firing"`) as the API spells them.
pub fn payload(body: &Body) -> Value {
    let mut value = match serde_json::to_value(body) {
        Ok(Value::Object(tagged)) if tagged.len() == 1 => {
            tagged.into_iter().next().map_or(Value::Null, |(_, v)| v)
        }
        Ok(other) => other,
        Err(_) => Value::Null,
    };
    name_states(body, &mut value);
    value
}

/// Replaces the wire integers of `body`'s enum fields in `payload` by their names.
fn name_states(body: &Body, payload: &mut Value) {
    fn set(p: &mut Value, field: &str, name: &str) {
        if let Some(v) = p.get_mut(field) {
            *v = Value::from(name);
        }
    }
    match body {
        Body::Heartbeat(h) => {
            for (i, m) in h.modules.iter().enumerate() {
                set(
                    &mut payload["modules"][i],
                    "state",
                    ModuleState::from_wire(m.state).as_str(),
                );
            }
            for (i, c) in h.health.iter().enumerate() {
                let p = &mut payload["health"][i];
                set(p, "status", ProbeStatus::from_wire(c.status).as_str());
                set(p, "cert_level", CertLevel::from_wire(c.cert_level).as_str());
            }
            for (i, s) in h.services.iter().enumerate() {
                let p = &mut payload["services"][i];
                set(p, "state", ServiceRunState::from_wire(s.state).as_str());
                set(p, "health", ProbeStatus::from_wire(s.health).as_str());
            }
        }
        Body::Disk(d) => {
            set(payload, "level", DiskLevel::from_wire(d.level).as_str());
            set(
                payload,
                "previous_level",
                DiskLevel::from_wire(d.previous_level).as_str(),
            );
        }
        Body::ModuleState(m) => set(payload, "state", ModuleState::from_wire(m.state).as_str()),
        Body::Sentinel(s) => {
            set(
                payload,
                "status",
                SentinelStatus::from_wire(s.status).as_str(),
            );
            set(
                payload,
                "previous",
                SentinelStatus::from_wire(s.previous).as_str(),
            );
        }
        Body::Health(h) => {
            set(payload, "status", ProbeStatus::from_wire(h.status).as_str());
            set(
                payload,
                "previous",
                ProbeStatus::from_wire(h.previous).as_str(),
            );
            set(
                payload,
                "cert_level",
                CertLevel::from_wire(h.cert_level).as_str(),
            );
        }
        Body::Service(s) => {
            set(
                payload,
                "state",
                ServiceRunState::from_wire(s.state).as_str(),
            );
            set(payload, "health", ProbeStatus::from_wire(s.health).as_str());
        }
        Body::Leadership(l) => set(payload, "role", LeaderRole::from_wire(l.role).as_str()),
        Body::AlertTransition(a) => {
            set(payload, "state", AlertState::from_wire(a.state).as_str());
            set(
                payload,
                "previous",
                AlertState::from_wire(a.previous).as_str(),
            );
        }
        Body::NotificationSent(n) => {
            set(
                payload,
                "outcome",
                NotifyOutcome::from_wire(n.outcome).as_str(),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ev;
    use super::super::EventLine;
    use opsfleet_proto::pb::{self, event::Body};

    #[test]
    fn service_events_name_their_state() {
        let e = ev(
            "web-01",
            "app",
            Body::Service(pb::ServiceState {
                service: "app".into(),
                manager: "process".into(),
                state: pb::ServiceRunState::Failed as i32,
                restarts: 2,
                exit_detail: "exited with status 1".into(),
                ..Default::default()
            }),
        );
        let v = serde_json::to_value(EventLine::new(9, &e)).expect("json");
        assert_eq!(v["kind"], "service");
        assert_eq!(v["payload"]["state"], "failed");
        assert_eq!(v["payload"]["restarts"], 2);
        assert_eq!(
            super::super::agent(&e.body),
            "app failed pid 0, 2 restart(s): exited with status 1"
        );
    }

    #[test]
    fn json_lines_carry_the_body_fields() {
        let e = ev(
            "db-01",
            "nightly",
            Body::BackupCompleted(pb::BackupCompleted {
                job: "nightly".into(),
                run_id: "r1".into(),
                archive: "nightly-20261205.tar.gz".into(),
                sha256: "ab12".into(),
                size_bytes: 4096,
                files: 3,
                ..Default::default()
            }),
        );
        let v = serde_json::to_value(EventLine::new(9, &e)).expect("json");
        assert_eq!(v["kind"], "backup_completed");
        assert_eq!(v["payload"]["archive"], "nightly-20261205.tar.gz");
        assert_eq!(v["payload"]["sha256"], "ab12");
        assert_eq!(v["payload"]["size_bytes"], 4096);
        assert_eq!(v["payload"]["files"], 3);
        let disk = ev(
            "web-01",
            "disk",
            Body::Disk(pb::DiskUsage {
                path: "/".into(),
                level: pb::DiskLevel::Warn as i32,
                previous_level: pb::DiskLevel::Ok as i32,
                ..Default::default()
            }),
        );
        let v = serde_json::to_value(EventLine::new(10, &disk)).expect("json");
        assert_eq!(v["payload"]["level"], "warn");
        assert_eq!(v["payload"]["previous_level"], "ok");
        let hb = ev(
            "web-01",
            "heartbeat",
            Body::Heartbeat(pb::Heartbeat {
                modules: vec![pb::ModuleStatus {
                    name: "disk".into(),
                    state: pb::ModuleRunState::Paused as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        );
        let v = serde_json::to_value(EventLine::new(11, &hb)).expect("json");
        assert_eq!(v["payload"]["modules"][0]["state"], "paused");
        assert_eq!(v["payload"]["modules"][0]["name"], "disk");
    }
}
