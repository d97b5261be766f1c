//! The heartbeat module: proves the agent is alive and carries every module's status, so the
//! coordinator can raise a dead-man alert when a host or module goes quiet.

use std::time::Duration;

use opsfleet_proto::pb;

use super::{Module, ModuleCtx, ModuleError};

/// Agent version reported in every heartbeat.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct HeartbeatModule {
    interval: Duration,
}

impl HeartbeatModule {
    pub fn new(interval: Duration) -> Self {
        HeartbeatModule { interval }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The heartbeat body for one context (pure).
pub fn heartbeat_body(ctx: &ModuleCtx, interval: Duration) -> pb::Heartbeat {
    pb::Heartbeat {
        uptime_ms: millis(ctx.uptime),
        agent_version: AGENT_VERSION.to_owned(),
        interval_ms: millis(interval),
        modules: ctx.statuses.clone(),
        outbox_pending: ctx.outbox_pending,
        health: ctx.health.clone(),
        services: ctx.services.clone(),
        labels: ctx
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[async_trait::async_trait]
impl Module for HeartbeatModule {
    fn kind(&self) -> &'static str {
        "heartbeat"
    }

    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        Ok(vec![pb::event::Body::Heartbeat(heartbeat_body(
            ctx,
            self.interval,
        ))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[tokio::test]
    async fn heartbeat_carries_statuses_and_pending() {
        let ctx = ModuleCtx {
            now: SystemTime::now(),
            uptime: Duration::from_millis(1500),
            statuses: vec![pb::ModuleStatus {
                name: "disk".into(),
                kind: "disk".into(),
                state: pb::ModuleRunState::Running as i32,
                expected_interval_ms: 60_000,
            }],
            outbox_pending: 7,
            health: Vec::new(),
            services: vec![pb::ServiceSummary {
                service: "app".into(),
                state: pb::ServiceRunState::Running as i32,
                health: pb::HealthStatus::Ready as i32,
                version: "1.2.3".into(),
                restarts: 2,
                since_unix_ms: 1,
                ..Default::default()
            }],
            labels: std::sync::Arc::new(
                [("role".to_owned(), "db".to_owned())].into_iter().collect(),
            ),
            service_configs: Default::default(),
            service_roles: Default::default(),
            data_dir: std::env::temp_dir().into(),
        };
        let mut m = HeartbeatModule::new(Duration::from_secs(10));
        let bodies = m.run_once(&ctx).await.expect("runs");
        let [pb::event::Body::Heartbeat(hb)] = bodies.as_slice() else {
            panic!("one heartbeat: {bodies:?}")
        };
        assert_eq!(hb.uptime_ms, 1500);
        assert_eq!(hb.interval_ms, 10_000);
        assert_eq!(hb.outbox_pending, 7);
        assert_eq!(hb.agent_version, AGENT_VERSION);
        assert_eq!(hb.modules[0].expected_interval_ms, 60_000);
        assert_eq!(hb.labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(hb.services.len(), 1);
        assert_eq!(hb.services[0].version, "1.2.3");
    }
}
