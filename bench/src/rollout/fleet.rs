//! The rollout section's simulated fleet: N hosts in this process, each with a supervised
//! service `web` (a `service` event when it starts and after each deploy; a heartbeat listing
//! the module `web` and its `ServiceSummary`, running, health ready, the current version) and
//! the real command protocol (a durable pull consumer `agent-<host>` on `OPS_CMDS`, one in
//! flight; `command_accepted`, then `command_completed` through JetStream with `Nats-Msg-Id`).
//! A `service_deploy` of `web` takes a fixed simulated time, then switches the version, reports
//! the new state and `service_deployed`, and completes with `deployed <v> (was <old>)`. Every
//! deploy is counted by (rollout, host), so a host deployed twice shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use opsfleet_proto::{pb, subjects};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::sim::{self, now_unix_ms, SimHost};

/// The service every simulated host supervises.
pub const SERVICE: &str = "web";
/// The version every simulated host starts with.
pub const FIRST_VERSION: &str = "1.0";

/// How the simulated hosts behave.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub hosts: usize,
    pub deploy: Duration,
    pub heartbeat: Duration,
}

/// Deploys each host ran, by (rollout id, host).
pub type DeployCounts = Arc<Mutex<HashMap<(String, String), u32>>>;

/// One host's identity and the version its `web` runs; locked across each publish so its
/// events leave in seq order, one in flight (as `ops-agent`).
struct HostState {
    sim: SimHost,
    version: String,
    started_unix_ms: i64,
    since_unix_ms: i64,
}

type Host = Arc<tokio::sync::Mutex<HostState>>;

impl HostState {
    fn heartbeat(&self, interval: Duration) -> pb::event::Body {
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let running = pb::ModuleRunState::Running as i32;
        pb::event::Body::Heartbeat(pb::Heartbeat {
            uptime_ms: u64::try_from(now_unix_ms() - self.started_unix_ms).unwrap_or(0),
            agent_version: "bench".to_owned(),
            interval_ms,
            modules: vec![
                pb::ModuleStatus {
                    name: "heartbeat".to_owned(),
                    kind: "heartbeat".to_owned(),
                    state: running,
                    expected_interval_ms: interval_ms,
                },
                // A service module promises no report interval (no dead-man alert).
                pb::ModuleStatus {
                    name: SERVICE.to_owned(),
                    kind: "service".to_owned(),
                    state: running,
                    expected_interval_ms: 0,
                },
            ],
            outbox_pending: 0,
            labels: Default::default(),
            health: Vec::new(),
            services: vec![pb::ServiceSummary {
                service: SERVICE.to_owned(),
                state: pb::ServiceRunState::Running as i32,
                health: pb::HealthStatus::Ready as i32,
                version: self.version.clone(),
                since_unix_ms: self.since_unix_ms,
                ..Default::default()
            }],
        })
    }

    fn service_state(&self, detail: &str) -> pb::event::Body {
        pb::event::Body::Service(pb::ServiceState {
            service: SERVICE.to_owned(),
            manager: "process".to_owned(),
            state: pb::ServiceRunState::Running as i32,
            pid: 4242,
            since_unix_ms: self.since_unix_ms,
            restarts: 0,
            exit_detail: detail.to_owned(),
            version: self.version.clone(),
            health: pb::HealthStatus::Ready as i32,
            instance: String::new(),
        })
    }

    /// Publishes `body` and waits for its PubAck.
    async fn send(&mut self, js: &jetstream::Context, module: &str, body: pb::event::Body) {
        let e = self.sim.encoded(module, body);
        if let Ok(ack) = sim::publish(js, e).await {
            let _ = ack.await;
        }
    }
}

/// Brings the hosts up: each reports `web` running `FIRST_VERSION`, then a heartbeat (so the
/// coordinator knows the host and its module), all PubAcked; then each host's command
/// consumer and heartbeat loop (staggered over one interval) start.
pub async fn start(
    js: &jetstream::Context,
    spec: &FleetSpec,
    counts: &DeployCounts,
    cancel: &CancellationToken,
) -> Result<()> {
    let commands = js
        .get_stream(subjects::COMMANDS_STREAM)
        .await
        .context("no OPS_CMDS stream")?;
    let mut hosts = Vec::new();
    for i in 0..spec.hosts {
        let now = now_unix_ms();
        let mut h = HostState {
            sim: SimHost::new(sim::host_name(i)),
            version: FIRST_VERSION.to_owned(),
            started_unix_ms: now,
            since_unix_ms: now,
        };
        for (module, body) in [
            (SERVICE, h.service_state("")),
            ("heartbeat", h.heartbeat(spec.heartbeat)),
        ] {
            let e = h.sim.encoded(module, body);
            sim::publish(js, e)
                .await
                .context("cannot publish")?
                .await
                .context("PubAck failed")?;
        }
        hosts.push(Arc::new(tokio::sync::Mutex::new(h)));
    }
    for (i, host) in hosts.into_iter().enumerate() {
        let name = host.lock().await.sim.host.clone();
        let durable = format!("agent-{name}");
        let c: consumer::PullConsumer = commands
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subjects::command_subject(&name),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("cannot create consumer {durable}"))?;
        let offset = spec.heartbeat.mul_f64(i as f64 / spec.hosts.max(1) as f64);
        tokio::spawn(heartbeats(
            Arc::clone(&host),
            js.clone(),
            spec.heartbeat,
            offset,
            cancel.clone(),
        ));
        tokio::spawn(commands_loop(
            host,
            c,
            js.clone(),
            spec.deploy,
            Arc::clone(counts),
            cancel.clone(),
        ));
    }
    Ok(())
}

