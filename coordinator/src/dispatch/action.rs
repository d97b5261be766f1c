//! A request's wire action (pure): what each `CommandAction` becomes on the wire, with
//! rollbacks looked up in the fleet's log and service config contents fingerprinted.

use super::*;

/// The wire action for a request (pure); a rollback's config is looked up in the fleet's log.
/// Text fields are sent trimmed.
pub fn request_action(
    fleet: &Fleet,
    action: &CommandAction,
    targets: &[String],
) -> Result<Action, DispatchError> {
    let module_action = |module: &String| pb::ModuleAction {
        module: module.clone(),
    };
    let trimmed = |v: &String| v.trim().to_owned();
    Ok(match action {
        CommandAction::Pause { module } => Action::Pause(module_action(module)),
        CommandAction::Resume { module } => Action::Resume(module_action(module)),
        CommandAction::Disable { module } => Action::Disable(module_action(module)),
        CommandAction::Enable { module } => Action::Enable(module_action(module)),
        CommandAction::Noop => Action::Noop(pb::Noop {}),
        CommandAction::Drain => Action::Drain(pb::Drain {}),
        CommandAction::Undrain => Action::Undrain(pb::Undrain {}),
        CommandAction::ResumeAll => Action::ResumeAll(pb::ResumeAll {}),
        CommandAction::BackupRun { module, job } => Action::BackupRun(pb::BackupRun {
            module: module.clone().unwrap_or_default(),
            job: job.clone().unwrap_or_default(),
        }),
        CommandAction::RestoreTest { module, job } => Action::RestoreTest(pb::RestoreTest {
            module: module.clone().unwrap_or_default(),
            job: job.clone(),
        }),
        CommandAction::Restore {
            module,
            job,
            archive,
            target,
        } => Action::Restore(pb::Restore {
            module: module.clone().unwrap_or_default(),
            job: job.clone().unwrap_or_default(),
            archive: trimmed(archive),
            target: trimmed(target),
        }),
        CommandAction::ConfigApply {
            module,
            config_toml,
            fingerprint,
        } => {
            let config_toml = trimmed(config_toml);
            let fingerprint = apply_fingerprint(module, &config_toml, fingerprint.as_deref())?;
            Action::ConfigApply(pb::ConfigApply {
                module: module.clone(),
                config_toml,
                fingerprint,
            })
        }
        CommandAction::ConfigRollback {
            module,
            fingerprint,
        } => {
            let found = find_config(fleet, module, &trimmed(fingerprint), targets)?;
            if !found.forged_on.is_empty() {
                let hosts: Vec<&str> = found.forged_on.iter().map(String::as_str).collect();
                warn!(module = %module, fingerprint = %found.fingerprint, hosts = %hosts.join(","), "config announced under a fingerprint that is not its own; skipped");
            }
            Action::ConfigRollback(pb::ConfigRollback {
                module: module.clone(),
                fingerprint: found.fingerprint,
                config_toml: found.toml,
            })
        }
        CommandAction::ServiceStart { service } => Action::ServiceStart(service_action(service)),
        CommandAction::ServiceStop { service } => Action::ServiceStop(service_action(service)),
        CommandAction::ServiceRestart { service } => {
            Action::ServiceRestart(service_action(service))
        }
        CommandAction::ServiceReload { service } => Action::ServiceReload(service_action(service)),
        CommandAction::App {
            service,
            action,
            args,
        } => Action::App(pb::AppAction {
            service: service.clone(),
            action: trimmed(action),
            args: args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }),
        CommandAction::ServiceConfigApply {
            service,
            file,
            content,
            fingerprint,
        } => Action::ServiceConfigApply(pb::ServiceConfigApply {
            service: service.clone(),
            file: file
                .as_deref()
                .map(str::trim)
                .unwrap_or_default()
                .to_owned(),
            fingerprint: content_fingerprint(service, content, fingerprint.as_deref())?,
            content: content.clone(),
        }),
        CommandAction::ServiceConfigRollback {
            service,
            file,
            fingerprint,
        } => Action::ServiceConfigRollback(pb::ServiceConfigRollback {
            service: service.clone(),
            file: file
                .as_deref()
                .map(str::trim)
                .unwrap_or_default()
                .to_owned(),
            fingerprint: trimmed(fingerprint),
        }),
        CommandAction::ServiceDeploy {
            service,
            version,
            artifact,
            sha256,
            ready_samples,
        } => Action::ServiceDeploy(pb::ServiceDeploy {
            service: service.clone(),
            version: trimmed(version),
            artifact: artifact.as_ref().map(trimmed).unwrap_or_default(),
            sha256: sha256
                .as_ref()
                .map(|h| h.trim().to_ascii_lowercase())
                .unwrap_or_default(),
            ready_samples: ready_samples.unwrap_or(0),
            rollout_id: String::new(),
        }),
        CommandAction::ServiceRole {
            service,
            role,
            group,
        } => Action::ServiceRole(pb::ServiceRole {
            service: service.clone(),
            role: trimmed(role),
            group: group.as_ref().map(trimmed).unwrap_or_default(),
        }),
        CommandAction::TrafficSwitch { service } => Action::TrafficSwitch(pb::TrafficSwitch {
            service: service.clone(),
        }),
    })
}

fn service_action(service: &str) -> pb::ServiceAction {
    pb::ServiceAction {
        service: service.to_owned(),
    }
}

/// The sha256 (hex) of a service config file's new `content`, recomputed here; a request that
/// claims another is refused.
pub fn content_fingerprint(
    service: &str,
    content: &str,
    claimed: Option<&str>,
) -> Result<String, DispatchError> {
    use sha2::{Digest, Sha256};
    let computed = hex::encode(Sha256::digest(content.as_bytes()));
    match claimed.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if c != computed => Err(DispatchError::FingerprintMismatch {
            module: service.to_owned(),
            claimed: c.to_owned(),
            computed,
        }),
        _ => Ok(computed),
    }
}
