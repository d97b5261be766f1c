//! The restore test fold: the newest test and the newest pass are kept whatever order events
//! come in, and a job keeps its declaration only while a backup module's current config
//! declares it (a module that left, or whose config is unknown, is handled as documented).

use std::collections::BTreeMap;

use opsfleet_proto::api::{ModuleState, Truncated};
use opsfleet_proto::pb;

use super::*;
use crate::projection::host::KnownConfig;

fn test_at(passed: bool) -> pb::RestoreTested {
    pb::RestoreTested {
        job: "pg".into(),
        archive: "pg-a".into(),
        source: "local".into(),
        passed,
        ..Default::default()
    }
}

#[test]
fn the_newest_test_and_the_newest_pass_win_in_any_order() {
    let mut slot = None;
    tested(&mut slot, &test_at(true), 100);
    tested(&mut slot, &test_at(false), 300);
    // A late, older pass: the newest test stays the failure, the newest pass stays 100 → 200.
    tested(&mut slot, &test_at(true), 200);
    let v = slot.expect("view");
    let last = v.last.as_ref().expect("last");
    assert_eq!((last.passed, last.at_unix_ms), (false, 300));
    assert_eq!(v.last_passed_at_unix_ms, Some(200));
    assert_eq!(v.state(), "failed");
}

fn module(fp: &str, toml: Option<&str>) -> ModuleInfo {
    ModuleInfo {
        kind: BACKUP_KIND.into(),
        state: ModuleState::Running,
        reason: String::new(),
        config_fingerprint: fp.into(),
        expected_interval_ms: 10_000,
        version: Version::default(),
        last_report_unix_ms: 0,
        configs: toml
            .map(|t| KnownConfig {
                fingerprint: fp.into(),
                toml: t.into(),
                first_seen_unix_ms: 0,
                last_seen_unix_ms: 0,
            })
            .into_iter()
            .collect(),
    }
}

fn config(jobs: &[(&str, &str)]) -> String {
    let mut t = "type = \"backup\"\n".to_owned();
    for (name, every) in jobs {
        t.push_str(&format!(
            "[[jobs]]\nname = \"{name}\"\nsources = [\"/srv/{name}\"]\ndestination = \"/b/{name}\"\n"
        ));
        if !every.is_empty() {
            t.push_str(&format!("verify_restore = \"{every}\"\n"));
        }
    }
    t
}

fn every(backups: &BTreeMap<String, BackupJob>, job: &str) -> Option<(Option<u64>, i64)> {
    let v = backups.get(job)?.restore_test.as_ref()?;
    Some((v.every_ms, v.declared_at_unix_ms))
}

#[test]
fn declarations_follow_the_modules_current_configs() {
    let mut t = Truncated::default();
    let mut backups = BTreeMap::new();
    let a = config(&[("pg", "weekly"), ("files", "")]);
    let mut modules = BTreeMap::from([("backup".to_owned(), module("fa", Some(&a)))]);
    declare(&modules, &mut backups, 10, &mut t);
    let week = 7 * 86_400_000;
    assert_eq!(every(&backups, "pg"), Some((Some(week), 10)));
    assert_eq!(every(&backups, "files"), None);
    // The same declaration seen again (a restart) keeps its start.
    declare(&modules, &mut backups, 20, &mut t);
    assert_eq!(every(&backups, "pg"), Some((Some(week), 10)));
    // A config not in the log (unknown fingerprint): declarations are kept.
    modules.insert("backup".into(), module("fb", None));
    declare(&modules, &mut backups, 30, &mut t);
    assert_eq!(every(&backups, "pg"), Some((Some(week), 10)));
    // A second module declares `files`; the first one's new config drops `pg`.
    let b = config(&[("files", "1h")]);
    modules.insert("backup".into(), module("fc", Some(&config(&[("pg", "")]))));
    modules.insert("backup-2".into(), module("fd", Some(&b)));
    declare(&modules, &mut backups, 40, &mut t);
    assert_eq!(every(&backups, "pg"), Some((None, 10)));
    assert_eq!(every(&backups, "files"), Some((Some(3_600_000), 40)));
    // The module left: its declarations go.
    modules.remove("backup-2");
    declare(&modules, &mut backups, 50, &mut t);
    assert_eq!(every(&backups, "files"), Some((None, 40)));
}
