//! The fleet projection: a pure fold of validated events into per-host state, with exact
//! dedup by (host, incarnation, seq) and gap tracking. No I/O and no clock: the same log folds
//! to byte-identical rows, whose digest (`digest::digest_rows`: a sum of one sha256 per row,
//! kept up to date row by row) `rebuild` compares.

pub mod alerts;
pub mod bounds;
pub mod checks;
pub mod commands;
mod coordinators;
mod derived;
mod digest;
pub mod drills;
pub mod groups;
mod host;
pub mod presence;
mod prune;
pub mod rollouts;
mod rows;
mod runbooks;
mod runs;
mod seq;
pub mod service_configs;
mod services;
pub mod silences;

pub use alerts::{AlertRecord, Alerts, Liveness, NotificationRecord};
pub use commands::CommandRecord;
pub use coordinators::{CoordinatorState, LeadershipChange};
pub use host::{DiskState, HostState, ModuleInfo};
pub use rollouts::{Rollout, Rollouts};
pub use runbooks::{
    BackupFailure, BackupJob, BackupSuccess, HealthState, Incident, JanitorState, Runbooks,
    SentinelView,
};
pub use seq::SeqTrack;
pub use services::ServiceRow;
pub use silences::{SilenceRecord, Silences};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use derived::Derived;
pub use digest::digest_rows;
use digest::{DirtyRows, RowDigest};

use opsfleet_proto::api::{SeqRange, Truncated};
use opsfleet_proto::pb::event::Body;
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use prune::PruneIndex;

/// Prefix of the projection row of one host.
pub const HOST_ROW_PREFIX: &str = "host/";
/// Prefix of the projection row of one coordinator.
pub const COORDINATOR_ROW_PREFIX: &str = "coord/";
/// Prefix of the projection row of one command.
pub const COMMAND_ROW_PREFIX: &str = "cmd/";
/// Prefix of the projection row of one alert (`alert/<rule>/<host>/<subject>`).
pub const ALERT_ROW_PREFIX: &str = "alert/";
/// Prefix of the projection row of one host's liveness verdict.
pub const LIVENESS_ROW_PREFIX: &str = "live/";
/// Prefix of the projection row of one rollout.
pub const ROLLOUT_ROW_PREFIX: &str = "rollout/";
/// Prefix of the projection row of one silence.
pub const SILENCE_ROW_PREFIX: &str = "silence/";
/// Prefix of the projection row of one active/standby group's failover history.
pub const GROUP_ROW_PREFIX: &str = "group/";
/// Prefix of the projection row of one scheduled drill's history.
pub const DRILL_ROW_PREFIX: &str = "drill/";

/// Key of the stored row that names the fold version the rows were written by. It is not a
/// projection row: `Fleet::from_rows` skips it and no digest covers it.
pub const FOLD_VERSION_KEY: &str = "meta/fold_version";
/// Version of the fold: bumped whenever the same log folds to different rows (a field added
/// to a row, a changed rule). Rows written by an older fold are refolded from the log at
/// start (`snapshot::load_fleet`), so the stored projection always equals a refold.
/// 1: rows before the version was recorded; 2: module configs carry first/last seen dates,
/// modules, disks and checks no longer configured are forgotten; 3: `service` events fold into
/// the hosts' `services`; 4: services keep their restart times, a capped
/// `service_remediation`, their instance, version and health, and leave with their module;
/// `service_config` snapshots fold into the hosts' `service_configs`; 5: rollouts
/// (`rollout/<id>` rows); services keep their group, role, slot group and liveness from
/// heartbeats, `group_failover` events fold into `group/<name>` rows; 6: silences
/// (`silence/<id>` rows), alerts keep their newest firing transition and an operator's ack;
/// 7: drills (`drill/<name>` rows from `drill_run` events).
pub const FOLD_VERSION: u64 = 7;

/// The fold version that wrote `rows` (1 when none is recorded, 0 for a store with no rows).
pub fn fold_version(rows: &[(String, Vec<u8>)]) -> u64 {
    match rows.iter().find(|(k, _)| k == FOLD_VERSION_KEY) {
        Some((_, v)) => std::str::from_utf8(v)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1),
        None if rows.is_empty() => 0,
        None => 1,
    }
}

/// What the fold did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: append it to the log. `gap` is set when seqs were skipped before it.
    Accepted { gap: Option<SeqRange> },
    /// Already folded (same host, incarnation and seq): drop it.
    Duplicate,
}

impl Verdict {
    pub fn is_accepted(self) -> bool {
        matches!(self, Verdict::Accepted { .. })
    }
}

