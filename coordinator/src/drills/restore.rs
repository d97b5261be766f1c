//! The `restore_test` drill's judgement (pure): each host's result from its `restore_tested`
//! event (the one whose `requested_by` is the command the drill sent it) or, without one, from
//! its command's state in the ledger (failed, rejected, expired: the test did not run); the
//! run's verdict — passed only when every host passed — and its detail, one entry per host:
//! `web-01 passed (local, 12 files) in 340 ms; db-01 failed: check exited 1`.

use opsfleet_proto::api::CommandState;

/// A host's restore test as its `restore_tested` event told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tested {
    pub passed: bool,
    /// `local`, or the remote destination the archive was read from.
    pub source: String,
    pub files: u64,
    pub duration_ms: u64,
    /// Why it failed (empty when it passed).
    pub reason: String,
}

/// Where one host of a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed(Tested),
    /// The test failed, or never ran: why.
    Failed(String),
    /// No result yet: how its command stands.
    Waiting(String),
}

/// A host's outcome from its `restore_tested` event, if one arrived, else from its command's
/// state and detail in the ledger (`None`: not folded yet).
pub fn outcome(tested: Option<&Tested>, command: Option<(CommandState, &str)>) -> Outcome {
    if let Some(t) = tested {
        return if t.passed {
            Outcome::Passed(t.clone())
        } else if t.reason.is_empty() {
            Outcome::Failed("the restore test failed".to_owned())
        } else {
            Outcome::Failed(t.reason.clone())
        };
    }
    match command {
        None => Outcome::Waiting("its command not in the ledger yet".to_owned()),
        Some((CommandState::Completed, _)) => {
            Outcome::Waiting("its command completed; its restore_tested not folded yet".to_owned())
        }
        Some((state, detail)) if state.is_final() => Outcome::Failed(if detail.is_empty() {
            format!("command {}", state.as_str())
        } else {
            format!("command {}: {detail}", state.as_str())
        }),
        Some((state, _)) => Outcome::Waiting(format!("command {}", state.as_str())),
    }
}

/// One host's entry in the run's detail.
fn entry(host: &str, o: &Outcome) -> String {
    match o {
        Outcome::Passed(t) => format!(
            "{host} passed ({}, {} files) in {} ms",
            t.source, t.files, t.duration_ms
        ),
        Outcome::Failed(why) => format!("{host} failed: {why}"),
        Outcome::Waiting(how) => format!("{host} no result: {how}"),
    }
}

