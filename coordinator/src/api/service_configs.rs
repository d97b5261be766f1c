//! `ops.api.service_configs`: the snapshots of the services' declared config files per host,
//! service and file (oldest first), filtered by host glob, service and file, paged.

use opsfleet_proto::api::{
    Responder, ServiceConfigView, ServiceConfigsReply, ServiceConfigsRequest,
};

use super::{page, Cursor, View};
use crate::glob::glob_match;
use crate::projection::Fleet;

/// The row key of a snapshot within its host: ordered like the fold's maps (a tab sorts
/// before every character of a service name or a path).
fn row_key(service: &str, file: &str, idx: usize) -> String {
    format!("{service}\t{file}\t{idx:04}")
}

/// One page of snapshots matching `req`, and the next cursor.
pub fn service_configs(
    fleet: &Fleet,
    req: &ServiceConfigsRequest,
) -> (Vec<ServiceConfigView>, Option<String>) {
    let wanted = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
    let rows = fleet
        .hosts()
        .filter(|h| req.host.as_deref().is_none_or(|p| glob_match(p, &h.host)))
        .flat_map(move |h| {
            (h.service_configs.iter())
                .filter(move |(svc, _)| wanted(&req.service, svc))
                .flat_map(move |(svc, c)| {
                    (c.files.iter())
                        .filter(move |(file, _)| wanted(&req.file, file))
                        .flat_map(move |(file, hist)| {
                            hist.snapshots.iter().enumerate().map(move |(i, r)| {
                                let view = ServiceConfigView {
                                    host: h.host.clone(),
                                    service: svc.clone(),
                                    file: file.clone(),
                                    fingerprint: r.fingerprint.clone(),
                                    previous_fingerprint: r.previous_fingerprint.clone(),
                                    size: r.size,
                                    cause: r.cause.clone(),
                                    command_id: r.command_id.clone(),
                                    at_unix_ms: r.at_unix_ms,
                                };
                                (Cursor::row(&h.host, &row_key(svc, file, i)), view)
                            })
                        })
                })
        });
    page(rows, req)
}

impl View for ServiceConfigsRequest {
    fn answer(&self, fleet: &Fleet, responder: Responder, _now: i64) -> ServiceConfigsReply {
        let (snapshots, next) = service_configs(fleet, self);
        ServiceConfigsReply {
            responder,
            snapshots,
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use opsfleet_proto::api::PageRequest;
    use opsfleet_proto::pb::{self, event::Body};
    use opsfleet_proto::EventEnvelope;
    use uuid::Uuid;

    use super::*;

    fn fold(fleet: &mut Fleet, host: &str, seq: u64, file: &str, cause: &str) {
        let ev = EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq,
            time_unix_ms: 1_790_000_000_000 + seq as i64,
            module: "app".to_owned(),
            incarnation: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            body: Body::ServiceConfig(pb::ServiceConfigSnapshot {
                service: "app".into(),
                file: file.into(),
                fingerprint: format!("{seq:064x}"),
                size: 3,
                cause: cause.into(),
                ..Default::default()
            }),
        };
        assert!(fleet.apply(&ev).is_accepted());
    }

    #[test]
    fn snapshots_list_in_order_filter_and_page() {
        let mut fleet = Fleet::new();
        fold(&mut fleet, "web-01", 1, "/etc/app/a.json", "start");
        fold(&mut fleet, "web-01", 2, "/etc/app/a.json", "drift");
        fold(&mut fleet, "web-01", 3, "/etc/app/b.json", "start");
        fold(&mut fleet, "web-02", 1, "/etc/app/a.json", "start");
        let (all, next) = service_configs(&fleet, &ServiceConfigsRequest::default());
        assert_eq!(next, None);
        let rows: Vec<_> = (all.iter())
            .map(|s| (s.host.as_str(), s.file.as_str(), s.cause.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("web-01", "/etc/app/a.json", "start"),
                ("web-01", "/etc/app/a.json", "drift"),
                ("web-01", "/etc/app/b.json", "start"),
                ("web-02", "/etc/app/a.json", "start"),
            ]
        );
        let one_file = ServiceConfigsRequest {
            file: Some("/etc/app/b.json".into()),
            ..Default::default()
        };
        assert_eq!(service_configs(&fleet, &one_file).0.len(), 1);
        let mut req = ServiceConfigsRequest {
            page: PageRequest::first(Some(1)),
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let (rows, next) = service_configs(&fleet, &req);
            seen.extend(rows.into_iter().map(|r| r.cause));
            match next {
                Some(n) => req.page.after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, ["start", "drift", "start", "start"]);
    }

    #[test]
    fn a_drift_holds_the_config_drift_condition_until_opsfleet_writes_again() {
        use crate::alerts::{conditions::conditions, AlertsConfig, RuleKind};
        let rules = AlertsConfig::default().rules();
        let drifts = |fleet: &Fleet| -> Vec<String> {
            conditions(&rules, fleet, 1_790_000_000_000, None)
                .into_iter()
                .filter(|c| c.rule == RuleKind::ConfigDrift)
                .map(|c| c.alert_id)
                .collect()
        };
        let mut fleet = Fleet::new();
        fold(&mut fleet, "web-01", 1, "/etc/app/a.json", "start");
        assert!(drifts(&fleet).is_empty());
        fold(&mut fleet, "web-01", 2, "/etc/app/a.json", "drift");
        assert_eq!(drifts(&fleet), ["config_drift/web-01/app:/etc/app/a.json"]);
        fold(&mut fleet, "web-01", 3, "/etc/app/a.json", "applied");
        assert!(drifts(&fleet).is_empty());
    }
}
