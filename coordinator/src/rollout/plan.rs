//! Planning a rollout (pure): the request checked, its hosts resolved like a command's
//! (names, globs, labels, all; by default every host with the service), hosts in maintenance
//! or lost left out with the reason, the rest split into waves (the canary first, then the
//! cumulative percentages), and the version each host runs now remembered as where a
//! rollback goes.

use std::collections::BTreeMap;
use std::time::Duration;

use opsfleet_proto::api::{CommandAction, Liveness, RolloutStart, RolloutStrategy, Targets};
use opsfleet_proto::pb;

use crate::dispatch::{self, DispatchError};
use crate::identity::Issuer;
use crate::projection::Fleet;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("rollout {id} of {service} is still {phase}; pause, abort or wait for it first")]
    Busy {
        id: String,
        service: String,
        phase: &'static str,
    },
    #[error("host {host} has no service {service} (blue/green needs both slots on every host)")]
    NoGreen { host: String, service: String },
    #[error("{green} has the traffic on {host}: the new version goes to the idle slot; start the rollout of {green} with --green {service}")]
    GreenIsLive {
        host: String,
        service: String,
        green: String,
    },
    #[error("every matched host is left out: {reasons}")]
    NothingToDo { reasons: String },
    #[error(transparent)]
    Targets(#[from] DispatchError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A version as a host keeps it: one path component of `[A-Za-z0-9._+-]`, at most 128 chars.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v != "."
        && v != ".."
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

fn check(req: &RolloutStart, max_deadline: Duration) -> Result<(), PlanError> {
    if req.service.trim().is_empty() {
        return Err(invalid("service", "required"));
    }
    if !valid_version(&req.version) {
        return Err(invalid(
            "version",
            format!(
                "{:?} is not a version a host can keep (letters, digits, . _ + -)",
                req.version
            ),
        ));
    }
    let artifact = req.artifact.as_deref().map(str::trim).unwrap_or("");
    let sha = req.sha256.as_deref().map(str::trim).unwrap_or("");
    if !artifact.is_empty() && sha.is_empty() {
        return Err(invalid("sha256", "required with an artifact"));
    }
    if !sha.is_empty() && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(invalid("sha256", "64 hex digits"));
    }
    if req.waves.is_empty() || req.waves.iter().any(|p| !(1..=100).contains(p)) {
        return Err(invalid("waves", "percentages between 1 and 100"));
    }
    if req.waves.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("waves", "percentages must rise (25,50,100)"));
    }
    if req.max_unavailable == 0 {
        return Err(invalid("max_unavailable", "at least 1"));
    }
    let deadline = Duration::from_millis(req.command_deadline_ms);
    if deadline.is_zero() || deadline > max_deadline {
        return Err(invalid(
            "command_deadline",
            format!(
                "between 1ms and this coordinator's [api] max_deadline ({})",
                humantime::format_duration(max_deadline)
            ),
        ));
    }
    if req.strategy == RolloutStrategy::BlueGreen {
        match req.green_service.as_deref().map(str::trim) {
            None | Some("") => return Err(invalid("green", "blue-green needs the idle slot")),
            Some(g) if g == req.service => {
                return Err(invalid("green", "the idle slot must be another service"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Splits `hosts` (in order) into the canary and the later waves (cumulative percentages of
/// the hosts after the canary; the last wave takes every remaining host). No empty wave.
pub fn waves(hosts: &[String], canary: u32, percents: &[u32]) -> Vec<Vec<String>> {
    let canary = (canary as usize).min(hosts.len());
    let mut out: Vec<Vec<String>> = Vec::new();
    if canary > 0 {
        out.push(hosts[..canary].to_vec());
    }
    let rest = &hosts[canary..];
    let mut done = 0usize;
    for (i, pct) in percents.iter().enumerate() {
        let last = i + 1 == percents.len();
        let upto = if last {
            rest.len()
        } else {
            (rest.len() * (*pct as usize)).div_ceil(100).min(rest.len())
        };
        if upto > done {
            out.push(rest[done..upto].to_vec());
            done = upto;
        }
    }
    out
}

/// The `started` step of a new rollout, or why it cannot start.
pub fn plan(
    fleet: &Fleet,
    req: &RolloutStart,
    issuer: &Issuer,
    max_deadline: Duration,
    now_unix_ms: i64,
) -> Result<pb::RolloutStarted, PlanError> {
    check(req, max_deadline)?;
    if let Some(r) =
        (fleet.rollouts().iter()).find(|r| r.plan.service == req.service && !r.phase().is_final())
    {
        return Err(PlanError::Busy {
            id: r.id.clone(),
            service: r.plan.service.clone(),
            phase: r.phase().as_str(),
        });
    }
    let targets = Targets {
        hosts: req.hosts.clone(),
        all: req.all || (req.hosts.is_empty() && req.labels.is_empty()),
        labels: req.labels.clone(),
    };
    let probe = CommandAction::ServiceDeploy {
        service: req.service.clone(),
        version: req.version.clone(),
        artifact: None,
        sha256: None,
        ready_samples: None,
    };
    let resolved = dispatch::resolve(fleet, &targets, &probe)?;
    let mut skipped: Vec<pb::RolloutSkip> = (resolved.skipped.iter())
        .map(|s| pb::RolloutSkip {
            host: s.host.clone(),
            reason: s.reason.clone(),
        })
        .collect();
    let maintenance = fleet.maintenance();
    let mut hosts = Vec::new();
    for host in resolved.targets {
        let version = (fleet.host(&host).and_then(|h| h.services.get(&req.service)))
            .map(|s| s.app_version.as_str())
            .unwrap_or("");
        let reason = if maintenance.contains(&host) {
            Some("in maintenance (opsctl drain)".to_owned())
        } else if version.is_empty() {
            Some(format!(
                "reports no version of {}: a rollback would have nowhere to go (opsctl service deploy puts a first version in place)",
                req.service
            ))
        } else {
            match dispatch::not_up(fleet, &host, now_unix_ms) {
                Some((Liveness::Lost, _)) => Some("lost".to_owned()),
                _ => None,
            }
        };
        match reason {
            Some(reason) => skipped.push(pb::RolloutSkip { host, reason }),
            None => hosts.push(host),
        }
    }
    if hosts.is_empty() {
        let reasons = (skipped.iter())
            .map(|s| format!("{}: {}", s.host, s.reason))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(PlanError::NothingToDo { reasons });
    }
    let green = req.green_service.clone().unwrap_or_default();
    let mut previous = BTreeMap::new();
    for host in &hosts {
        let h = fleet.host(host);
        if req.strategy == RolloutStrategy::BlueGreen {
            let Some(idle) = h.and_then(|h| h.services.get(&green)) else {
                return Err(PlanError::NoGreen {
                    host: host.clone(),
                    service: green,
                });
            };
            if idle.live {
                return Err(PlanError::GreenIsLive {
                    host: host.clone(),
                    service: req.service.clone(),
                    green,
                });
            }
        }
        let running = (h.and_then(|h| h.services.get(&req.service)))
            .map(|s| s.app_version.clone())
            .unwrap_or_default();
        previous.insert(host.clone(), running);
    }
    let waves = match req.strategy {
        RolloutStrategy::Canary => waves(&hosts, req.canary, &req.waves),
        RolloutStrategy::BlueGreen => waves(&hosts, req.canary, &req.waves),
    };
    Ok(pb::RolloutStarted {
        service: req.service.clone(),
        version: req.version.clone(),
        artifact: req.artifact.clone().unwrap_or_default().trim().to_owned(),
        sha256: (req.sha256.clone().unwrap_or_default().trim()).to_ascii_lowercase(),
        strategy: req.strategy.as_str().to_owned(),
        waves: (waves.into_iter())
            .map(|hosts| pb::RolloutWave { hosts })
            .collect(),
        skipped,
        previous: previous.into_iter().collect(),
        max_unavailable: req.max_unavailable,
        ready_samples: req.ready_samples,
        soak_ms: req.soak_ms,
        manual: req.manual,
        two_person: req.two_person,
        started_by: issuer.name.clone(),
        started_role: issuer.role_text(),
        before_job: req.before_job.clone().unwrap_or_default(),
        green_service: green,
        keep_old_ms: req.keep_old_ms,
        command_deadline_ms: req.command_deadline_ms,
        max_p95_ms: req.max_p95_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(edit: impl FnOnce(&mut RolloutStart)) -> String {
        let mut req = RolloutStart::new("web", "2.0");
        edit(&mut req);
        match check(&req, Duration::from_secs(3600)) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted: {req:?}"),
        }
    }

    #[test]
    fn a_request_that_no_host_could_take_is_refused_before_anything_is_recorded() {
        assert!(check(&RolloutStart::new("web", "2.0"), Duration::from_secs(3600)).is_ok());
        for bad in ["", ".", "..", "../etc", "2.0/x", "a b", &"9".repeat(129)] {
            let why = refused(|r| r.version = bad.to_owned());
            assert!(why.starts_with("version:"), "{bad:?}: {why}");
        }
        assert!(refused(|r| r.service = " ".into()).starts_with("service:"));
        let why = refused(|r| r.artifact = Some("http://127.0.0.1:1/web.tgz".into()));
        assert_eq!(why, "sha256: required with an artifact");
        assert!(refused(|r| r.sha256 = Some("abc".into())).starts_with("sha256: 64 hex"));
        assert!(refused(|r| r.waves = vec![50, 25, 100]).contains("must rise"));
        assert!(refused(|r| r.waves = vec![0, 100]).starts_with("waves:"));
        assert!(refused(|r| r.waves = Vec::new()).starts_with("waves:"));
        assert!(refused(|r| r.max_unavailable = 0).starts_with("max_unavailable:"));
        assert!(refused(|r| r.command_deadline_ms = 0).starts_with("command_deadline:"));
        let too_long = refused(|r| r.command_deadline_ms = 2 * 3_600_000);
        assert!(too_long.contains("max_deadline"), "{too_long}");
        let bg = |r: &mut RolloutStart| r.strategy = RolloutStrategy::BlueGreen;
        assert!(refused(bg).starts_with("green:"));
        let same = refused(|r| {
            bg(r);
            r.green_service = Some("web".into());
        });
        assert!(same.contains("another service"), "{same}");
    }

    #[test]
    fn an_empty_fleet_has_no_host_to_roll_out_to() {
        let issuer = Issuer {
            name: "alice".into(),
            role: Some(opsfleet_proto::api::Role::Admin),
        };
        let req = RolloutStart::new("web", "2.0");
        let err = plan(&Fleet::new(), &req, &issuer, Duration::from_secs(3600), 0);
        assert!(matches!(err, Err(PlanError::Targets(_))), "{err:?}");
    }
}