/// The run's verdict once every host has a result — or at once when `gave_up` (its time is
/// out; a host still waiting fails it): `Ok(detail)` when every host passed, `Err(detail)`
/// otherwise. `skipped`: hosts the selector matched that have no backup module (named in
/// the detail; they do not fail the run). `None`: some host still waits.
pub fn verdict(
    hosts: &[(String, Outcome)],
    skipped: &[(String, String)],
    gave_up: bool,
) -> Option<Result<String, String>> {
    let waiting = hosts.iter().any(|(_, o)| matches!(o, Outcome::Waiting(_)));
    if waiting && !gave_up {
        return None;
    }
    let mut parts: Vec<String> = hosts.iter().map(|(h, o)| entry(h, o)).collect();
    parts.extend(skipped.iter().map(|(h, why)| format!("{h} skipped: {why}")));
    let detail = parts.join("; ");
    let passed = !hosts.is_empty() && hosts.iter().all(|(_, o)| matches!(o, Outcome::Passed(_)));
    Some(if passed { Ok(detail) } else { Err(detail) })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tested(passed: bool, reason: &str) -> Tested {
        Tested {
            passed,
            source: "local".into(),
            files: 12,
            duration_ms: 340,
            reason: reason.into(),
        }
    }

    #[test]
    fn a_host_is_judged_by_its_event_else_by_its_command() {
        let ok = tested(true, "");
        assert_eq!(outcome(Some(&ok), None), Outcome::Passed(ok.clone()));
        let bad = tested(false, "check exited 1");
        // The event wins over the ledger, whatever the command's state.
        assert_eq!(
            outcome(Some(&bad), Some((CommandState::Completed, ""))),
            Outcome::Failed("check exited 1".into())
        );
        assert_eq!(
            outcome(
                None,
                Some((CommandState::Rejected, "not allowed by policy"))
            ),
            Outcome::Failed("command rejected: not allowed by policy".into())
        );
        assert_eq!(
            outcome(None, Some((CommandState::Expired, ""))),
            Outcome::Failed("command expired".into())
        );
        for state in [
            CommandState::Issued,
            CommandState::Accepted,
            CommandState::Completed,
        ] {
            assert!(matches!(
                outcome(None, Some((state, ""))),
                Outcome::Waiting(_)
            ));
        }
        assert!(matches!(outcome(None, None), Outcome::Waiting(_)));
    }

    #[test]
    fn passed_only_when_every_host_passed_and_the_detail_names_each() {
        let web = ("web-01".to_owned(), Outcome::Passed(tested(true, "")));
        let db = ("db-01".to_owned(), Outcome::Failed("check exited 1".into()));
        let waiting = (
            "db-02".to_owned(),
            Outcome::Waiting("command accepted".into()),
        );
        let skipped = [("web-02".to_owned(), "no backup module".to_owned())];

        assert_eq!(
            verdict(std::slice::from_ref(&web), &skipped, false),
            Some(Ok(
                "web-01 passed (local, 12 files) in 340 ms; web-02 skipped: no backup module"
                    .into()
            ))
        );
        assert_eq!(
            verdict(&[web.clone(), db.clone()], &[], false),
            Some(Err(
                "web-01 passed (local, 12 files) in 340 ms; db-01 failed: check exited 1".into()
            ))
        );
        // A host still waiting: no verdict, until the time is out, when it fails the run.
        assert_eq!(verdict(&[web.clone(), waiting.clone()], &[], false), None);
        assert_eq!(
            verdict(&[web, waiting], &[], true),
            Some(Err(
                "web-01 passed (local, 12 files) in 340 ms; db-02 no result: command accepted"
                    .into()
            ))
        );
        // No host tested is no pass.
        assert!(matches!(verdict(&[], &skipped, false), Some(Err(_))));
    }

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            (0u64..100, 0u64..10_000).prop_map(|(files, ms)| Outcome::Passed(Tested {
                passed: true,
                source: "local".into(),
                files,
                duration_ms: ms,
                reason: String::new(),
            })),
            "[a-z ]{0,12}".prop_map(Outcome::Failed),
            "[a-z ]{0,12}".prop_map(Outcome::Waiting),
        ]
    }

    proptest! {
        #[test]
        fn the_verdict_waits_for_every_host_and_passes_only_when_all_passed(
            outcomes in proptest::collection::vec(any_outcome(), 0..6),
            gave_up: bool,
        ) {
            let hosts: Vec<(String, Outcome)> = (outcomes.into_iter().enumerate())
                .map(|(i, o)| (format!("host-{i:02}"), o))
                .collect();
            let waiting = hosts.iter().any(|(_, o)| matches!(o, Outcome::Waiting(_)));
            let all_passed =
                !hosts.is_empty() && hosts.iter().all(|(_, o)| matches!(o, Outcome::Passed(_)));
            match verdict(&hosts, &[], gave_up) {
                None => prop_assert!(waiting && !gave_up),
                Some(v) => {
                    prop_assert!(!waiting || gave_up);
                    prop_assert_eq!(v.is_ok(), all_passed);
                    let detail = v.unwrap_or_else(|e| e);
                    for (h, _) in &hosts {
                        prop_assert!(detail.contains(h.as_str()), "{} in {}", h, detail);
                    }
                }
            }
        }
    }
}
