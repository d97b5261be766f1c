//! `ops.api.configs` (pure): the configs one module of one host ran with, as the log's
//! `module_state` events carried them, oldest first, the one it runs now marked. An empty,
//! unknown host or module is an error naming what is known. Read-only: readable with the
//! same NATS permissions as the other views (viewer and up, never agents); the TOML is not
//! redacted, as it is already in the events a viewer reads (module configs hold no secrets).

use opsfleet_proto::api::{ConfigVersion, ConfigsReply, ConfigsRequest, Responder};

use crate::projection::Fleet;

/// Most names listed in an error.
const NAMES_SHOWN: usize = 20;

/// The history of `req.module` on `req.host`, or why there is none.
pub fn configs(
    fleet: &Fleet,
    req: &ConfigsRequest,
    responder: Responder,
) -> Result<ConfigsReply, String> {
    if req.host.is_empty() || req.module.is_empty() {
        return Err("a configs request names a host and a module".to_owned());
    }
    let Some(host) = fleet.host(&req.host) else {
        let known = listed(fleet.hosts().map(|h| h.host.as_str()));
        return Err(format!("unknown host {:?} (known: {known})", req.host));
    };
    let Some(module) = host.modules.get(&req.module) else {
        let known = listed(host.modules.keys().map(String::as_str));
        return Err(format!(
            "host {} has no module {:?} (its modules: {known})",
            req.host, req.module
        ));
    };
    let configs = module
        .configs
        .iter()
        .map(|c| ConfigVersion {
            fingerprint: c.fingerprint.clone(),
            first_seen_unix_ms: c.first_seen_unix_ms,
            last_seen_unix_ms: c.last_seen_unix_ms,
            current: c.fingerprint == module.config_fingerprint,
            toml: c.toml.clone(),
        })
        .collect();
    Ok(ConfigsReply {
        responder,
        host: req.host.clone(),
        module: req.module.clone(),
        current: module.config_fingerprint.clone(),
        configs,
    })
}

fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return "none".to_owned();
    }
    let mut text = names[..names.len().min(NAMES_SHOWN)].join(", ");
    if names.len() > NAMES_SHOWN {
        text.push_str(&format!(" and {} more", names.len() - NAMES_SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::api::LeaderRole;
    use opsfleet_proto::pb::{self, event::Body};
    use opsfleet_proto::EventEnvelope;
    use uuid::Uuid;

    const T0: i64 = 1_790_000_000_000;

    fn responder() -> Responder {
        Responder {
            name: "blue".into(),
            color: "blue".into(),
            role: LeaderRole::Active,
            epoch: 1,
            applied_stream_seq: 0,
            behind: 0,
        }
    }

    fn fleet_with(states: &[(i64, &str)]) -> Fleet {
        let mut fleet = Fleet::new();
        for (i, (at, fp)) in states.iter().enumerate() {
            let ev = EventEnvelope {
                id: Uuid::now_v7(),
                host: "web-01".into(),
                seq: i as u64 + 1,
                time_unix_ms: *at,
                module: "disk".into(),
                incarnation: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
                body: Body::ModuleState(pb::ModuleState {
                    module: "disk".into(),
                    kind: "disk".into(),
                    state: pb::ModuleRunState::Running as i32,
                    config_fingerprint: (*fp).into(),
                    config_toml: format!("type = \"disk\"\n# {fp}\n"),
                    ..Default::default()
                }),
            };
            assert!(fleet.apply(&ev).is_accepted());
        }
        fleet
    }

    fn req(host: &str, module: &str) -> ConfigsRequest {
        ConfigsRequest {
            host: host.into(),
            module: module.into(),
        }
    }

    #[test]
    fn history_is_oldest_first_with_dates_and_the_current_one_marked() {
        let fleet = fleet_with(&[(T0, "aaaa"), (T0 + 10, "bbbb"), (T0 + 20, "aaaa")]);
        let reply = configs(&fleet, &req("web-01", "disk"), responder()).expect("known");
        assert_eq!(reply.current, "aaaa");
        let rows: Vec<(&str, i64, i64, bool)> = reply
            .configs
            .iter()
            .map(|c| {
                (
                    c.fingerprint.as_str(),
                    c.first_seen_unix_ms,
                    c.last_seen_unix_ms,
                    c.current,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("aaaa", T0, T0 + 20, true),
                ("bbbb", T0 + 10, T0 + 10, false)
            ]
        );
        assert!(reply.configs[1].toml.contains("# bbbb"));
    }

    #[test]
    fn unknown_hosts_and_modules_are_refused_naming_what_is_known() {
        let fleet = fleet_with(&[(T0, "aaaa")]);
        let err = configs(&fleet, &req("nosuch", "disk"), responder()).unwrap_err();
        assert_eq!(err, "unknown host \"nosuch\" (known: web-01)");
        let err = configs(&fleet, &req("web-01", "log"), responder()).unwrap_err();
        assert_eq!(err, "host web-01 has no module \"log\" (its modules: disk)");
        let err = configs(&fleet, &req("", ""), responder()).unwrap_err();
        assert!(err.contains("names a host and a module"), "{err}");
    }
}
