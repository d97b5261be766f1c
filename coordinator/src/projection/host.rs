//! Per-host projection state: seq tracking per agent incarnation, disks, modules, liveness.

use std::collections::BTreeMap;

use opsfleet_proto::api::SeqRange;
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::EventEnvelope;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::runbooks::Runbooks;
use super::Verdict;

/// Seqs seen from one agent incarnation: the highest, and the ranges below it never seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqTrack {
    pub last_seq: u64,
    pub gaps: Vec<SeqRange>,
}

impl SeqTrack {
    fn gap_index(&self, seq: u64) -> Option<usize> {
        self.gaps
            .iter()
            .position(|g| g.first <= seq && seq <= g.last)
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.last_seq && self.gap_index(seq).is_none()
    }

    /// Marks `seq` as seen; `Duplicate` if it already was.
    pub fn accept(&mut self, seq: u64) -> Verdict {
        if seq > self.last_seq {
            let gap = (seq > self.last_seq + 1).then(|| SeqRange {
                first: self.last_seq + 1,
                last: seq - 1,
            });
            if let Some(g) = gap {
                self.gaps.push(g);
            }
            self.last_seq = seq;
            return Verdict::Accepted { gap };
        }
        let Some(i) = self.gap_index(seq) else {
            return Verdict::Duplicate;
        };
        // A late arrival fills part of a gap.
        let g = self.gaps[i];
        let mut replacement = Vec::with_capacity(2);
        if g.first < seq {
            replacement.push(SeqRange {
                first: g.first,
                last: seq - 1,
            });
        }
        if seq < g.last {
            replacement.push(SeqRange {
                first: seq + 1,
                last: g.last,
            });
        }
        self.gaps.splice(i..=i, replacement);
        Verdict::Accepted { gap: None }
    }
}

/// Which event last wrote a piece of state: (incarnation, seq). Later versions win, so a
/// late gap-filling event never overwrites newer state.
pub type Version = (String, u64);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskState {
    pub used_basis_points: u32,
    pub inodes_used_basis_points: u32,
    /// `ok`, `warn`, `crit` or `unknown`.
    pub level: String,
    pub total_bytes: u64,
    pub avail_bytes: u64,
    pub at_unix_ms: i64,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub kind: String,
    /// `running`, `paused`, `disabled`, `failed` or `unknown`.
    pub state: String,
    pub reason: String,
    pub config_fingerprint: String,
    pub expected_interval_ms: u64,
    pub version: Version,
    /// Agent clock of the newest event this module published (dead-man alerts).
    #[serde(default)]
    pub last_report_unix_ms: i64,
    /// Configs this module ran with, as its `module_state` events carried them (oldest
    /// first, at most `CONFIGS_KEPT`): what `config rollback --to <fingerprint>` sends back.
    #[serde(default)]
    pub configs: Vec<KnownConfig>,
}

/// Configs kept per host and module for rollbacks.
pub const CONFIGS_KEPT: usize = 8;

/// One module config seen in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownConfig {
    pub fingerprint: String,
    /// The `[[modules]]` entry as TOML.
    pub toml: String,
}

impl ModuleInfo {
    /// Remembers a config (a known fingerprint keeps its place); drops the oldest beyond
    /// `CONFIGS_KEPT`.
    fn remember_config(&mut self, fingerprint: &str, toml: &str) {
        if toml.is_empty() || fingerprint.is_empty() {
            return;
        }
        if self.configs.iter().any(|c| c.fingerprint == fingerprint) {
            return;
        }
        self.configs.push(KnownConfig {
            fingerprint: fingerprint.to_owned(),
            toml: toml.to_owned(),
        });
        if self.configs.len() > CONFIGS_KEPT {
            self.configs.remove(0);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub host: String,
    /// The newest incarnation seen (UUIDv7, so newest = greatest).
    pub incarnation: String,
    pub streams: BTreeMap<String, SeqTrack>,
    /// Agent clock of the newest event folded.
    pub last_seen_unix_ms: i64,
    /// Events folded for this host.
    pub events: u64,
    pub agent_version: String,
    pub outbox_pending: u64,
    /// Events the agent could not keep (outbox full), as it reported them.
    pub dropped_by_agent: u64,
    pub disks: BTreeMap<String, DiskState>,
    pub modules: BTreeMap<String, ModuleInfo>,
    /// What the runbook modules (log, health, sentinel, backup, janitor) reported.
    #[serde(default)]
    pub runbooks: Runbooks,
    /// The labels of the agent's newest heartbeat (what `--label k=v` selects on).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

pub(crate) fn disk_level_name(level: i32) -> &'static str {
    match pb::DiskLevel::try_from(level) {
        Ok(pb::DiskLevel::Ok) => "ok",
        Ok(pb::DiskLevel::Warn) => "warn",
        Ok(pb::DiskLevel::Crit) => "crit",
        _ => "unknown",
    }
}

pub(crate) fn run_state_name(state: i32) -> &'static str {
    match pb::ModuleRunState::try_from(state) {
        Ok(pb::ModuleRunState::Running) => "running",
        Ok(pb::ModuleRunState::Paused) => "paused",
        Ok(pb::ModuleRunState::Disabled) => "disabled",
        Ok(pb::ModuleRunState::Failed) => "failed",
        _ => "unknown",
    }
}

impl HostState {
    pub fn new(host: &str) -> Self {
        HostState {
            host: host.to_owned(),
            incarnation: String::new(),
            streams: BTreeMap::new(),
            last_seen_unix_ms: 0,
            events: 0,
            agent_version: String::new(),
            outbox_pending: 0,
            dropped_by_agent: 0,
            disks: BTreeMap::new(),
            modules: BTreeMap::new(),
            runbooks: Runbooks::default(),
            labels: BTreeMap::new(),
        }
    }

