//! A backup job's restore tests: folds `restore_tested` into `BackupJob::restore_test`, and
//! the jobs' declared `verify_restore` periods, read from their backup modules' configs (as
//! the modules' `module_state` events carried them), so `restore_test_missing` knows what to
//! expect. Pure.

use std::collections::BTreeMap;

use opsfleet_agent::config::{parse_module_toml, ModuleConfig};
use opsfleet_proto::api::{RestoreTestResultView, RestoreTestView, Truncated};
use opsfleet_proto::pb;

use super::super::bounds::clip;
use super::super::seq::Version;
use super::{backup_job, BackupJob};
use crate::projection::ModuleInfo;

/// The module kind that declares restore tests.
pub const BACKUP_KIND: &str = "backup";

/// Folds one test: the newest (agent clock) is kept, and the newest pass.
pub(super) fn tested(slot: &mut Option<RestoreTestView>, t: &pb::RestoreTested, at: i64) {
    let v = slot.get_or_insert_with(RestoreTestView::default);
    if t.passed {
        v.last_passed_at_unix_ms = Some(v.last_passed_at_unix_ms.map_or(at, |p| p.max(at)));
    }
    if v.last.as_ref().is_none_or(|l| l.at_unix_ms <= at) {
        v.last = Some(RestoreTestResultView {
            archive: clip(&t.archive),
            source: clip(&t.source),
            passed: t.passed,
            files: t.files,
            bytes: t.bytes,
            duration_ms: t.duration_ms,
            check: clip(&t.check),
            reason: clip(&t.reason),
            requested_by: clip(&t.requested_by),
            at_unix_ms: at,
        });
    }
}

/// The periods (ms) the jobs of one backup module config declare, by job.
fn declared_by(toml: &str) -> Option<BTreeMap<String, u64>> {
    let ModuleConfig::Backup(c) = parse_module_toml(toml).ok()? else {
        return Some(BTreeMap::new());
    };
    Some(
        c.jobs
            .iter()
            .filter_map(|j| {
                let every = j.verify_restore?;
                Some((
                    j.name.clone(),
                    u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
                ))
            })
            .collect(),
    )
}

/// Brings the jobs' declarations up to date with the host's backup modules and their current
/// configs, at `at` (agent clock): a job a module declares gets its period (counted from
/// `at` when new or changed); a declaration whose module left, or whose module's current
/// config no longer declares it, is dropped. A module whose current config is not known (not
/// in the log) keeps its declarations.
pub fn declare(
    modules: &BTreeMap<String, ModuleInfo>,
    backups: &mut BTreeMap<String, BackupJob>,
    at: i64,
    t: &mut Truncated,
) {
    let mut known: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut unknown: Vec<&str> = Vec::new();
    for (name, m) in modules.iter().filter(|(_, m)| m.kind == BACKUP_KIND) {
        let current = (m.configs.iter()).find(|c| c.fingerprint == m.config_fingerprint);
        match current.and_then(|c| declared_by(&c.toml)) {
            Some(jobs) => {
                known.insert(name, jobs);
            }
            None => unknown.push(name),
        }
    }
    for (module, jobs) in &known {
        for (job, every) in jobs {
            let Some(entry) = backup_job(backups, job, &Version::default(), t) else {
                continue;
            };
            let v = entry
                .restore_test
                .get_or_insert_with(RestoreTestView::default);
            if v.every_ms != Some(*every) || v.module != *module {
                v.every_ms = Some(*every);
                v.module = clip(module);
                v.declared_at_unix_ms = at;
            }
        }
    }
    for (job, entry) in backups.iter_mut() {
        let Some(v) = entry.restore_test.as_mut().filter(|v| v.every_ms.is_some()) else {
            continue;
        };
        let still = match known.get(v.module.as_str()) {
            Some(jobs) => jobs.contains_key(job),
            None => unknown.contains(&v.module.as_str()),
        };
        if !still {
            v.every_ms = None;
            v.module.clear();
        }
    }
}

#[cfg(test)]
mod tests;
