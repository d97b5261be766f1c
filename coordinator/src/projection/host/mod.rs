//! Per-host projection state: seq tracking per agent incarnation (`seq.rs`), disks, modules,
//! liveness, each structure within its cap (`bounds.rs`), with what was dropped counted in
//! `truncated`.

use std::collections::BTreeMap;

use opsfleet_proto::api::Truncated;
use opsfleet_proto::api::{DiskLevel, ModuleState};
use opsfleet_proto::pb::event::Body;
use opsfleet_proto::EventEnvelope;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod forget;

use super::bounds::{
    capped_entry, clip, set_clipped, CONFIG_BYTES_KEPT, DISKS_KEPT, INCARNATIONS_KEPT, LABELS_KEPT,
    MODULES_KEPT, NAME_BYTES_KEPT, TEXT_BYTES_KEPT,
};
use super::runbooks::{restore_tests, Runbooks};
use super::seq::{Closed, SeqTrack, Version};
use super::service_configs::{self, ServiceConfigs};
use super::services::{self, ServiceRow};
use super::Verdict;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskState {
    pub used_basis_points: u32,
    pub inodes_used_basis_points: u32,
    pub level: DiskLevel,
    pub total_bytes: u64,
    pub avail_bytes: u64,
    pub at_unix_ms: i64,
    pub version: Version,
}