/// Why a stored projection row cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("projection row {key} is not valid")]
pub struct RowError {
    pub key: String,
    #[source]
    pub source: serde_json::Error,
}

/// Marks row key `prefix` + `name` changed in `dirty`, allocating it only when it is not there
/// yet (the common case in a batch is a row already dirty): the key is put together on the
/// stack. A key already there is marked again, so the running digest re-reads the row.
fn mark_dirty(dirty: &mut DirtyRows, prefix: &str, name: &str) {
    let mut buf = [0u8; 256];
    let len = prefix.len() + name.len();
    if let Some(key) = buf.get_mut(..len) {
        key[..prefix.len()].copy_from_slice(prefix.as_bytes());
        key[prefix.len()..].copy_from_slice(name.as_bytes());
        // Both parts are UTF-8, so is their concatenation.
        if std::str::from_utf8(key).is_ok_and(|k| dirty.mark_again(k)) {
            return;
        }
    }
    dirty.insert(format!("{prefix}{name}"));
}

/// Every host the log has mentioned, and which rows changed since the last `take_dirty`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fleet {
    hosts: BTreeMap<String, HostState>,
    coordinators: BTreeMap<String, CoordinatorState>,
    commands: BTreeMap<String, CommandRecord>,
    /// Alerts and liveness verdicts (the alert engine's own events).
    alerts: Alerts,
    /// Rollouts (the rollout driver's own steps and their commands' outcomes).
    rollouts: Rollouts,
    /// Active/standby groups' failover history (the group driver's own events).
    groups: BTreeMap<String, groups::GroupHistory>,
    /// Scheduled drills' runs (the drill driver's own events).
    drills: BTreeMap<String, drills::DrillHistory>,
    /// Operators' silences (recorded by the active coordinator).
    silences: Silences,
    /// Row keys changed (or removed) since the last `take_dirty_rows`.
    dirty: DirtyRows,
    /// Command and alert records that may be pruned, per host: derived, never stored.
    prunable_commands: PruneIndex,
    prunable_alerts: PruneIndex,
    /// When each host's newest event reached the bus: observed, never stored.
    arrivals: Arrivals,
    /// The digest of the rows as they are now, once asked for; cleared by `apply`.
    digest: Derived<String>,
    /// The running sum behind the digest: each changed row rehashed once, not every row.
    row_digest: RowDigest,
    /// The hosts in maintenance as the records are now, once asked for; cleared by `apply`.
    maintenance: Derived<Arc<BTreeSet<String>>>,
}

/// When each host's newest folded event reached the bus (its JetStream timestamp: the NATS
/// server's clock), as this process ingested it. Liveness is judged by it, not by the agent's
/// own stamps, because an agent's clock may be set forward or back by minutes. Observed, not
/// folded: not in rows or the digest, empty after a restart until a host's next event reaches
/// this process (liveness falls back to the agent's clock meanwhile), and ignored by `==`
/// (two fleets folded from the same log are equal whenever they ingested it).
#[derive(Debug, Default, Clone)]
pub struct Arrivals(BTreeMap<String, Arrival>);

/// A host's newest arrival, and each module's.
#[derive(Debug, Default, Clone)]
struct Arrival {
    host: i64,
    modules: BTreeMap<String, i64>,
}

