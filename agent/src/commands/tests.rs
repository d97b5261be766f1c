//! Unit tests of the pure command decisions, payload validation and the ledger's encoding.

use std::collections::HashSet;

use opsfleet_proto::pb;
use opsfleet_proto::pb::command::Action;
use proptest::prelude::*;

use super::*;

const HOST: &str = "web-01";
const NOW: i64 = 1_790_000_000_000;

fn cmd(id: &str, epoch: u64, deadline: i64) -> pb::Command {
    pb::Command {
        id: id.to_owned(),
        epoch,
        issued_by: "alice".to_owned(),
        target: HOST.to_owned(),
        deadline_unix_ms: deadline,
        issued_unix_ms: NOW - 1000,
        action: Some(Action::Pause(pb::ModuleAction {
            module: "disk".to_owned(),
        })),
    }
}

fn catalog() -> Catalog {
    Catalog {
        modules: vec![("disk".to_owned(), "disk"), ("bk".to_owned(), "backup")],
        backup_jobs: vec![("bk".to_owned(), "app".to_owned())],
    }
}

#[test]
fn accepts_a_fresh_command_and_raises_the_epoch() {
    let v = decide(HOST, &cmd("c1", 7, NOW + 1000), 5, false, NOW, Ok(()));
    assert_eq!(v.outcome, Outcome::Accept);
    assert_eq!(v.highest_epoch, 7);
    let v = decide(HOST, &cmd("c1", 5, NOW), 5, false, NOW, Ok(()));
    assert_eq!(v.outcome, Outcome::Accept, "equal epoch");
}

#[test]
fn deadlines_are_required_and_capped_but_still_raise_the_epoch() {
    let v = decide(HOST, &cmd("d1", 8, 0), 5, false, NOW, Ok(()));
    let Outcome::Rejected { reason } = &v.outcome else {
        panic!("{v:?}")
    };
    assert!(
        reason.starts_with("refused by deadline: the command has no deadline"),
        "{reason}"
    );
    assert_eq!(v.highest_epoch, 8);
    let cap = MAX_DEADLINE_AHEAD_MS + CLOCK_SKEW_MS;
    let v = decide(HOST, &cmd("d2", 8, NOW + cap), 5, false, NOW, Ok(()));
    assert_eq!(v.outcome, Outcome::Accept, "exactly at the cap");
    let v = decide(HOST, &cmd("d3", 8, NOW + cap + 1), 5, false, NOW, Ok(()));
    let Outcome::Rejected { reason } = &v.outcome else {
        panic!("{v:?}")
    };
    assert!(
        reason.contains("ahead of this host's clock") && reason.contains("at most 1day"),
        "{reason}"
    );
    // Far-future and overflowing values are refused, not wrapped.
    assert!(deadline_problem(i64::MAX, NOW).is_err());
    assert!(deadline_problem(i64::MAX, i64::MAX - 1).is_ok());
    assert!(
        deadline_problem(NOW - 1, NOW).is_ok(),
        "past: expired, not rejected"
    );
}

#[test]
fn restore_targets_and_rollback_fingerprints_are_checked_before_accepting() {
    let restore = |target: &str| {
        Action::Restore(pb::Restore {
            module: "bk".into(),
            job: "app".into(),
            archive: String::new(),
            target: target.into(),
        })
    };
    let none = |_: &std::path::Path| None;
    let strict = crate::config::HostPolicy::default();
    let err = check_policy(Some(&restore("/srv/restore/x")), &strict, &none).unwrap_err();
    assert!(
        err.starts_with("refused by policy.restore_targets:"),
        "{err}"
    );
    let cfg = crate::config::parse_str(
        "host = \"web-01\"\n[policy]\nrestore_targets = [\"/srv/restore\"]\n",
    )
    .expect("config");
    let open = crate::config::HostPolicy::from_config(&cfg);
    assert!(check_policy(Some(&restore("/srv/restore/x")), &open, &none).is_ok());
    let err = check_policy(Some(&restore("/etc")), &open, &none).unwrap_err();
    assert!(
        err.contains("\"/etc\" is not under policy.restore_targets (/srv/restore)"),
        "{err}"
    );
    assert!(check_policy(Some(&Action::Noop(pb::Noop {})), &strict, &none).is_ok());
    let rollback = |fp: &str| {
        Action::ConfigRollback(pb::ConfigRollback {
            module: "disk".into(),
            fingerprint: fp.into(),
            config_toml: "type = \"disk\"".into(),
        })
    };
    assert!(validate(Some(&rollback("ab12")), &catalog()).is_ok());
    assert_eq!(
        validate(Some(&rollback("")), &catalog()),
        Err("config_rollback names no fingerprint".to_owned())
    );
}

