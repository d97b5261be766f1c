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
        let mut records: BTreeMap<String, Record> = BTreeMap::new();
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
        let mut modules = Vec::new();
        let mut starts = Vec::new();
        let mut rewrites: Vec<(String, Option<Record>)> = Vec::new();
        for (idx, entry) in entries.iter_mut().enumerate() {
            let file_cfg = configs.get(&entry.name).cloned();
            let file_fp = entry.fingerprint.clone();
            let record = records.remove(&entry.name);
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
            if plan.dropped_override && !plan.refused_by.is_empty() {
                let rules = plan.refused_by.join(", ");
                warn!(module = %entry.name, rules, "run-time config override refused by the host policy; the file wins");
                reason.push_str(&format!("; run-time config dropped (refused by {rules})"));
            } else if plan.dropped_override {
                info!(module = %entry.name, "config file changed since the run-time override; the file wins");
                reason.push_str("; run-time config dropped (file changed)");
            }
            if plan.dropped_override {
                if let Some(mut r) = record {
                    r.config = None;
                    r.file_fingerprint = file_fp.clone();
                    let keep = r.state != RunState::Running;
                    rewrites.push((entry.name.clone(), keep.then_some(r)));
                }
            }
            let kind = entry.module.kind();
            board.update(idx, |s| {
                s.state = plan.state.to_pb();
                s.kind = kind;
                s.interval = entry.interval;
                s.fingerprint = entry.fingerprint.clone();
            });
            starts.push(state_event(
                &entry.name,
                kind,
                plan.state,
                &reason,
                &entry.fingerprint,
                config.as_ref(),
            ));
            modules.push(Controlled {
                name: entry.name.clone(),
                kind,
                state: plan.state,
                config,
                fingerprint: entry.fingerprint.clone(),
                file_fingerprint: file_fp,
                has_override,
                swap: None,
                trigger: None,
            });
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
        for (module, record) in rewrites {
            let value = record.and_then(|r| serde_json::to_vec(&r).ok());
            // Best effort at start: a failed rewrite is retried by the next change.
            let outbox = ctl.outbox.clone();
            tokio::spawn(async move {
                if let Err(e) = outbox.put_control(&module, value).await {
                    warn!(module, error = %ErrorChain(&e), "cannot rewrite control record");
                }
            });
        }
        (ctl, starts)
    }
}