impl PartialEq for Arrivals {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The alert a coordinator body is about, if any.
fn alert_id(body: &Body) -> Option<&str> {
    match body {
        Body::AlertTransition(t) => Some(&t.alert_id),
        Body::NotificationSent(n) => Some(&n.alert_id),
        Body::AlertAcked(k) => Some(&k.alert_id),
        _ => None,
    }
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event. Deterministic: depends only on the current state and the event.
    pub fn apply(&mut self, ev: &EventEnvelope) -> Verdict {
        self.digest.clear();
        self.maintenance.clear();
        let verdict = self.apply_to_origin(ev);
        if verdict.is_accepted() {
            if let Some(id) = commands::command_id(&ev.body) {
                self.apply_command(id, ev);
                if let Some(rollout) = self.rollouts.apply_command(ev, id) {
                    self.dirty.insert(format!("{ROLLOUT_ROW_PREFIX}{rollout}"));
                }
            }
            if ev.module == COORDINATOR_MODULE {
                self.apply_alerts(ev);
                if let Body::Rollout(step) = &ev.body {
                    for id in self.rollouts.apply_step(step) {
                        self.dirty.insert(format!("{ROLLOUT_ROW_PREFIX}{id}"));
                    }
                }
                let silenced = match &ev.body {
                    Body::SilenceAdded(a) => self.silences.add(a, &ev.host),
                    Body::SilenceExpired(x) => self.silences.expire(x).into_iter().collect(),
                    _ => Vec::new(),
                };
                for id in silenced {
                    self.dirty.insert(format!("{SILENCE_ROW_PREFIX}{id}"));
                }
                if let Body::GroupFailover(g) = &ev.body {
                    if let Some(group) = groups::fold(&mut self.groups, g, ev.time_unix_ms) {
                        self.dirty.insert(format!("{GROUP_ROW_PREFIX}{group}"));
                    }
                }
                if let Body::DrillRun(d) = &ev.body {
                    if let Some(drill) = drills::fold(&mut self.drills, d, ev.time_unix_ms) {
                        self.dirty.insert(format!("{DRILL_ROW_PREFIX}{drill}"));
                    }
                }
            }
        }
        verdict
    }

    /// Folds a command body into its record, then keeps its owner within `COMMANDS_KEPT`
    /// prunable records by dropping the oldest (counted in the owner's `truncated`).
    fn apply_command(&mut self, id: &str, ev: &EventEnvelope) {
        let record = self.commands.entry(id.to_owned()).or_default();
        let before = prune::command_slot(id, record);
        commands::apply(record, ev);
        let after = prune::command_slot(id, record);
        self.dirty.insert(format!("{COMMAND_ROW_PREFIX}{id}"));
        let update = (self.prunable_commands).update(before, after, bounds::COMMANDS_KEPT);
        let Some((owner, pruned)) = update else {
            return;
        };
        for id in &pruned {
            self.commands.remove(id);
            self.dirty.insert(format!("{COMMAND_ROW_PREFIX}{id}"));
        }
        self.count_pruned(&owner, pruned.len(), |t| &mut t.commands);
    }

    /// Folds an alert engine event, then keeps the alert's host within `ALERTS_KEPT`
    /// resolved alerts by dropping the oldest (counted in the host's `truncated`).
    fn apply_alerts(&mut self, ev: &EventEnvelope) {
        let before = alert_id(&ev.body)
            .and_then(|id| Some((id, self.alerts.alerts.get(id)?)))
            .and_then(|(id, r)| prune::alert_slot(id, r));
        match self.alerts.apply(ev) {
            Some(alerts::Changed::Alert(id)) => {
                self.dirty.insert(format!("{ALERT_ROW_PREFIX}{id}"));
                let after = (self.alerts.alerts.get(&id)).and_then(|r| prune::alert_slot(&id, r));
                let update = (self.prunable_alerts).update(before, after, bounds::ALERTS_KEPT);
                if let Some((owner, pruned)) = update {
                    for id in &pruned {
                        self.alerts.alerts.remove(id);
                        self.dirty.insert(format!("{ALERT_ROW_PREFIX}{id}"));
                    }
                    self.count_pruned(&owner, pruned.len(), |t| &mut t.alerts);
                }
            }
            Some(alerts::Changed::Liveness(host)) => {
                self.dirty.insert(format!("{LIVENESS_ROW_PREFIX}{host}"));
            }
            None => {}
        }
    }

    /// Counts `n` pruned records in `owner`'s host row. An owner without one (a coordinator
    /// reporting on a command it never issued) has nowhere to show the count.
    fn count_pruned(&mut self, owner: &str, n: usize, counter: fn(&mut Truncated) -> &mut u64) {
        if n == 0 {
            return;
        }
        if let Some(h) = self.hosts.get_mut(owner) {
            let c = counter(&mut h.truncated);
            *c = c.saturating_add(n as u64);
            self.dirty.insert(format!("{HOST_ROW_PREFIX}{owner}"));
        }
    }

    /// Dedups and folds an event into the state of the host or coordinator that sent it.
    fn apply_to_origin(&mut self, ev: &EventEnvelope) -> Verdict {
        // Known origins (nearly every event) are looked up without copying the name.
        if ev.module == COORDINATOR_MODULE {
            let c = match self.coordinators.get_mut(&ev.host) {
                Some(c) => c,
                None => (self.coordinators)
                    .entry(ev.host.clone())
                    .or_insert_with(|| CoordinatorState::new(&ev.host)),
            };
            let verdict = c.apply(ev);
            if verdict.is_accepted() {
                mark_dirty(&mut self.dirty, COORDINATOR_ROW_PREFIX, &ev.host);
            }
            return verdict;
        }
        let host = match self.hosts.get_mut(&ev.host) {
            Some(h) => h,
            None => (self.hosts)
                .entry(ev.host.clone())
                .or_insert_with(|| HostState::new(&ev.host)),
        };
        let verdict = host.apply(ev);
        if verdict.is_accepted() {
            mark_dirty(&mut self.dirty, HOST_ROW_PREFIX, &ev.host);
        }
        verdict
    }

    /// Would `apply` accept this event? (No state change.)
    pub fn is_duplicate(&self, ev: &EventEnvelope) -> bool {
        if ev.module == COORDINATOR_MODULE {
            return self
                .coordinators
                .get(&ev.host)
                .is_some_and(|c| c.is_duplicate(ev));
        }
        self.hosts.get(&ev.host).is_some_and(|h| h.is_duplicate(ev))
    }

    pub fn coordinators(&self) -> impl Iterator<Item = &CoordinatorState> {
        self.coordinators.values()
    }

    pub fn commands(&self) -> impl Iterator<Item = &CommandRecord> {
        self.commands.values()
    }

    /// The hosts in maintenance: derived from the command records (no row of its own, so
    /// the rows and digest of a log are what they were before maintenance existed).
    pub fn maintenance(&self) -> Arc<BTreeSet<String>> {
        if let Some(m) = self.maintenance.get() {
            return m;
        }
        let m: Arc<BTreeSet<String>> = Arc::new(
            commands::in_maintenance(self.commands.values())
                .into_iter()
                .map(str::to_owned)
                .collect(),
        );
        self.maintenance.set(Arc::clone(&m));
        m
    }

    pub fn command(&self, id: &str) -> Option<&CommandRecord> {
        self.commands.get(id)
    }

    /// Alerts and liveness verdicts.
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// Rollouts, as their steps and commands tell.
    pub fn rollouts(&self) -> &Rollouts {
        &self.rollouts
    }

    /// Operators' silences, ended ones included (up to the cap).
    pub fn silences(&self) -> &Silences {
        &self.silences
    }

    /// Scheduled drills' history, by drill name.
    pub fn drills(&self) -> &BTreeMap<String, drills::DrillHistory> {
        &self.drills
    }

    /// Active/standby groups' failover history, by group.
    pub fn groups(&self) -> &BTreeMap<String, groups::GroupHistory> {
        &self.groups
    }

    pub fn host(&self, name: &str) -> Option<&HostState> {
        self.hosts.get(name)
    }

    pub fn hosts(&self) -> impl Iterator<Item = &HostState> {
        self.hosts.values()
    }

    /// The hosts named after `after` (all when None), ascending: a page starts here in
    /// O(log n) instead of skipping the hosts before it.
    pub fn hosts_after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a HostState> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.hosts
            .range::<str, _>((from, Unbounded))
            .map(|(_, h)| h)
    }