#[test]
fn a_seen_id_is_a_silent_duplicate() {
    let v = decide(HOST, &cmd("c1", 9, 0), 5, true, NOW, Ok(()));
    assert_eq!(v.outcome, Outcome::Duplicate);
    assert_eq!(v.highest_epoch, 5, "a duplicate changes nothing");
    assert!(!v.records());
}

#[test]
fn a_lower_epoch_is_rejected_as_stale() {
    let v = decide(HOST, &cmd("c2", 3, 0), 5, false, NOW, Ok(()));
    assert_eq!(
        v.outcome,
        Outcome::Rejected {
            reason: STALE_EPOCH.to_owned()
        }
    );
    assert_eq!(v.highest_epoch, 5);
}

#[test]
fn a_passed_deadline_expires_but_still_raises_the_epoch() {
    let v = decide(HOST, &cmd("c3", 8, NOW - 1), 5, false, NOW, Ok(()));
    assert_eq!(v.outcome, Outcome::Expired);
    assert_eq!(v.highest_epoch, 8);
    let v = decide(HOST, &cmd("c3", 8, NOW), 5, false, NOW, Ok(()));
    assert_eq!(
        v.outcome,
        Outcome::Accept,
        "now == deadline is still in time"
    );
}

#[test]
fn another_hosts_command_is_rejected_without_touching_the_epoch() {
    let mut c = cmd("c4", 99, 0);
    c.target = "db-01".to_owned();
    let v = decide(HOST, &c, 5, false, NOW, Ok(()));
    assert!(matches!(v.outcome, Outcome::Rejected { ref reason } if reason.contains("db-01")));
    assert_eq!(v.highest_epoch, 5);
}

#[test]
fn a_bad_payload_is_rejected() {
    let v = decide(
        HOST,
        &cmd("c5", 6, NOW + 1),
        5,
        false,
        NOW,
        Err("nope".into()),
    );
    assert_eq!(
        v.outcome,
        Outcome::Rejected {
            reason: "nope".into()
        }
    );
    assert_eq!(v.highest_epoch, 6);
}

#[test]
fn validation_checks_modules_jobs_and_payloads() {
    let c = catalog();
    let module = |m: &str| pb::ModuleAction { module: m.into() };
    assert!(validate(Some(&Action::Pause(module("disk"))), &c).is_ok());
    let err = validate(Some(&Action::Resume(module("nginx"))), &c).unwrap_err();
    assert!(err.contains("unknown module \"nginx\""), "{err}");
    assert!(validate(None, &c).is_err());
    assert!(validate(Some(&Action::Noop(pb::Noop {})), &c).is_ok());
    assert!(validate(Some(&Action::Drain(pb::Drain {})), &c).is_ok());
    let restore = |module: &str, job: &str, target: &str| {
        Action::Restore(pb::Restore {
            module: module.into(),
            job: job.into(),
            archive: String::new(),
            target: target.into(),
        })
    };
    assert!(validate(Some(&restore("bk", "app", "/tmp/x")), &c).is_ok());
    assert!(validate(Some(&restore("bk", "db", "/tmp/x")), &c).is_err());
    assert!(validate(Some(&restore("disk", "app", "/tmp/x")), &c).is_err());
    assert!(validate(Some(&restore("bk", "app", "")), &c).is_err());
    let apply = |toml: &str| {
        Action::ConfigApply(pb::ConfigApply {
            module: "disk".into(),
            config_toml: toml.into(),
            fingerprint: String::new(),
        })
    };
    assert!(validate(Some(&apply("type = \"disk\"")), &c).is_ok());
    assert!(validate(Some(&apply("  ")), &c).is_err());
}

#[test]
fn backup_module_and_job_are_inferred_or_refused_clearly() {
    let mut c = catalog();
    // One backup module: a run names nothing, or just the job.
    assert_eq!(
        c.resolve_backup("", "", None),
        Ok(("bk".into(), String::new()))
    );
    assert_eq!(
        c.resolve_backup("", "app", None),
        Ok(("bk".into(), "app".into()))
    );
    let err = c.resolve_backup("", "db", None).unwrap_err();
    assert_eq!(err, "no backup job \"db\" on this host");
    // A restore's job comes from the archive name.
    let archive = "app-20260101T000000.000Z.tar.zst";
    assert_eq!(
        c.resolve_backup("", "", Some(archive)),
        Ok(("bk".into(), "app".into()))
    );
    let err = c
        .resolve_backup("", "", Some("other-20260101T000000.000Z.tar.zst"))
        .unwrap_err();
    assert!(err.contains("belongs to no backup job"), "{err}");
    let run = |module: &str, job: &str| {
        Action::BackupRun(pb::BackupRun {
            module: module.into(),
            job: job.into(),
        })
    };
    assert!(validate(Some(&run("", "")), &c).is_ok());
    assert!(validate(Some(&run("bk", "app")), &c).is_ok());
    assert!(validate(Some(&run("disk", "")), &c).is_err());
    // Two backup modules: the job picks one, nothing named is ambiguous.
    c.modules.push(("bk2".into(), "backup"));
    c.backup_jobs.push(("bk2".into(), "db".into()));
    assert_eq!(
        c.resolve_backup("", "db", None),
        Ok(("bk2".into(), "db".into()))
    );
    let err = c.resolve_backup("", "", None).unwrap_err();
    assert_eq!(
        err,
        "several backup modules (bk, bk2); name one with --module"
    );
}

