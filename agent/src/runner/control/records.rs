//! The persisted `c/<module>` record, the pure start plan derived from it, and
//! `Controller::restore`, which applies the records to the modules at start.

use opsfleet_report::ErrorChain;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{state_event, Controlled, Controller, RunState};
use crate::config::{fs_resolve, module_problems, HostPolicy, ModuleConfig, Surface, Violation};
use crate::modules::{self, HealthBoard};
use crate::outbox::{NewEvent, Outbox};
use crate::runner::{ModuleEntry, RunOutput, StatusBoard};

/// The persisted `c/<module>` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub state: RunState,
    #[serde(default)]
    pub reason: String,
    /// Run-time config override, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ModuleConfig>,
    /// Fingerprint of the file's entry when the override was made.
    #[serde(default)]
    pub file_fingerprint: String,
    #[serde(default)]
    pub changed_unix_ms: i64,
}

/// What a module starts with (pure decision from its record and its file entry).
#[derive(Debug, Clone, PartialEq)]
pub struct StartPlan {
    pub state: RunState,
    /// The override to use instead of the file's entry.
    pub config: Option<ModuleConfig>,
    /// The record held an override that no longer applies (file changed) and must be rewritten.
    pub dropped_override: bool,
    /// The host policy rules the dropped override breaks (empty: dropped because the file
    /// changed or it no longer validates).
    pub refused_by: Vec<&'static str>,
}

/// What a module starts with: its persisted run state, and its override only while the file's
/// entry is unchanged, the override still validates and `policy` (the host policy's verdict
/// on a remote config) finds nothing against it. Pure given `policy`.
pub fn start_plan(
    record: Option<&Record>,
    file_fingerprint: &str,
    policy: &dyn Fn(&ModuleConfig) -> Vec<Violation>,
) -> StartPlan {
    let Some(r) = record else {
        return StartPlan {
            state: RunState::Running,
            config: None,
            dropped_override: false,
            refused_by: Vec::new(),
        };
    };
    let mut refused_by = Vec::new();
    let (config, dropped_override) = match &r.config {
        None => (None, false),
        Some(c) if r.file_fingerprint == file_fingerprint && module_problems(c).is_empty() => {
            refused_by = policy(c).into_iter().map(|v| v.rule).collect();
            refused_by.dedup();
            if refused_by.is_empty() {
                (Some(c.clone()), false)
            } else {
                (None, true)
            }
        }
        Some(_) => (None, true),
    };
    StartPlan {
        state: r.state,
        config,
        dropped_override,
        refused_by,
    }
}

impl Controller {
    /// Applies the persisted control records to `entries` (state, config overrides) and
    /// returns the controller plus one `module_state` event per module, in order.
    pub(crate) fn restore(
        outbox: Arc<Outbox>,
        board: StatusBoard,
        health: HealthBoard,
        events: mpsc::Sender<RunOutput>,
        entries: &mut [ModuleEntry],
        configs: &BTreeMap<String, ModuleConfig>,
        policy: Arc<HostPolicy>,
    ) -> (Controller, Vec<NewEvent>) {
        let mut records = read_records(&outbox);
        let mut modules = Vec::new();
        let mut starts = Vec::new();
        let mut rewrites: Vec<(String, Option<Record>)> = Vec::new();
        for (idx, entry) in entries.iter_mut().enumerate() {
            let file_cfg = configs.get(&entry.name).cloned();
            let record = records.remove(&entry.name);
            let restored = restore_one(entry, file_cfg, record, &policy);
            let kind = restored.module.kind;
            board.update(idx, |s| {
                s.state = restored.module.state.to_pb();
                s.kind = kind;
                s.interval = entry.interval;
                s.fingerprint = entry.fingerprint.clone();
            });
            starts.push(restored.start);
            modules.push(restored.module);
            if let Some(record) = restored.rewrite {
                rewrites.push((entry.name.clone(), record));
            }
        }
        for (module, _) in records {
            info!(
                module,
                "control record of a module no longer configured; deleted"
            );
            rewrites.push((module, None));
        }
        let ctl = Controller {
            outbox,
            board,
            health,
            events,
            modules,
            policy,
        };
        ctl.rewrite_records(rewrites);
        (ctl, starts)
    }