    /// Records that an event of `host`'s `module` reached the bus at `at_unix_ms` (server
    /// clock).
    /// On the ingest path: allocates only for a host or module not seen before.
    pub fn note_arrival(&mut self, host: &str, module: &str, at_unix_ms: i64) {
        let a = match self.arrivals.0.get_mut(host) {
            Some(a) => a,
            None => self.arrivals.0.entry(host.to_owned()).or_default(),
        };
        a.host = a.host.max(at_unix_ms);
        match a.modules.get_mut(module) {
            Some(m) => *m = (*m).max(at_unix_ms),
            None => {
                a.modules.insert(module.to_owned(), at_unix_ms);
            }
        }
    }

    /// When `h` was last heard from, for liveness: its newest event's arrival on the bus where
    /// this process saw one arrive, else the agent's own stamp (`last_seen_unix_ms`).
    pub fn seen_unix_ms(&self, h: &HostState) -> i64 {
        self.arrivals
            .0
            .get(&h.host)
            .map_or(h.last_seen_unix_ms, |a| a.host)
    }

    /// When module `name` of `h` last reported, for liveness: as `seen_unix_ms`, per module
    /// (else the agent's stamp, `last_report_unix_ms`).
    pub fn module_seen_unix_ms(&self, h: &HostState, name: &str, m: &ModuleInfo) -> i64 {
        self.arrivals
            .0
            .get(&h.host)
            .and_then(|a| a.modules.get(name))
            .copied()
            .unwrap_or(m.last_report_unix_ms)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

#[cfg(test)]
mod caps_tests;
#[cfg(test)]
mod digest_tests;
#[cfg(test)]
mod prune_tests;
#[cfg(test)]
mod tests;
