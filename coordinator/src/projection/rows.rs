//! The projection as rows: the changed rows to persist, every row, the digest over them, and
//! a projection loaded back from stored rows.

use super::*;

impl Fleet {
    /// Rows changed since the last call, serialised, ascending by key; a row removed since
    /// (a pruned command or alert) comes with an empty value, which the store deletes.
    /// The digest absorbs each row it has not yet, from the bytes serialised here.
    pub fn take_dirty_rows(&mut self) -> Vec<(String, Vec<u8>)> {
        let dirty = self.dirty.take();
        let mut out = Vec::with_capacity(dirty.len());
        for (key, absorbed) in dirty {
            let (key, value) = self.row(&key).unwrap_or((key, Vec::new()));
            self.row_digest.absorb_taken(&key, &value, absorbed);
            out.push((key, value));
        }
        out
    }

    fn row(&self, key: &str) -> Option<(String, Vec<u8>)> {
        if let Some(id) = key.strip_prefix(ALERT_ROW_PREFIX) {
            return self
                .alerts
                .alerts
                .get(id)
                .map(|a| (key.to_owned(), to_row(a)));
        }
        if let Some(host) = key.strip_prefix(LIVENESS_ROW_PREFIX) {
            return self
                .alerts
                .liveness
                .get(host)
                .map(|l| (key.to_owned(), to_row(l)));
        }
        if let Some(id) = key.strip_prefix(SILENCE_ROW_PREFIX) {
            return self.silences.get(id).map(|s| (key.to_owned(), to_row(s)));
        }
        if let Some(id) = key.strip_prefix(ROLLOUT_ROW_PREFIX) {
            return self.rollouts.get(id).map(|r| (key.to_owned(), to_row(r)));
        }
        if let Some(name) = key.strip_prefix(HOST_ROW_PREFIX) {
            return self.hosts.get(name).map(|h| (key.to_owned(), to_row(h)));
        }
        if let Some(name) = key.strip_prefix(GROUP_ROW_PREFIX) {
            return self.groups.get(name).map(|g| (key.to_owned(), to_row(g)));
        }
        if let Some(name) = key.strip_prefix(DRILL_ROW_PREFIX) {
            return self.drills.get(name).map(|d| (key.to_owned(), to_row(d)));
        }
        if let Some(id) = key.strip_prefix(COMMAND_ROW_PREFIX) {
            return self.commands.get(id).map(|c| (key.to_owned(), to_row(c)));
        }
        let name = key.strip_prefix(COORDINATOR_ROW_PREFIX)?;
        self.coordinators
            .get(name)
            .map(|c| (key.to_owned(), to_row(c)))
    }

    /// Every row, serialised, ascending by key.
    pub fn rows(&self) -> Vec<(String, Vec<u8>)> {
        let mut rows = Vec::new();
        self.each_row(|key, value| rows.push((key, value)));
        rows
    }

    /// Visits every row, serialised, ascending by key, one at a time (nothing collected).
    fn each_row(&self, mut f: impl FnMut(String, Vec<u8>)) {
        // "alert/" < "cmd/" < "coord/" < "drill/" < "group/" < "host/" < "live/" < "rollout/" <
        // "silence/": ascending.
        for (id, a) in &self.alerts.alerts {
            f(format!("{ALERT_ROW_PREFIX}{id}"), to_row(a));
        }
        for (id, c) in &self.commands {
            f(format!("{COMMAND_ROW_PREFIX}{id}"), to_row(c));
        }
        for (n, c) in &self.coordinators {
            f(format!("{COORDINATOR_ROW_PREFIX}{n}"), to_row(c));
        }
        for (n, d) in &self.drills {
            f(format!("{DRILL_ROW_PREFIX}{n}"), to_row(d));
        }
        for (n, g) in &self.groups {
            f(format!("{GROUP_ROW_PREFIX}{n}"), to_row(g));
        }
        for (n, h) in &self.hosts {
            f(format!("{HOST_ROW_PREFIX}{n}"), to_row(h));
        }
        for (h, l) in &self.alerts.liveness {
            f(format!("{LIVENESS_ROW_PREFIX}{h}"), to_row(l));
        }
        for r in self.rollouts.iter() {
            f(format!("{ROLLOUT_ROW_PREFIX}{}", r.id), to_row(r));
        }
        for s in self.silences.iter() {
            f(format!("{SILENCE_ROW_PREFIX}{}", s.id), to_row(s));
        }
    }