    /// Writes (or deletes, for `None`) the given control records in the background: best
    /// effort at start, a failed rewrite is retried by the next change.
    fn rewrite_records(&self, rewrites: Vec<(String, Option<Record>)>) {
        for (module, record) in rewrites {
            let value = record.and_then(|r| serde_json::to_vec(&r).ok());
            let outbox = self.outbox.clone();
            tokio::spawn(async move {
                if let Err(e) = outbox.put_control(&module, value).await {
                    warn!(module, error = %ErrorChain(&e), "cannot rewrite control record");
                }
            });
        }
    }
}

/// The modules whose persisted record says they were paused for `reason` (the reason an
/// `act` was called with, e.g. `drain`): what an undrain resumes. Ascending by name.
pub fn paused_for(outbox: &Outbox, reason: &str) -> Vec<String> {
    let wanted = format!("{} ({reason})", super::Action::Pause.as_str());
    read_records(outbox)
        .into_iter()
        .filter(|(_, r)| r.state == RunState::Paused && r.reason == wanted)
        .map(|(module, _)| module)
        .collect()
}

/// Every readable control record, by module (an unreadable one is logged and ignored; none
/// when the outbox cannot be read: all modules run).
fn read_records(outbox: &Outbox) -> BTreeMap<String, Record> {
    let mut records = BTreeMap::new();
    match outbox.control_records() {
        Ok(raw) => {
            for (module, value) in raw {
                match serde_json::from_slice::<Record>(&value) {
                    Ok(r) => {
                        records.insert(module, r);
                    }
                    Err(e) => {
                        warn!(module, error = %ErrorChain(&e), "unreadable control record; ignored")
                    }
                }
            }
        }
        Err(e) => {
            warn!(error = %ErrorChain(&e), "cannot read control records; all modules run")
        }
    }
    records
}

/// One module as restored at start.
struct Restored {
    module: Controlled,
    /// Its `module_state` event.
    start: NewEvent,
    /// Its record must be rewritten (`Some(None)`: deleted) because its override was dropped.
    rewrite: Option<Option<Record>>,
}

/// Applies `record` (if any) to `entry`: its run state, and its override while the start plan
/// keeps it (the entry's module is rebuilt from it).
fn restore_one(
    entry: &mut ModuleEntry,
    file_cfg: Option<ModuleConfig>,
    record: Option<Record>,
    policy: &HostPolicy,
) -> Restored {
    let file_fp = entry.fingerprint.clone();
    let file_kind = entry.module.kind();
    let check = |c: &ModuleConfig| {
        policy.check_module(&entry.name, file_kind, c, Surface::Command, &fs_resolve)
    };
    let plan = start_plan(record.as_ref(), &file_fp, &check);
    let mut reason = match plan.state {
        RunState::Running => "started".to_owned(),
        s => format!("started; {} at run time", s.as_str()),
    };
    let mut config = file_cfg;
    let has_override = plan.config.is_some();
    if let Some(c) = plan.config {
        entry.module = modules::build(&c);
        entry.interval = c.interval();
        entry.fingerprint = c.fingerprint();
        config = Some(c);
        reason.push_str("; run-time config");
    }
    let mut rewrite = None;
    if plan.dropped_override {
        reason.push_str(&dropped_reason(&entry.name, &plan.refused_by));
        rewrite = record.map(|mut r| {
            r.config = None;
            r.file_fingerprint = file_fp.clone();
            let keep = r.state != RunState::Running;
            keep.then_some(r)
        });
    }
    let kind = entry.module.kind();
    let start = state_event(
        &entry.name,
        kind,
        plan.state,
        &reason,
        &entry.fingerprint,
        config.as_ref(),
    );
    let module = Controlled {
        name: entry.name.clone(),
        kind,
        state: plan.state,
        config,
        fingerprint: entry.fingerprint.clone(),
        file_fingerprint: file_fp,
        has_override,
        swap: None,
        trigger: None,
    };
    Restored {
        module,
        start,
        rewrite,
    }
}

/// Logs why `module`'s run-time override was dropped (refused by the host policy's `rules`,
/// or none: the file changed) and returns the clause for its start reason.
fn dropped_reason(module: &str, rules: &[&'static str]) -> String {
    if rules.is_empty() {
        info!(module = %module, "config file changed since the run-time override; the file wins");
        return "; run-time config dropped (file changed)".to_owned();
    }
    let rules = rules.join(", ");
    warn!(module = %module, rules, "run-time config override refused by the host policy; the file wins");
    format!("; run-time config dropped (refused by {rules})")
}
