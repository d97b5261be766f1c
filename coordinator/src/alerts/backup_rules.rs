//! The remote backup rules, per host and job (subject = the job's name):
//! `backup_sync_failed` (the newest copy to the remote failed), `backup_sync_stale` (the
//! newest verified copy is older than `max_age`) and `backup_discrepancy` (the newest
//! reconciliation found missing, extra or mismatched remote archives); and the restore test
//! rules: `restore_test_failed` (the newest restore test failed) and `restore_test_missing` (a
//! job declaring `verify_restore` has no passing test within its period plus `window`).
//! Pure.

use opsfleet_proto::api::RestoreTestView;

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
        if let Some(t) = &b.restore_test {
            for (rule, summary, value) in restore_test_conditions(rules, t, now, job, h) {
                push(rule, job, summary, value);
            }
        }
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

/// The restore test conditions of job `job` on host `h` at `now`: (rule, summary, value).
fn restore_test_conditions(
    rules: &Rules,
    t: &RestoreTestView,
    now: i64,
    job: &str,
    h: &str,
) -> Vec<(RuleKind, String, String)> {
    let mut out = Vec::new();
    if let Some(last) = t.last.as_ref().filter(|l| !l.passed) {
        if rules.get(RuleKind::RestoreTestFailed).is_some() {
            let archive = if last.archive.is_empty() {
                "no archive"
            } else {
                &last.archive
            };
            out.push((
                RuleKind::RestoreTestFailed,
                format!(
                    "restore test of backup {job} on {h} failed ({archive} from {}): {}",
                    last.source, last.reason
                ),
                last.at_unix_ms.to_string(),
            ));
        }
    }
    let (Some(rule), Some(every)) = (rules.get(RuleKind::RestoreTestMissing), t.every_ms) else {
        return out;
    };
    let every = i64::try_from(every).unwrap_or(i64::MAX);
    // A job never tested counts from its declaration.
    let since = t.last_passed_at_unix_ms.unwrap_or(t.declared_at_unix_ms);
    let age = now.saturating_sub(since);
    if age > every.saturating_add(rule.window_ms) {
        let what = if t.last_passed_at_unix_ms.is_some() {
            format!("the newest passing restore test is {}s old", age / 1000)
        } else {
            format!(
                "no restore test has passed in the {}s since verify_restore was declared",
                age / 1000
            )
        };
        out.push((
            RuleKind::RestoreTestMissing,
            format!(
                "backup {job} on {h}: {what} (verify_restore every {}s)",
                every / 1000
            ),
            format!("{}s", age / 1000),
        ));
    }
    out
}

#[cfg(test)]
#[path = "backup_rules_tests.rs"]
mod tests;