#[test]
fn ledger_round_trips_and_lists_unfinished_ids() {
    let mut ledger = Ledger::default();
    let mut entries = Vec::new();
    for (id, status, epoch) in [
        ("a", Status::Accepted, 3),
        ("b", Status::Completed, 4),
        ("c", Status::Accepted, 2),
    ] {
        for w in ledger.writes(id, status, epoch, NOW) {
            entries.retain(|(k, _): &(String, Vec<u8>)| *k != w.key);
            entries.push((w.key, w.value.unwrap_or_default()));
        }
        ledger.commit(id, status, epoch, NOW);
    }
    entries.push(("cmd/bad".to_owned(), b"weird".to_vec()));
    let (loaded, _) = Ledger::from_entries(entries.clone());
    assert_eq!(loaded.seq(), (0, None), "no command decided yet");
    let seq = Ledger::seq_write(1234, "1796572800000000000");
    entries.push((seq.key, seq.value.unwrap_or_default()));
    let (loaded, bad) = Ledger::from_entries(entries);
    assert_eq!(bad, vec!["cmd/bad".to_owned()]);
    assert_eq!(
        loaded.seq(),
        (1234, Some("1796572800000000000")),
        "the fast path's cursor survives a restart, with the stream it counts in"
    );
    assert_eq!(loaded.highest_epoch(), 4);
    assert_eq!(loaded.status("b"), Some(Status::Completed));
    assert_eq!(loaded.unfinished(), vec!["a".to_owned(), "c".to_owned()]);
    assert!(
        ledger.writes("d", Status::Rejected, 1, NOW).len() == 1,
        "a lower epoch is never written"
    );
}

#[test]
fn finished_ids_are_pruned_once_no_deadline_can_be_pending() {
    let hour = 3_600_000;
    let rows = [
        (
            "old-done",
            format!("completed {}", NOW - LEDGER_KEEP_MS - 1),
        ),
        (
            "old-rejected",
            format!("rejected {}", NOW - LEDGER_KEEP_MS - hour),
        ),
        (
            "old-running",
            format!("accepted {}", NOW - 30 * LEDGER_KEEP_MS),
        ),
        ("edge", format!("failed {}", NOW - LEDGER_KEEP_MS)),
        ("fresh", format!("expired {}", NOW - hour)),
        ("no-time", "completed".to_owned()),
    ];
    let entries = rows
        .iter()
        .map(|(id, v)| (format!("cmd/{id}"), v.clone().into_bytes()))
        .collect();
    let (mut ledger, bad) = Ledger::from_entries(entries);
    assert!(bad.is_empty());
    let gone = ledger.prunable(NOW);
    assert_eq!(gone, ["no-time", "old-done", "old-rejected"]);
    let writes = Ledger::prune_writes(&gone);
    assert!(writes
        .iter()
        .all(|w| w.value.is_none() && w.key.starts_with("cmd/")));
    ledger.forget(&gone);
    assert_eq!(ledger.len(), 3);
    assert_eq!(
        ledger.status("old-running"),
        Some(Status::Accepted),
        "never pruned"
    );
    assert!(ledger.prunable(NOW).is_empty());
    assert_eq!(ledger.prunable(NOW + 1), ["edge"]);
    // A fresh row is kept for the whole window, then goes.
    ledger.commit("new", Status::Completed, 0, NOW);
    assert!(!ledger
        .prunable(NOW + LEDGER_KEEP_MS)
        .contains(&"new".to_owned()));
    assert!(ledger
        .prunable(NOW + LEDGER_KEEP_MS + 1)
        .contains(&"new".to_owned()));
}

