//! Scheduled drills' history, folded from the active coordinator's `drill_run` events: per
//! drill (row `drill/<name>`) the newest `RUNS_KEPT` runs from `started` to `passed` or
//! `failed`, the newest slot a run claimed, and when a run last passed and failed. What is
//! due next is derived from it (`drills::schedule`), so it is the log, not a coordinator's
//! memory, that says whether a slot was run. Pure.

use std::collections::BTreeMap;

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

use super::bounds::clip;
use super::runs::{self, Run, Step};

/// Runs kept per drill (oldest dropped first).
pub const RUNS_KEPT: usize = 16;
/// Drills with a history kept (a backstop: drills are named in the coordinators' config).
pub const DRILLS_KEPT: usize = 256;

/// One run as its events told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub run_id: String,
    pub kind: String,
    /// The slot it fills (0: asked by an operator).
    pub slot_unix_ms: i64,
    pub epoch: u64,
    pub requested_by: String,
    /// "started", "passed", "failed".
    pub phase: String,
    /// The recording coordinator's clock at the start and at the result (0 while running).
    pub started_unix_ms: i64,
    #[serde(default)]
    pub ended_unix_ms: i64,
    #[serde(default)]
    pub took_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl DrillRecord {
    pub fn is_running(&self) -> bool {
        self.phase == "started"
    }
}

impl Run for DrillRecord {
    fn is_running(&self) -> bool {
        DrillRecord::is_running(self)
    }
    fn close(&mut self, step: &Step<'_>) {
        self.phase = clip(step.phase);
        self.ended_unix_ms = step.at_unix_ms;
        self.took_ms = step.took_ms;
        self.detail = clip(step.detail);
    }
}

/// A drill's runs, oldest first, and what the schedule needs even after they are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillHistory {
    pub runs: Vec<DrillRecord>,
    /// The newest slot a run started for (0: none): that slot is never run again.
    pub last_slot_unix_ms: i64,
    /// When a run last passed, and last failed (0: never).
    pub last_passed_unix_ms: i64,
    pub last_failed_unix_ms: i64,
}

impl DrillHistory {
    /// The runs started and not ended.
    pub fn open(&self) -> impl Iterator<Item = &DrillRecord> {
        self.runs.iter().filter(|r| r.is_running())
    }

    /// The newest ended run.
    pub fn last_ended(&self) -> Option<&DrillRecord> {
        self.runs.iter().rev().find(|r| !r.is_running())
    }
}

/// Folds one `drill_run` event recorded at `at_unix_ms`; the drill changed, if it did. A
/// `started` opens a run and claims its slot; a `passed` or `failed` closes the run of the
/// same id (or, when it is not open, is kept as a record of its own).
pub fn fold(
    drills: &mut BTreeMap<String, DrillHistory>,
    d: &pb::DrillRun,
    at_unix_ms: i64,
) -> Option<String> {
    let history = runs::history(drills, &d.drill, DRILLS_KEPT)?;
    match d.phase.as_str() {
        "passed" => history.last_passed_unix_ms = history.last_passed_unix_ms.max(at_unix_ms),
        "failed" => history.last_failed_unix_ms = history.last_failed_unix_ms.max(at_unix_ms),
        _ => history.last_slot_unix_ms = history.last_slot_unix_ms.max(d.slot_unix_ms),
    }
    let step = Step {
        phase: &d.phase,
        at_unix_ms,
        took_ms: d.took_ms,
        detail: &d.detail,
    };
    let same = |r: &DrillRecord| r.run_id == d.run_id;
    runs::fold(
        &mut history.runs,
        &step,
        ["passed", "failed"],
        RUNS_KEPT,
        same,
        |ended| DrillRecord {
            run_id: clip(&d.run_id),
            kind: clip(&d.kind),
            slot_unix_ms: d.slot_unix_ms,
            epoch: d.epoch,
            requested_by: clip(&d.requested_by),
            phase: clip(&d.phase),
            started_unix_ms: at_unix_ms,
            ended_unix_ms: ended,
            took_ms: d.took_ms,
            detail: clip(&d.detail),
        },
    );
    Some(d.drill.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(phase: &str, run: &str, slot: i64) -> pb::DrillRun {
        pb::DrillRun {
            drill: "notify".into(),
            kind: "notification_test".into(),
            phase: phase.into(),
            run_id: run.into(),
            slot_unix_ms: slot,
            epoch: 3,
            requested_by: "schedule".into(),
            took_ms: if phase == "started" { 0 } else { 40 },
            detail: String::new(),
        }
    }

    #[test]
    fn a_run_opens_claims_its_slot_closes_and_the_history_is_bounded() {
        let mut drills = BTreeMap::new();
        assert_eq!(
            fold(&mut drills, &ev("started", "r1", 1_000), 1_100),
            Some("notify".into())
        );
        let h = &drills["notify"];
        assert_eq!((h.last_slot_unix_ms, h.open().count()), (1_000, 1));
        fold(&mut drills, &ev("passed", "r1", 1_000), 1_200);
        let h = &drills["notify"];
        assert_eq!(h.open().count(), 0);
        assert_eq!((h.runs.len(), h.last_passed_unix_ms), (1, 1_200));
        assert_eq!(h.last_ended().map(|r| r.took_ms), Some(40));
        // An operator's run claims no slot.
        fold(&mut drills, &ev("started", "r2", 0), 1_300);
        fold(&mut drills, &ev("failed", "r2", 0), 1_400);
        let h = &drills["notify"];
        assert_eq!((h.last_slot_unix_ms, h.last_failed_unix_ms), (1_000, 1_400));
        for i in 0..40 {
            fold(
                &mut drills,
                &ev("started", &format!("x{i}"), 2_000 + i),
                3_000,
            );
        }
        let h = &drills["notify"];
        assert_eq!(h.runs.len(), RUNS_KEPT);
        assert_eq!(h.last_slot_unix_ms, 2_039);
        assert_eq!(fold(&mut drills, &pb::DrillRun::default(), 1), None);
    }
}