impl DiskState {
    /// Before its first report (older than every version).
    fn unknown() -> Self {
        DiskState {
            used_basis_points: 0,
            inodes_used_basis_points: 0,
            level: DiskLevel::Unknown,
            total_bytes: 0,
            avail_bytes: 0,
            at_unix_ms: 0,
            version: (String::new(), 0),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    pub kind: String,
    pub state: ModuleState,
    pub reason: String,
    pub config_fingerprint: String,
    pub expected_interval_ms: u64,
    pub version: Version,
    /// Agent clock of the newest event this module published (shown; dead-man alerts go by
    /// arrival on the bus, `Fleet::module_seen_unix_ms`, and fall back to it).
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
    /// Agent clock of the first and the latest `module_state` event that carried it (0 in
    /// projections older than these fields).
    #[serde(default)]
    pub first_seen_unix_ms: i64,
    #[serde(default)]
    pub last_seen_unix_ms: i64,
}

impl ModuleInfo {
    /// Remembers a config (a known fingerprint keeps its place); drops the oldest beyond
    /// `CONFIGS_KEPT`. One larger than `CONFIG_BYTES_KEPT` (or with an over-long fingerprint)
    /// is not kept: `too_large` counts it.
    fn remember_config(&mut self, fingerprint: &str, toml: &str, at: i64, too_large: &mut u64) {
        if toml.is_empty() || fingerprint.is_empty() {
            return;
        }
        if toml.len() > CONFIG_BYTES_KEPT || fingerprint.len() > TEXT_BYTES_KEPT {
            *too_large = too_large.saturating_add(1);
            return;
        }
        if let Some(known) = self
            .configs
            .iter_mut()
            .find(|c| c.fingerprint == fingerprint)
        {
            known.last_seen_unix_ms = known.last_seen_unix_ms.max(at);
            return;
        }
        self.configs.push(KnownConfig {
            fingerprint: fingerprint.to_owned(),
            toml: toml.to_owned(),
            first_seen_unix_ms: at,
            last_seen_unix_ms: at,
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
    /// Seq tracking of the newest `INCARNATIONS_KEPT` incarnations.
    pub streams: BTreeMap<String, SeqTrack>,
    /// Agent clock of the newest event folded (liveness goes by arrival on the bus,
    /// `Fleet::seen_unix_ms`, and falls back to it).
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
    /// Supervised services by name, as their newest `service` event told (absent from the
    /// row while there are none, so rows of hosts without services are as before).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceRow>,
    /// The history of the services' declared config files (absent while there is none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_configs: BTreeMap<String, ServiceConfigs>,
    /// What was dropped to keep this host within the caps (absent from the row while nothing
    /// was, so rows of hosts within them are as before).
    #[serde(default, skip_serializing_if = "Truncated::is_empty")]
    pub truncated: Truncated,
}

/// Counts closed gap ranges.
fn count_closed(t: &mut Truncated, closed: Closed) {
    t.gap_ranges = t.gap_ranges.saturating_add(closed.ranges);
    t.gap_seqs = t.gap_seqs.saturating_add(closed.seqs);
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
            services: BTreeMap::new(),
            service_configs: BTreeMap::new(),
            truncated: Truncated::default(),
        }
    }

    /// The heartbeat interval the host declared (the longest of its heartbeat modules'), if
    /// it declared one: what liveness (`opsctl hosts`) and the `host_lost` rule both judge by.
    pub fn heartbeat_interval_ms(&self) -> Option<u64> {
        self.modules
            .values()
            .filter(|m| m.kind == "heartbeat")
            .map(|m| m.expected_interval_ms)
            .max()
            .filter(|ms| *ms > 0)
    }

    /// Seq tracking of the current incarnation.
    pub fn current(&self) -> Option<&SeqTrack> {
        self.streams.get(&self.incarnation)
    }

    /// An incarnation not tracked (any more): every incarnation kept is newer, and there are
    /// `INCARNATIONS_KEPT` of them. Such an incarnation was evicted, or is older than every
    /// one that was: its events are dropped as duplicates.
    fn is_closed(&self, inc: &str) -> bool {
        self.streams.len() >= INCARNATIONS_KEPT
            && self
                .streams
                .first_key_value()
                .is_some_and(|(oldest, _)| inc < oldest.as_str())
    }

    pub fn is_duplicate(&self, ev: &EventEnvelope) -> bool {
        let mut buf = Uuid::encode_buffer();
        let inc: &str = ev.incarnation.hyphenated().encode_lower(&mut buf);
        match self.streams.get(inc) {
            Some(t) => t.contains(ev.seq),
            None => self.is_closed(inc),
        }
    }

    /// Dedups `ev` by (incarnation, seq), tracking a new incarnation (and evicting the oldest
    /// beyond `INCARNATIONS_KEPT`) on first sight.
    fn accept(&mut self, inc: &str, seq: u64) -> Verdict {
        let result = if let Some(track) = self.streams.get_mut(inc) {
            track.accept(seq)
        } else if self.is_closed(inc) {
            return Verdict::Duplicate;
        } else {
            let mut track = SeqTrack::default();
            let result = track.accept(seq);
            self.streams.insert(inc.to_owned(), track);
            while self.streams.len() > INCARNATIONS_KEPT {
                self.streams.pop_first();
                self.truncated.incarnations = self.truncated.incarnations.saturating_add(1);
            }
            result
        };
        count_closed(&mut self.truncated, result.closed);
        result.verdict
    }

    pub(super) fn apply(&mut self, ev: &EventEnvelope) -> Verdict {
        let mut buf = Uuid::encode_buffer();
        let inc: &str = ev.incarnation.hyphenated().encode_lower(&mut buf);
        let verdict = self.accept(inc, ev.seq);
        if !verdict.is_accepted() {
            return verdict;
        }
        if self.incarnation.as_str() < inc {
            // Newest = greatest (the empty string, before the first event, is below all).
            self.incarnation.clear();
            self.incarnation.push_str(inc);
        }
        self.events += 1;
        self.last_seen_unix_ms = self.last_seen_unix_ms.max(ev.time_unix_ms);
        let version: Version = (inc.to_owned(), ev.seq);
        if let Some(m) = self.modules.get_mut(&ev.module) {
            m.last_report_unix_ms = m.last_report_unix_ms.max(ev.time_unix_ms);
        }
        if self
            .runbooks
            .apply(&version, ev.time_unix_ms, &ev.body, &mut self.truncated)
        {
            return verdict;
        }
        match &ev.body {
            Body::Heartbeat(hb) => {
                if self.is_current(&version) {
                    // The first `LABELS_KEPT` by name (the wire map is ordered), without
                    // over-long ones.
                    let fits = |(k, v): &(&String, &String)| {
                        k.len() <= NAME_BYTES_KEPT && v.len() <= NAME_BYTES_KEPT
                    };
                    let kept = || hb.labels.iter().filter(fits).take(LABELS_KEPT);
                    // Rebuilt only when they changed (a host repeats its labels).
                    if !self.labels.iter().eq(kept()) {
                        self.labels = kept().map(|(k, v)| (k.clone(), v.clone())).collect();
                    }
                    let left_out = (hb.labels.len() - self.labels.len()) as u64;
                    self.truncated.labels = self.truncated.labels.saturating_add(left_out);
                    set_clipped(&mut self.agent_version, &hb.agent_version);
                    self.outbox_pending = hb.outbox_pending;
                }
                if self.is_current(&version) {
                    forget::after_heartbeat(self, hb, &version);
                    for s in &hb.services {
                        services::fold_summary(&mut self.services, s);
                    }
                }
                for m in &hb.modules {
                    let modules = (&mut self.modules, &mut self.truncated.modules);
                    let Some(entry) = module_entry(modules.0, modules.1, &m.name, &m.kind, &version)
                    else {
                        continue;
                    };
                    let running = ModuleState::from_wire(m.state) == ModuleState::Running;
                    if entry.last_report_unix_ms == 0
                        || (running && entry.state != ModuleState::Running)
                    {
                        // Known (or running again) since now: silence counts from here.
                        entry.last_report_unix_ms =
                            entry.last_report_unix_ms.max(ev.time_unix_ms);
                    }
                    if entry.version <= version {
                        set_clipped(&mut entry.kind, &m.kind);
                        entry.state = ModuleState::from_wire(m.state);
                        entry.expected_interval_ms = m.expected_interval_ms;
                        set_version(&mut entry.version, &version);
                    }
                }
            }
            Body::Disk(d) => {
                let disk = capped_entry(
                    &mut self.disks,
                    &d.path,
                    DISKS_KEPT,
                    &version,
                    |s: &DiskState| &s.version,
                    DiskState::unknown,
                    &mut self.truncated.disks,
                );
                if let Some(disk) = disk.filter(|old| old.version <= version) {
                    disk.used_basis_points = d.used_basis_points;
                    disk.inodes_used_basis_points = d.inodes_used_basis_points;
                    disk.level = DiskLevel::from_wire(d.level);
                    disk.total_bytes = d.total_bytes;
                    disk.avail_bytes = d.avail_bytes;
                    disk.at_unix_ms = ev.time_unix_ms;
                    set_version(&mut disk.version, &version);
                }
            }
            Body::ModuleState(ms) => {
                let dropped = &mut self.truncated.modules;
                let Some(entry) = module_entry(&mut self.modules, dropped, &ms.module, &ms.kind, &version)
                else {
                    return verdict;
                };
                if ModuleState::from_wire(ms.state) == ModuleState::Running
                    && entry.state != ModuleState::Running
                {
                    entry.last_report_unix_ms = entry.last_report_unix_ms.max(ev.time_unix_ms);
                }
                entry.remember_config(
                    &ms.config_fingerprint,
                    &ms.config_toml,
                    ev.time_unix_ms,
                    &mut self.truncated.configs,
                );
                if entry.version <= version {
                    entry.kind = clip(&ms.kind);
                    entry.state = ModuleState::from_wire(ms.state);
                    entry.reason = clip(&ms.reason);
                    entry.config_fingerprint = clip(&ms.config_fingerprint);
                    entry.version = version.clone();
                    if !ms.config_toml.is_empty() {
                        let kind = entry.kind.clone();
                        forget::after_config(self, &kind, &version);
                        if kind == restore_tests::BACKUP_KIND {
                            let dropped = &mut self.truncated;
                            restore_tests::declare(&self.modules, &mut self.runbooks.backups, ev.time_unix_ms, dropped);
                        }
                    }
                }
            }
            Body::EventsDropped(d) => {
                self.dropped_by_agent += d.count;
            }
            Body::Service(s) => {
                services::fold(&mut self.services, s, &version, &mut self.truncated.services);
            }
            Body::ServiceRemediation(r) => {
                services::fold_remediation(&mut self.services, r, ev.time_unix_ms);
            }
            Body::ServiceConfig(s) => {
                let dropped = &mut self.truncated.services;
                service_configs::fold(&mut self.service_configs, s, &version, ev.time_unix_ms, dropped);
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
            | Body::BackupSynced(_)
            | Body::BackupSyncFailed(_)
            | Body::BackupDiscrepancy(_)
            | Body::RestoreTested(_)
            | Body::RestoreCompleted(_)
            | Body::RestoreFailed(_)
            | Body::Janitor(_)
            | Body::ConfigRejected(_)
            // A deploy's outcome is in the command ledger; the version in the service's state.
            | Body::ServiceDeployed(_)
            // Coordinator bodies are folded by `Fleet` into the coordinators' rows; one
            // published under a host's module is ignored.
            | Body::Leadership(_)
            | Body::HostLiveness(_)
            | Body::AlertTransition(_)
            | Body::NotificationSent(_)
            | Body::SilenceAdded(_)
            | Body::SilenceExpired(_)
            | Body::AlertAcked(_)
            | Body::Rollout(_)
            | Body::GroupFailover(_)
            | Body::DrillRun(_)
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
}

/// Sets `dst` to `version`, reusing its buffer (no allocation on the ingest path).
fn set_version(dst: &mut Version, version: &Version) {
    dst.0.clone_from(&version.0);
    dst.1 = version.1;
}

/// The module's entry (created on first sight), `None` if it does not fit in `MODULES_KEPT`
/// (counted in `dropped`).
fn module_entry<'m>(
    modules: &'m mut BTreeMap<String, ModuleInfo>,
    dropped: &mut u64,
    name: &str,
    kind: &str,
    version: &Version,
) -> Option<&'m mut ModuleInfo> {
    capped_entry(
        modules,
        name,
        MODULES_KEPT,
        version,
        |m: &ModuleInfo| &m.version,
        || ModuleInfo {
            kind: clip(kind),
            state: ModuleState::Unknown,
            reason: String::new(),
            config_fingerprint: String::new(),
            expected_interval_ms: 0,
            version: (String::new(), 0),
            last_report_unix_ms: 0,
            configs: Vec::new(),
        },
        dropped,
    )
}
