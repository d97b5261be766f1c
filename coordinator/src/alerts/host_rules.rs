//! The per-host conditions: liveness (host and module), disks, log errors, backups, probes,
//! services and config drift of one host, by the rules of `rules`.

use opsfleet_proto::api::{DiskLevel, ModuleState};
use opsfleet_proto::api::{ProbeStatus, SentinelStatus};

use super::rules::*;
use crate::projection::{Fleet, HostState};

/// Liveness (host and module) goes by `fleet`'s arrivals on the bus, not the agent's clock.
/// `(now, graced)`: within the grace no liveness condition holds. True when the host is
/// lost (its services are then not judged: `host_lost` says it).
pub(super) fn host_conditions(
    rules: &Rules,
    fleet: &Fleet,
    host: &HostState,
    (now, graced): (i64, bool),
    out: &mut Vec<Condition>,
) -> bool {
    let h = host.host.as_str();
    let lost = host_is_lost(rules, host, fleet.seen_unix_ms(host), now).filter(|_| !graced);
    if let (Some(rule), Some((last_seen, interval))) = (rules.get(RuleKind::HostLost), lost) {
        let silent_s = (now - last_seen) / 1000;
        out.push(Condition {
            alert_id: alert_id(rule.kind, h, ""),
            rule: rule.kind,
            host: h.to_owned(),
            subject: String::new(),
            summary: format!(
                "{h} silent for {silent_s}s (heartbeat every {})",
                every(i64::try_from(interval).unwrap_or(i64::MAX))
            ),
            value: format!("{silent_s}s"),
            liveness: Some((last_seen, interval)),
        });
    }
    let mut push = |rule: RuleKind, subject: &str, summary: String, value: String| {
        out.push(Condition {
            alert_id: alert_id(rule, h, subject),
            rule,
            host: h.to_owned(),
            subject: subject.to_owned(),
            summary,
            value,
            liveness: None,
        });
    };
    // A lost host's other dead-man alerts would only repeat that it is lost.
    if lost.is_none() && !graced && rules.get(RuleKind::ModuleSilent).is_some() {
        for (name, m) in &host.modules {
            let declared = i64::try_from(m.expected_interval_ms).unwrap_or(i64::MAX / 4);
            if m.state != ModuleState::Running
                || declared == 0
                || !rules.silent_kinds.contains(&m.kind)
            {
                continue;
            }
            let silence = now - fleet.module_seen_unix_ms(host, name, m);
            let limit = declared
                .saturating_mul(rules.missed_reports)
                .max(rules.min_silence_ms);
            if silence > limit {
                push(
                    RuleKind::ModuleSilent,
                    name,
                    format!(
                        "module {name} on {h} silent for {}s (reports every {})",
                        silence / 1000,
                        every(declared)
                    ),
                    format!("{}s", silence / 1000),
                );
            }
        }
    }
    for (path, d) in &host.disks {
        let kind = match d.level {
            DiskLevel::Warn => RuleKind::DiskWarn,
            DiskLevel::Crit => RuleKind::DiskCrit,
            DiskLevel::Ok | DiskLevel::Unknown => continue,
        };
        if rules.get(kind).is_some() {
            push(
                kind,
                path,
                format!("{path} on {h} is {} full", pct(d.used_basis_points)),
                pct(d.used_basis_points),
            );
        }
    }
    let rb = &host.runbooks;
    if let Some(rule) = rules.get(RuleKind::LogErrors) {
        for (path, inc) in &rb.incidents {
            let since = now - rule.window_ms;
            let n = inc.recent_at_unix_ms.iter().filter(|t| **t > since).count() as u64;
            if n >= rule.threshold {
                push(
                    RuleKind::LogErrors,
                    path,
                    format!(
                        "{n} error(s) in {path} on {h} within {}s: {}",
                        rule.window_ms / 1000,
                        headline(&inc.last_excerpt)
                    ),
                    n.to_string(),
                );
            }
        }
    }
    for (job, b) in &rb.backups {
        let success_at = b.last_success.as_ref().map(|s| s.at_unix_ms);
        if let Some(f) = &b.last_failure {
            if rules.get(RuleKind::BackupFailed).is_some()
                && success_at.is_none_or(|s| s < f.at_unix_ms)
            {
                push(
                    RuleKind::BackupFailed,
                    job,
                    format!("backup {job} on {h} failed: {}", f.reason),
                    f.run_id.clone(),
                );
            }
        }
        if let (Some(rule), Some(at)) = (rules.get(RuleKind::BackupStale), success_at) {
            if now - at > rule.max_age_ms {
                push(
                    RuleKind::BackupStale,
                    job,
                    format!(
                        "newest backup {job} on {h} is {}h old",
                        (now - at) / 3_600_000
                    ),
                    format!("{}s", (now - at) / 1000),
                );
            }
        }
    }
    if rules.get(RuleKind::HealthFailed).is_some() {
        for (check, s) in &rb.health {
            if s.status == ProbeStatus::Failed {
                push(
                    RuleKind::HealthFailed,
                    check,
                    format!("health check {check} on {h} failed: {}", s.detail),
                    s.detail.clone(),
                );
            }
        }
    }
    if rules.get(RuleKind::ConfigDrift).is_some() {
        config_drift(host, &mut push);
    }
    if rules.get(RuleKind::SentinelStale).is_some() {
        for (path, s) in &rb.sentinels {
            if matches!(s.status, SentinelStatus::Stale | SentinelStatus::Missing) {
                push(
                    RuleKind::SentinelStale,
                    path,
                    format!("sentinel {path} on {h} is {}", s.status),
                    format!("{}s", s.age_ms / 1000),
                );
            }
        }
    }
    lost.is_some()
}

/// `config_drift`: the newest snapshot of a service's config file is a change opsfleet did not
/// make. Subject `<service>:<file>`; it clears when opsfleet writes the file again.
fn config_drift(host: &HostState, push: &mut impl FnMut(RuleKind, &str, String, String)) {
    let h = host.host.as_str();
    for (service, c) in &host.service_configs {
        for (file, hist) in &c.files {
            let Some(last) = hist.latest().filter(|l| l.cause == "drift") else {
                continue;
            };
            let short = last.fingerprint.get(..12).unwrap_or(&last.fingerprint);
            push(
                RuleKind::ConfigDrift,
                &format!("{service}:{file}"),
                format!(
                    "{file} of service {service} on {h} was changed outside opsfleet (now {short})"
                ),
                last.fingerprint.clone(),
            );
        }
    }
}