    /// The rows to store: every projection row and the fold version that wrote them.
    pub fn stored_rows(&self) -> Vec<(String, Vec<u8>)> {
        let mut rows = self.rows();
        rows.push((
            FOLD_VERSION_KEY.to_owned(),
            FOLD_VERSION.to_string().into_bytes(),
        ));
        rows
    }

    /// The digest of every row (`digest_rows`), hex. Cached until the next `apply`; after
    /// one, only the rows changed since are rehashed (`digest::RowDigest`), so a page of
    /// `opsctl status` does not cost a pass over the fleet.
    pub fn digest(&self) -> String {
        if let Some(d) = self.digest.get() {
            return d;
        }
        let d = self.row_digest.digest(
            &self.dirty,
            |key| self.row(key).map(|(_, v)| v),
            |visit| self.each_row(|k, v| visit(&k, &v)),
        );
        self.digest.set(d.clone());
        d
    }

    /// Loads a fleet from stored rows (the inverse of `rows`; an empty value is no row).
    pub fn from_rows(rows: Vec<(String, Vec<u8>)>) -> Result<Self, RowError> {
        let mut fleet = Fleet::default();
        for (key, value) in rows {
            if value.is_empty() {
                continue;
            }
            let bad = |source| RowError {
                key: key.clone(),
                source,
            };
            if let Some(name) = key.strip_prefix(HOST_ROW_PREFIX) {
                let state: HostState = serde_json::from_slice(&value).map_err(bad)?;
                fleet.hosts.insert(name.to_owned(), state);
            } else if let Some(name) = key.strip_prefix(COORDINATOR_ROW_PREFIX) {
                let state: CoordinatorState = serde_json::from_slice(&value).map_err(bad)?;
                fleet.coordinators.insert(name.to_owned(), state);
            } else if let Some(id) = key.strip_prefix(COMMAND_ROW_PREFIX) {
                let record: CommandRecord = serde_json::from_slice(&value).map_err(bad)?;
                fleet.commands.insert(id.to_owned(), record);
            } else if let Some(id) = key.strip_prefix(ALERT_ROW_PREFIX) {
                let record: AlertRecord = serde_json::from_slice(&value).map_err(bad)?;
                fleet.alerts.alerts.insert(id.to_owned(), record);
            } else if let Some(name) = key.strip_prefix(GROUP_ROW_PREFIX) {
                let history: groups::GroupHistory = serde_json::from_slice(&value).map_err(bad)?;
                fleet.groups.insert(name.to_owned(), history);
            } else if let Some(name) = key.strip_prefix(DRILL_ROW_PREFIX) {
                let history: drills::DrillHistory = serde_json::from_slice(&value).map_err(bad)?;
                fleet.drills.insert(name.to_owned(), history);
            } else if let Some(host) = key.strip_prefix(LIVENESS_ROW_PREFIX) {
                let live: Liveness = serde_json::from_slice(&value).map_err(bad)?;
                fleet.alerts.liveness.insert(host.to_owned(), live);
            } else if key.starts_with(SILENCE_ROW_PREFIX) {
                let silence: SilenceRecord = serde_json::from_slice(&value).map_err(bad)?;
                fleet.silences.0.insert(silence.id.clone(), silence);
            } else if key.starts_with(ROLLOUT_ROW_PREFIX) {
                let rollout: Rollout = serde_json::from_slice(&value).map_err(bad)?;
                fleet.rollouts.insert(rollout);
            }
        }
        fleet.row_digest.mark_stale();
        for (id, record) in &fleet.commands {
            if let Some(slot) = prune::command_slot(id, record) {
                fleet.prunable_commands.insert(slot);
            }
        }
        for (id, record) in &fleet.alerts.alerts {
            if let Some(slot) = prune::alert_slot(id, record) {
                fleet.prunable_alerts.insert(slot);
            }
        }
        Ok(fleet)
    }
}

pub(super) fn to_row<T: serde::Serialize>(state: &T) -> Vec<u8> {
    // Serialising plain structs of strings, integers and BTreeMaps cannot fail.
    serde_json::to_vec(state).unwrap_or_default()
}
