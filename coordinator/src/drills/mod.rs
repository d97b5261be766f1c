//! Drills that run themselves: `[[drills]]` (`config`), the pure schedule (`schedule`: what
//! is due, from the drill's history folded from the log), and the active coordinator's driver
//! (`driver`: records a run's start durably before it acts, runs it, records the result;
//! operators' runs reach it through `ask`; `handover`: the `coordinator_failover` drill;
//! `restore_run`: the `restore_test` drill, judged by `restore`). The
//! alert conditions `drill_overdue` / `drill_failed` are the alert engine's
//! (`alerts/drill_rules.rs`).

pub mod ask;
pub mod config;
pub mod driver;
pub mod handover;
pub mod restore;
pub mod restore_run;
pub mod schedule;

#[cfg(test)]
mod schedule_tests;

pub use config::DrillConfig;
