//! `ops.api.services`: supervised services per host and service, filtered by host glob and
//! state, paged by (host, service).

use opsfleet_proto::api::{Responder, ServiceView, ServicesReply, ServicesRequest};

use super::{page, Cursor, View};
use crate::glob::glob_match;
use crate::projection::Fleet;

/// One page of services matching `req`, ascending by (host, service), and the next cursor.
pub fn services(fleet: &Fleet, req: &ServicesRequest) -> (Vec<ServiceView>, Option<String>) {
    let rows = fleet
        .hosts()
        .filter(|h| req.host.as_deref().is_none_or(|p| glob_match(p, &h.host)))
        .filter(|h| req.labels.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
        .flat_map(|h| {
            h.services
                .iter()
                .filter(|(_, s)| req.state.as_deref().is_none_or(|st| st == s.state.as_str()))
                .filter(|(name, _)| req.service.as_deref().is_none_or(|w| w == name.as_str()))
                .map(move |(name, s)| {
                    let view = ServiceView {
                        host: h.host.clone(),
                        service: name.clone(),
                        manager: s.manager.clone(),
                        state: s.state,
                        pid: s.pid,
                        since_unix_ms: s.since_unix_ms,
                        restarts: s.restarts,
                        exit_detail: s.exit_detail.clone(),
                        instance: s.instance.clone(),
                        version: s.app_version.clone(),
                        health: s.health,
                    };
                    (Cursor::row(&h.host, name), view)
                })
        });
    page(rows, req)
}

impl View for ServicesRequest {
    fn answer(&self, fleet: &Fleet, responder: Responder, _now_unix_ms: i64) -> ServicesReply {
        let (services, next) = services(fleet, self);
        ServicesReply {
            responder,
            services,
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use opsfleet_proto::api::{PageRequest, ServiceRunState};
    use opsfleet_proto::pb::{self, event::Body};
    use opsfleet_proto::EventEnvelope;
    use uuid::Uuid;

    use super::*;
    use crate::api::hosts::summary;

    const T0: i64 = 1_790_000_000_000;

    fn fold(fleet: &mut Fleet, host: &str, seq: u64, state: pb::ServiceRunState, restarts: u64) {
        let ev = EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq,
            time_unix_ms: T0 + seq as i64,
            module: "app".to_owned(),
            incarnation: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            body: Body::Service(pb::ServiceState {
                service: "app".into(),
                manager: "process".into(),
                state: state as i32,
                pid: if state == pb::ServiceRunState::Running {
                    77
                } else {
                    0
                },
                since_unix_ms: T0 + seq as i64,
                restarts,
                exit_detail: "exited with status 1".into(),
                ..Default::default()
            }),
        };
        assert!(fleet.apply(&ev).is_accepted());
    }

    #[test]
    fn services_list_filter_page_and_count_as_host_trouble_while_down() {
        let mut fleet = Fleet::new();
        fold(&mut fleet, "web-01", 1, pb::ServiceRunState::Running, 0);
        fold(&mut fleet, "web-01", 2, pb::ServiceRunState::Failed, 0);
        fold(&mut fleet, "web-02", 1, pb::ServiceRunState::Running, 0);
        let (all, next) = services(&fleet, &ServicesRequest::default());
        assert_eq!(next, None);
        let rows: Vec<_> = all
            .iter()
            .map(|s| (s.host.as_str(), s.state, s.pid))
            .collect();
        assert_eq!(
            rows,
            [
                ("web-01", ServiceRunState::Failed, 0),
                ("web-02", ServiceRunState::Running, 77)
            ]
        );
        let failed = ServicesRequest {
            state: Some("failed".into()),
            ..Default::default()
        };
        assert_eq!(services(&fleet, &failed).0.len(), 1);
        let one = ServicesRequest {
            page: PageRequest::first(Some(1)),
            ..Default::default()
        };
        let (p1, n1) = services(&fleet, &one);
        assert_eq!((p1.len(), p1[0].host.as_str()), (1, "web-01"));
        let rest = ServicesRequest {
            page: PageRequest {
                limit: Some(1),
                after: n1,
            },
            ..Default::default()
        };
        assert_eq!(services(&fleet, &rest).0[0].host, "web-02");

        let web1 = fleet.host("web-01").expect("web-01");
        assert_eq!(summary(web1, T0, T0, false).down_services, ["app:failed"]);
        fold(&mut fleet, "web-01", 3, pb::ServiceRunState::Running, 1);
        let web1 = fleet.host("web-01").expect("web-01");
        assert!(summary(web1, T0, T0, false).down_services.is_empty());
        assert_eq!(
            services(&fleet, &ServicesRequest::default()).0[0].restarts,
            1
        );
    }
}

#[cfg(test)]
mod health_tests {
    use opsfleet_proto::api::ProbeStatus;
    use opsfleet_proto::pb::{self, event::Body};
    use opsfleet_proto::EventEnvelope;
    use uuid::Uuid;

    use super::*;
    use crate::api::hosts::summary;

    const T0: i64 = 1_790_000_000_000;

    fn apply(fleet: &mut Fleet, host: &str, seq: u64, body: Body) {
        let ev = EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq,
            time_unix_ms: T0 + seq as i64,
            module: "app".to_owned(),
            incarnation: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
            body,
        };
        assert!(fleet.apply(&ev).is_accepted());
    }

    fn running(health: pb::HealthStatus) -> Body {
        Body::Service(pb::ServiceState {
            service: "app".into(),
            manager: "process".into(),
            state: pb::ServiceRunState::Running as i32,
            pid: 77,
            since_unix_ms: T0,
            version: "1.4.2".into(),
            health: health as i32,
            ..Default::default()
        })
    }

    #[test]
    fn version_and_health_fold_and_an_unhealthy_service_is_trouble() {
        let mut fleet = Fleet::new();
        let hb = Body::Heartbeat(pb::Heartbeat {
            labels: [("role".to_owned(), "web".to_owned())]
                .into_iter()
                .collect(),
            ..Default::default()
        });
        apply(&mut fleet, "web-01", 1, hb);
        apply(&mut fleet, "web-01", 2, running(pb::HealthStatus::Degraded));
        apply(
            &mut fleet,
            "web-02",
            1,
            running(pb::HealthStatus::Unspecified),
        );
        let (rows, _) = services(&fleet, &ServicesRequest::default());
        assert_eq!(rows[0].version, "1.4.2");
        assert_eq!(rows[0].health, Some(ProbeStatus::Degraded));
        assert_eq!(rows[1].health, None, "no probe declared");
        let web1 = fleet.host("web-01").expect("web-01");
        assert_eq!(summary(web1, T0, T0, false).down_services, ["app:degraded"]);
        apply(&mut fleet, "web-01", 3, running(pb::HealthStatus::Ready));
        let web1 = fleet.host("web-01").expect("web-01");
        assert!(summary(web1, T0, T0, false).down_services.is_empty());

        let labelled = ServicesRequest {
            labels: [("role".to_owned(), "web".to_owned())]
                .into_iter()
                .collect(),
            service: Some("app".into()),
            ..Default::default()
        };
        let hosts: Vec<_> = services(&fleet, &labelled)
            .0
            .into_iter()
            .map(|v| v.host)
            .collect();
        assert_eq!(hosts, ["web-01"]);
        let other = ServicesRequest {
            service: Some("db".into()),
            ..Default::default()
        };
        assert!(services(&fleet, &other).0.is_empty());
    }
}