/// A heartbeat every `every`, the first after `offset`.
async fn heartbeats(
    host: Host,
    js: jetstream::Context,
    every: Duration,
    offset: Duration,
    cancel: CancellationToken,
) {
    let start = tokio::time::Instant::now() + offset;
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut h = host.lock().await;
        let body = h.heartbeat(every);
        h.send(&js, "heartbeat", body).await;
    }
}

/// One host's command loop: ack, `command_accepted`, then the action, then
/// `command_completed`.
async fn commands_loop(
    host: Host,
    c: consumer::PullConsumer,
    js: jetstream::Context,
    deploy: Duration,
    counts: DeployCounts,
    cancel: CancellationToken,
) {
    let Ok(mut messages) = c
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
    else {
        return;
    };
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            n = messages.next() => n,
        };
        let msg = match next {
            None => return,
            Some(Err(_)) => continue,
            Some(Ok(m)) => m,
        };
        let _ = msg.ack().await;
        let Ok(cmd) = pb::Command::decode(msg.payload.as_ref()) else {
            continue;
        };
        let accepted = pb::event::Body::CommandAccepted(pb::CommandAccepted {
            command_id: cmd.id.clone(),
            epoch: cmd.epoch,
        });
        host.lock().await.send(&js, "agent", accepted).await;
        let detail = match &cmd.action {
            Some(pb::command::Action::ServiceDeploy(d)) if d.service == SERVICE => {
                tokio::time::sleep(deploy).await;
                let mut h = host.lock().await;
                {
                    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                    *c.entry((d.rollout_id.clone(), h.sim.host.clone()))
                        .or_default() += 1;
                }
                let old = std::mem::replace(&mut h.version, d.version.clone());
                h.since_unix_ms = now_unix_ms();
                let state = h.service_state("restarted by command (deploy)");
                h.send(&js, SERVICE, state).await;
                let deployed = pb::event::Body::ServiceDeployed(deployed(d, &old, &cmd.id, deploy));
                h.send(&js, SERVICE, deployed).await;
                format!("deployed {} (was {old})", d.version)
            }
            _ => "bench".to_owned(),
        };
        let completed = pb::event::Body::CommandCompleted(pb::CommandCompleted {
            command_id: cmd.id,
            detail,
        });
        host.lock().await.send(&js, "agent", completed).await;
    }
}

/// The `service_deployed` event of a simulated deploy of a kept release.
fn deployed(
    d: &pb::ServiceDeploy,
    old: &str,
    command_id: &str,
    took: Duration,
) -> pb::ServiceDeployed {
    pb::ServiceDeployed {
        service: d.service.clone(),
        version: d.version.clone(),
        previous: old.to_owned(),
        location: format!("/srv/{}/releases/{}", d.service, d.version),
        fetched: false,
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        command_id: command_id.to_owned(),
        rollout_id: d.rollout_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_coordinator::admit::admit;
    use opsfleet_coordinator::ingest::decode_from;
    use opsfleet_coordinator::projection::Fleet;

    #[test]
    fn simulated_service_events_pass_the_coordinators_checks_and_fold() {
        let now = now_unix_ms();
        let mut h = HostState {
            sim: SimHost::new(sim::host_name(3)),
            version: FIRST_VERSION.to_owned(),
            started_unix_ms: now,
            since_unix_ms: now,
        };
        let d = pb::ServiceDeploy {
            service: SERVICE.to_owned(),
            version: "2.0".to_owned(),
            rollout_id: "web-1".to_owned(),
            ..Default::default()
        };
        let mut fleet = Fleet::new();
        let bodies = [
            (SERVICE, h.service_state("")),
            ("heartbeat", h.heartbeat(Duration::from_secs(10))),
            (
                SERVICE,
                pb::event::Body::ServiceDeployed(deployed(&d, "1.0", "c1", Duration::ZERO)),
            ),
        ];
        for (module, body) in bodies {
            let e = h.sim.encoded(module, body);
            let (ev, publisher) = decode_from(&e.subject, &e.payload).unwrap();
            assert_eq!(admit(&fleet, &ev, publisher), Ok(()), "{}", ev.kind());
            let _ = fleet.apply(&ev);
        }
        // The coordinator sees the module a rollout targets and the version it runs.
        let host = fleet.host("web-00003").unwrap();
        assert!(host.modules.contains_key(SERVICE));
        assert_eq!(host.services[SERVICE].app_version, FIRST_VERSION);
    }
}