    /// Seq tracking of the current incarnation.
    pub fn current(&self) -> Option<&SeqTrack> {
        self.streams.get(&self.incarnation)
    }

    pub fn is_duplicate(&self, ev: &EventEnvelope) -> bool {
        self.streams
            .get(&ev.incarnation.to_string())
            .is_some_and(|t| t.contains(ev.seq))
    }

    pub(super) fn apply(&mut self, ev: &EventEnvelope) -> Verdict {
        let inc = ev.incarnation.to_string();
        let verdict = self.streams.entry(inc.clone()).or_default().accept(ev.seq);
        if !verdict.is_accepted() {
            return verdict;
        }
        let newer_incarnation = Uuid::parse_str(&self.incarnation)
            .map(|cur| ev.incarnation > cur)
            .unwrap_or(true);
        if newer_incarnation {
            self.incarnation = inc.clone();
        }
        self.events += 1;
        self.last_seen_unix_ms = self.last_seen_unix_ms.max(ev.time_unix_ms);
        let version: Version = (inc, ev.seq);
        if let Some(m) = self.modules.get_mut(&ev.module) {
            m.last_report_unix_ms = m.last_report_unix_ms.max(ev.time_unix_ms);
        }
        if self.runbooks.apply(&version, ev.time_unix_ms, &ev.body) {
            return verdict;
        }
        match &ev.body {
            Body::Heartbeat(hb) => {
                if self.is_current(&version) {
                    self.labels = hb.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    self.agent_version = hb.agent_version.clone();
                    self.outbox_pending = hb.outbox_pending;
                }
                for m in &hb.modules {
                    let entry = self.module_entry(&m.name, &m.kind);
                    let running = run_state_name(m.state) == "running";
                    if entry.last_report_unix_ms == 0 || (running && entry.state != "running") {
                        // Known (or running again) since now: silence counts from here.
                        entry.last_report_unix_ms =
                            entry.last_report_unix_ms.max(ev.time_unix_ms);
                    }
                    if entry.version <= version {
                        entry.kind = m.kind.clone();
                        entry.state = run_state_name(m.state).to_owned();
                        entry.expected_interval_ms = m.expected_interval_ms;
                        entry.version = version.clone();
                    }
                }
            }
            Body::Disk(d) => {
                let fresh = self
                    .disks
                    .get(&d.path)
                    .is_none_or(|old| old.version <= version);
                if fresh {
                    self.disks.insert(
                        d.path.clone(),
                        DiskState {
                            used_basis_points: d.used_basis_points,
                            inodes_used_basis_points: d.inodes_used_basis_points,
                            level: disk_level_name(d.level).to_owned(),
                            total_bytes: d.total_bytes,
                            avail_bytes: d.avail_bytes,
                            at_unix_ms: ev.time_unix_ms,
                            version,
                        },
                    );
                }
            }
            Body::ModuleState(ms) => {
                let entry = self.module_entry(&ms.module, &ms.kind);
                if run_state_name(ms.state) == "running" && entry.state != "running" {
                    entry.last_report_unix_ms = entry.last_report_unix_ms.max(ev.time_unix_ms);
                }
                entry.remember_config(&ms.config_fingerprint, &ms.config_toml);
                if entry.version <= version {
                    entry.kind = ms.kind.clone();
                    entry.state = run_state_name(ms.state).to_owned();
                    entry.reason = ms.reason.clone();
                    entry.config_fingerprint = ms.config_fingerprint.clone();
                    entry.version = version;
                }
            }
            Body::EventsDropped(d) => {
                self.dropped_by_agent += d.count;
            }
            // Folded by `Runbooks::apply` above.
            Body::LogMatch(_)
            | Body::LogSuppressed(_)
            | Body::Sentinel(_)
            | Body::Health(_)
            | Body::BackupStarted(_)
            | Body::BackupProgress(_)
            | Body::BackupCompleted(_)
            | Body::BackupFailed(_)
            | Body::BackupPruned(_)
            | Body::RestoreCompleted(_)
            | Body::RestoreFailed(_)
            | Body::Janitor(_)
            | Body::ConfigRejected(_)
            // Coordinator bodies are folded by `Fleet` into the coordinators' rows; one
            // published under a host's module is ignored.
            | Body::Leadership(_)
            | Body::HostLiveness(_)
            | Body::AlertTransition(_)
            | Body::NotificationSent(_)
            // Command bodies are folded by `Fleet` into the command ledger.
            | Body::CommandIssued(_)
            | Body::CommandAccepted(_)
            | Body::CommandCompleted(_)
            | Body::CommandFailed(_)
            | Body::CommandRejected(_)
            | Body::CommandExpired(_) => {}
        }
        verdict
    }

    fn is_current(&self, version: &Version) -> bool {
        version.0 == self.incarnation && self.current().is_some_and(|t| t.last_seq == version.1)
    }

    fn module_entry(&mut self, name: &str, kind: &str) -> &mut ModuleInfo {
        self.modules
            .entry(name.to_owned())
            .or_insert_with(|| ModuleInfo {
                kind: kind.to_owned(),
                state: "unknown".to_owned(),
                reason: String::new(),
                config_fingerprint: String::new(),
                expected_interval_ms: 0,
                version: (String::new(), 0),
                last_report_unix_ms: 0,
                configs: Vec::new(),
            })
    }
}
