//! The remote backup rules, per host and job (subject = the job's name):
//! `backup_sync_failed` (the newest copy to the remote failed), `backup_sync_stale` (the
//! newest verified copy is older than `max_age`) and `backup_discrepancy` (the newest
//! reconciliation found missing, extra or mismatched remote archives). Pure.

use super::rules::{alert_id, Condition, RuleKind, Rules};
use crate::projection::HostState;

/// The remote backup conditions of `host` at `now`.
pub fn backup_remote_conditions(
    rules: &Rules,
    host: &HostState,
    now: i64,
    out: &mut Vec<Condition>,
) {
    let h = host.host.as_str();
    let mut push = |rule: RuleKind, job: &str, summary: String, value: String| {
        out.push(Condition {
            alert_id: alert_id(rule, h, job),
            rule,
            host: h.to_owned(),
            subject: job.to_owned(),
            summary,
            value,
            liveness: None,
        });
    };
    for (job, b) in &host.runbooks.backups {
        let Some(r) = &b.remote else { continue };
        let synced_at = r.last_synced.as_ref().map(|s| s.at_unix_ms);
        if let Some(f) = &r.last_sync_failure {
            if rules.get(RuleKind::BackupSyncFailed).is_some()
                && synced_at.is_none_or(|s| s < f.at_unix_ms)
            {
                push(
                    RuleKind::BackupSyncFailed,
                    job,
                    format!(
                        "copy of backup {job} on {h} to {} failed: {}",
                        r.destination, f.reason
                    ),
                    f.at_unix_ms.to_string(),
                );
            }
        }
        if let (Some(rule), Some(at)) = (rules.get(RuleKind::BackupSyncStale), synced_at) {
            if now - at > rule.max_age_ms {
                push(
                    RuleKind::BackupSyncStale,
                    job,
                    format!(
                        "newest copy of backup {job} on {h} to {} is {}h old",
                        r.destination,
                        (now - at) / 3_600_000
                    ),
                    format!("{}s", (now - at) / 1000),
                );
            }
        }
        if let Some(d) = r.reconciled.as_ref().filter(|d| d.found_any()) {
            if rules.get(RuleKind::BackupDiscrepancy).is_some() {
                let first = d
                    .missing
                    .first()
                    .or(d.mismatched.first())
                    .or(d.extra.first())
                    .map_or(String::new(), |n| format!(" (e.g. {n})"));
                push(
                    RuleKind::BackupDiscrepancy,
                    job,
                    format!(
                        "backup {job} on {h} and its copy at {} differ: {} missing, {} extra, {} \
                         mismatched{first}",
                        r.destination, d.missing_count, d.extra_count, d.mismatched_count
                    ),
                    format!(
                        "{}/{}/{}",
                        d.missing_count, d.extra_count, d.mismatched_count
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
#[path = "backup_rules_tests.rs"]
mod tests;
