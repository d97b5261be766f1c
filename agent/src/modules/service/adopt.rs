//! Surviving an agent crash: the record of the running child (pid, its start time in
//! /proc/<pid>/stat, the config it runs), persisted by the module, and the checks that let a
//! new agent adopt that child instead of starting a second copy.

use serde::{Deserialize, Serialize};

use crate::config::ServiceConfig;

/// Key of the record in the module's persisted state.
pub const CHILD_KEY: &str = "child";

/// The child a previous agent left running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub pid: u32,
    /// Field 22 of /proc/<pid>/stat (clock ticks since boot): tells a reused pid apart.
    pub start_ticks: u64,
    /// The config it was started with (canonical JSON); a changed config is not adopted.
    pub config: String,
}

/// The config as the record keeps it.
pub fn config_text(cfg: &ServiceConfig) -> String {
    // A plain data struct: serialising cannot fail.
    serde_json::to_string(cfg).unwrap_or_default()
}

/// What /proc/<pid>/stat says about a process: (state char, process group, start ticks).
pub fn proc_stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `comm` is in parentheses and may hold spaces or parentheses: the rest follows the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, pgrp, start))
}

/// A record for a child just started: `None` when it is already gone.
pub fn record(pid: u32, cfg: &ServiceConfig) -> Option<ChildRecord> {
    let (_, _, start_ticks) = proc_stat(pid)?;
    Some(ChildRecord {
        pid,
        start_ticks,
        config: config_text(cfg),
    })
}

/// Whether the process of `rec` still runs as the leader of its own group (not a zombie, same
/// start time: not a reused pid).
pub fn alive(rec: &ChildRecord) -> bool {
    matches!(
        proc_stat(rec.pid),
        Some((state, pgrp, start))
            if state != 'Z' && state != 'X' && pgrp == rec.pid && start == rec.start_ticks
    )
}

/// The record to adopt for `cfg`: still alive, started with the same config.
pub fn adoptable(rec: &ChildRecord, cfg: &ServiceConfig) -> bool {
    rec.config == config_text(cfg) && alive(rec)
}
