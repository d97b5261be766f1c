//! `service_role` commands: a member of an active/standby group is told its role, allowed only
//! when the host's file lists `role` in the service's `remote`, the service declares
//! `[modules.role]` and the command names its group. The role reaches the app as declared (a
//! file written atomically; an env file then a reload or restart; an HTTP POST), is persisted
//! as the service module's state (an agent restart keeps it) and shown in heartbeats.

use opsfleet_proto::pb;
use opsfleet_report::error_chain;

use super::exec::Execution;
use super::CommandHandler;
use std::sync::Arc;

use crate::config::{
    AgentConfig, GroupRole, HostPolicy, RemoteOp, RoleApply, RoleDelivery, RoleSection,
};
use crate::modules::health::probe::post_json;
use crate::modules::service::roles::{self, ROLE_KEY};
use crate::modules::service::ServiceOp;
use crate::outbox::Outbox;
use crate::outbox::StateWrite;
use crate::runner::control::ControlHandle;

/// The file's `[modules.role]` of `r.service` and the role asked, when `r` may be run: `role`
/// is in the service's `remote`, the service declares the section, the role is `active` or
/// `standby` and the group is the service's. The refusal says which. Pure.
pub fn permitted<'p>(
    policy: &'p HostPolicy,
    r: &pb::ServiceRole,
) -> Result<(&'p RoleSection, GroupRole), String> {
    policy
        .check_service_op(&r.service, RemoteOp::Role)
        .map_err(|v| format!("refused by {}: {}", v.rule, v.reason))?;
    let section = (policy.service(&r.service))
        .and_then(|s| s.role.as_ref())
        .ok_or_else(|| {
            format!(
                "service {:?} declares no group ([modules.role] in the host's file)",
                r.service
            )
        })?;
    let role = GroupRole::parse(&r.role)
        .ok_or_else(|| format!("unknown role {:?} (active or standby)", r.role))?;
    if r.group != section.group {
        return Err(format!(
            "refused by service.role.group: service {:?} is in group {:?}, not {:?}",
            r.service, section.group, r.group
        ));
    }
    Ok((section, role))
}

/// What a `service_role` or a `traffic_switch` needs, owned: they run in the background, in
/// their service's lane (after its deploy or lifecycle op, never beside it).
pub(super) struct GroupJob {
    pub outbox: Arc<Outbox>,
    pub config: Arc<AgentConfig>,
    pub policy: HostPolicy,
    pub control: ControlHandle,
}

impl CommandHandler {
    pub(super) fn group_job(&self) -> GroupJob {
        GroupJob {
            outbox: self.outbox.clone(),
            config: self.config.clone(),
            policy: self.policy.clone(),
            control: self.control.clone(),
        }
    }

    /// The role command `r` as a future that borrows nothing.
    pub(super) fn service_role_task(
        &self,
        r: &pb::ServiceRole,
    ) -> impl std::future::Future<Output = Execution> + Send + 'static {
        let (job, r) = (self.group_job(), r.clone());
        async move { Execution::done(job.give_role(&r).await) }
    }

    pub(super) async fn service_role(&self, r: &pb::ServiceRole) -> Execution {
        self.service_role_task(r).await
    }
}

impl GroupJob {
    /// Checked when the command was accepted; again here, the trust boundary's last word.
    async fn give_role(&self, r: &pb::ServiceRole) -> Result<String, String> {
        let (section, role) = permitted(&self.policy, r)?;
        let section = section.clone();
        let delivery = section
            .delivery()
            .ok_or_else(|| format!("service {:?}: no role delivery declared", r.service))?;
        let (how, then) = match delivery {
            RoleDelivery::File(path) => {
                let path = path.to_owned();
                let shown = format!("written to {}", path.display());
                blocking(move || roles::write_atomic(&path, role.as_str().as_bytes())).await?;
                (shown, None)
            }
            RoleDelivery::EnvFile { path, var, apply } => {
                let (p, v) = (path.to_owned(), var.to_owned());
                let shown = format!("set in {} ({var})", path.display());
                blocking(move || roles::write_env_role(&p, &v, role)).await?;
                let op = match apply {
                    RoleApply::Reload => ServiceOp::Reload,
                    RoleApply::Restart => ServiceOp::Restart,
                };
                (shown, Some(op))
            }
            RoleDelivery::Http(url) => {
                let body = roles::http_body(role);
                let call = post_json(url, &body);
                let answer = match tokio::time::timeout(section.http_timeout, call).await {
                    Err(_) => Err(format!(
                        "app did not answer within {} ({url})",
                        humantime::format_duration(section.http_timeout)
                    )),
                    Ok(Err(e)) => Err(format!("cannot reach the app: {e}")),
                    Ok(Ok((status, body))) => super::app::judge_http(status, &body),
                };
                (answer?, None)
            }
        };
        // What the app now has (or gets on its next start) is kept, so a restart keeps it.
        self.remember_role(&r.service, &section.group, role).await?;
        let mut detail = format!("role {} (group {}) {how}", role.as_str(), section.group);
        if let Some(op) = then {
            let done = (self.control)
                .service_op(&r.service, op)
                .await
                .map_err(|e| {
                    format!(
                        "{detail}, but the {} failed: {}",
                        op.as_str(),
                        error_chain(&e)
                    )
                })?;
            detail.push_str(&format!("; {} ({done})", op.as_str()));
        }
        Ok(detail)
    }

    /// Persists the role (the service module's state, flushed) and shows it in heartbeats.
    async fn remember_role(
        &self,
        service: &str,
        group: &str,
        role: GroupRole,
    ) -> Result<(), String> {
        let write = StateWrite {
            module: service.to_owned(),
            key: ROLE_KEY.to_owned(),
            value: Some(role.as_str().as_bytes().to_vec()),
        };
        (self.outbox)
            .append_with_state(Vec::new(), vec![write])
            .await
            .map_err(|e| {
                format!(
                    "role passed to the app but not persisted: {}",
                    error_chain(&e)
                )
            })?;
        self.control.service_roles().set_role(service, group, role);
        Ok(())
    }
}

/// A blocking delivery on the blocking pool.
async fn blocking(
    f: impl FnOnce() -> Result<(), roles::RoleWriteError> + Send + 'static,
) -> Result<(), String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(e) => Err(format!("role delivery ended abnormally: {e}")),
    }
}

#[cfg(test)]
#[path = "role_tests.rs"]
mod tests;