proptest! {
    /// Whatever arrives, the persisted epoch never goes down, no id is accepted twice, and an
    /// accepted command never carries an epoch below one seen before it.
    #[test]
    fn epochs_are_monotone_and_ids_run_once(
        deliveries in proptest::collection::vec((0u8..12, 0u64..20, any::<bool>()), 1..80)
    ) {
        let mut ledger = Ledger::default();
        let mut accepted = HashSet::new();
        let mut highest_before = 0u64;
        for (n, (id, epoch, late)) in deliveries.into_iter().enumerate() {
            let id = format!("c{id}");
            let deadline = if late { NOW - 1 } else { NOW + 1 };
            let c = cmd(&id, epoch, deadline);
            let seen = ledger.status(&id).is_some();
            let v = decide(HOST, &c, ledger.highest_epoch(), seen, NOW, Ok(()));
            prop_assert!(v.highest_epoch >= ledger.highest_epoch());
            if v.outcome == Outcome::Accept {
                prop_assert!(accepted.insert(id.clone()), "{id} accepted twice");
                prop_assert!(epoch >= highest_before);
            }
            if v.records() {
                let status = match v.outcome {
                    Outcome::Accept => Status::Accepted,
                    Outcome::Expired => Status::Expired,
                    _ => Status::Rejected,
                };
                ledger.commit(&id, status, v.highest_epoch, NOW);
            }
            highest_before = ledger.highest_epoch();
            prop_assert!(n < 1000);
        }
    }
}

#[test]
fn only_the_hosts_own_command_consumer_delivers_commands() {
    let own = Some(("OPS_CMDS", "agent-web-01"));
    assert!(delivered_by_own_consumer(HOST, "ops.cmd.web-01", own));
    // A push consumer on the events stream aimed at the agent's inbox.
    assert!(!delivered_by_own_consumer(
        HOST,
        "ops.evt.web-02.heartbeat",
        Some(("OPS_EVENTS", "opsctl-x"))
    ));
    // Another host's command, its own consumer or a foreign one.
    assert!(!delivered_by_own_consumer(
        HOST,
        "ops.cmd.web-02",
        Some(("OPS_CMDS", "agent-web-02"))
    ));
    assert!(!delivered_by_own_consumer(HOST, "ops.cmd.web-02", own));
    // The right subject, but not delivered by agent-web-01 on OPS_CMDS.
    assert!(!delivered_by_own_consumer(
        HOST,
        "ops.cmd.web-01",
        Some(("OPS_CMDS", "opsctl-x"))
    ));
    assert!(!delivered_by_own_consumer(
        HOST,
        "ops.cmd.web-01",
        Some(("OPS_DLQ", "agent-web-01"))
    ));
    // A plain publish: no ack metadata at all.
    assert!(!delivered_by_own_consumer(HOST, "ops.cmd.web-01", None));
}

fn restore_of(job: &str, archive: &str, target: &str) -> Action {
    Action::Restore(pb::Restore {
        module: String::new(),
        job: job.into(),
        archive: archive.into(),
        target: target.into(),
    })
}

#[test]
fn a_relative_restore_target_is_refused_naming_it() {
    for target in ["restored", "./x", "../etc", "srv/restore"] {
        let err = validate(Some(&restore_of("app", "latest", target)), &catalog()).unwrap_err();
        assert!(
            err.contains(&format!("{target:?} is a relative path")) && err.contains("absolute"),
            "{err}"
        );
    }
    assert_eq!(
        validate(Some(&restore_of("app", "latest", "")), &catalog()),
        Err("restore needs a target directory".to_owned())
    );
    assert!(validate(Some(&restore_of("app", "latest", "/srv/r")), &catalog()).is_ok());
}

#[test]
fn latest_names_the_newest_archive_of_the_only_or_named_job() {
    let c = catalog();
    for (job, archive) in [
        ("", "latest"),
        ("", ""),
        ("app", "latest"),
        ("app", " latest "),
    ] {
        let Some(Action::Restore(r)) = Some(restore_of(job, archive, "/srv/r")) else {
            unreachable!()
        };
        assert_eq!(restore_archive(&r), None, "{job:?} {archive:?}");
        assert_eq!(
            c.resolve_restore(&r),
            Ok(("bk".to_owned(), "app".to_owned()))
        );
    }
    let two = Catalog {
        modules: vec![("bk".to_owned(), "backup")],
        backup_jobs: vec![
            ("bk".to_owned(), "app".to_owned()),
            ("bk".to_owned(), "db".to_owned()),
        ],
    };
    let err = validate(Some(&restore_of("", "latest", "/srv/r")), &two).unwrap_err();
    assert!(
        err.contains("needs --job") && err.contains("app, db"),
        "{err}"
    );
    assert!(validate(Some(&restore_of("db", "latest", "/srv/r")), &two).is_ok());
}

#[test]
fn a_commands_config_snapshot_is_published_under_its_service() {
    let snapshot = pb::event::Body::ServiceConfig(pb::ServiceConfigSnapshot {
        service: "vision".to_owned(),
        cause: "applied".to_owned(),
        ..Default::default()
    });
    assert_eq!(super::body_module(&snapshot), "vision");
    let restored = pb::event::Body::RestoreFailed(pb::RestoreFailed::default());
    assert_eq!(super::body_module(&restored), crate::config::AGENT_MODULE);
}
