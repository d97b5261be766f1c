//! `traffic_switch` commands (blue/green): the service's declared switch command
//! (`[modules.traffic]`) is run, bounded by its timeout (its process group killed then), when
//! the host's file lists `switch` in the service's `remote`. On success this service is live
//! and the other slots of its slot group on this host are not (persisted as module state,
//! shown in heartbeats); a failure carries the command's stderr excerpt.

use opsfleet_proto::pb;
use opsfleet_report::error_chain;

use super::exec::Execution;
use super::role::GroupJob;
use super::CommandHandler;
use crate::config::{AgentConfig, HostPolicy, ModuleConfig, RemoteOp, TrafficSection};
use crate::modules::service::command::run_bounded;
use crate::modules::service::roles::LIVE_KEY;
use crate::outbox::StateWrite;

/// The file's `[modules.traffic]` of `t.service`, when `t` may be run: `switch` is in the
/// service's `remote` and the service declares the section. Pure.
pub fn permitted<'p>(
    policy: &'p HostPolicy,
    t: &pb::TrafficSwitch,
) -> Result<&'p TrafficSection, String> {
    policy
        .check_service_op(&t.service, RemoteOp::Switch)
        .map_err(|v| format!("refused by {}: {}", v.rule, v.reason))?;
    (policy.service(&t.service))
        .and_then(|s| s.traffic.as_ref())
        .ok_or_else(|| {
            format!(
                "service {:?} declares no slot group ([modules.traffic] in the host's file)",
                t.service
            )
        })
}

/// The other services of `slot_group` in the host's file (they stop being live). Pure.
pub fn other_slots(config: &AgentConfig, service: &str, slot_group: &str) -> Vec<String> {
    (config.modules.iter())
        .filter(|m| m.name() != service)
        .filter(|m| {
            matches!(m, ModuleConfig::Service(s)
                if s.traffic.as_ref().is_some_and(|t| t.slot_group == slot_group))
        })
        .map(|m| m.name().to_owned())
        .collect()
}

impl CommandHandler {
    /// The switch `t` as a future that borrows nothing (run in the service's lane).
    pub(super) fn traffic_switch_task(
        &self,
        t: &pb::TrafficSwitch,
    ) -> impl std::future::Future<Output = Execution> + Send + 'static {
        let (job, t) = (self.group_job(), t.clone());
        async move { Execution::done(job.switch(&t).await) }
    }

    pub(super) async fn traffic_switch(&self, t: &pb::TrafficSwitch) -> Execution {
        self.traffic_switch_task(t).await
    }
}

impl GroupJob {
    /// Checked when the command was accepted; again here, the trust boundary's last word.
    async fn switch(&self, t: &pb::TrafficSwitch) -> Result<String, String> {
        let section = permitted(&self.policy, t)?.clone();
        let argv = section.switch_argv(&t.service);
        let timeout = section.switch_timeout;
        let run = tokio::task::spawn_blocking(move || run_bounded(&argv, timeout));
        match run.await {
            Ok(Ok(_)) => {}
            Ok(Err(why)) => return Err(format!("switch to {} failed: {why}", t.service)),
            Err(e) => return Err(format!("switch command ended abnormally: {e}")),
        }
        let others = other_slots(&self.config, &t.service, &section.slot_group);
        let live = |service: &str, on: bool| StateWrite {
            module: service.to_owned(),
            key: LIVE_KEY.to_owned(),
            value: on.then(|| b"1".to_vec()),
        };
        let writes = std::iter::once(live(&t.service, true))
            .chain(others.iter().map(|o| live(o, false)))
            .collect();
        (self.outbox)
            .append_with_state(Vec::new(), writes)
            .await
            .map_err(|e| format!("switched but not persisted: {}", error_chain(&e)))?;
        (self.control.service_roles()).switched(&t.service, &section.slot_group, &others);
        let was = if others.is_empty() {
            String::new()
        } else {
            format!(" (not {})", others.join(", "))
        };
        Ok(format!(
            "traffic of slot group {} now goes to {}{was}",
            section.slot_group, t.service
        ))
    }
}
