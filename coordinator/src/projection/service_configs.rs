//! Per-host history of the services' declared config files: every `service_config` snapshot
//! (fingerprint, cause, command id; never a content), per service and file, in (incarnation,
//! seq) order so a late, gap-filling event lands in its place. Bounded: at most
//! `SERVICES_KEPT` services, `CONFIG_FILES_KEPT` files per service (beyond them the least
//! recently changed goes, counted in `truncated.services`) and `CONFIG_HISTORY_KEPT`
//! snapshots per file (the oldest go). Pure.

use std::collections::BTreeMap;

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

use super::bounds::{capped_entry, clip, NAME_BYTES_KEPT, SERVICES_KEPT};
use super::seq::Version;

/// Declared config files kept per service.
pub const CONFIG_FILES_KEPT: usize = 16;
/// Snapshots kept per file (the newest).
pub const CONFIG_HISTORY_KEPT: usize = 32;

/// One snapshot of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshotRow {
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_fingerprint: String,
    pub size: u64,
    pub cause: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command_id: String,
    pub at_unix_ms: i64,
    pub version: Version,
}

/// The snapshots of one file, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHistory {
    pub snapshots: Vec<ConfigSnapshotRow>,
    /// Version of the newest snapshot (what eviction goes by).
    pub version: Version,
}

impl FileHistory {
    /// The newest snapshot.
    pub fn latest(&self) -> Option<&ConfigSnapshotRow> {
        self.snapshots.last()
    }
}

/// The config files of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfigs {
    pub files: BTreeMap<String, FileHistory>,
    pub version: Version,
}

/// Folds one snapshot into `services` (what does not fit is counted in `dropped`).
pub fn fold(
    services: &mut BTreeMap<String, ServiceConfigs>,
    s: &pb::ServiceConfigSnapshot,
    version: &Version,
    at_unix_ms: i64,
    dropped: &mut u64,
) {
    let Some(svc) = capped_entry(
        services,
        &s.service,
        SERVICES_KEPT,
        version,
        |c: &ServiceConfigs| &c.version,
        ServiceConfigs::default,
        dropped,
    ) else {
        return;
    };
    let Some(file) = capped_entry(
        &mut svc.files,
        &s.file,
        CONFIG_FILES_KEPT,
        version,
        |f: &FileHistory| &f.version,
        FileHistory::default,
        dropped,
    ) else {
        return;
    };
    if *version > svc.version {
        svc.version = version.clone();
    }
    if *version > file.version {
        file.version = version.clone();
    }
    let row = ConfigSnapshotRow {
        fingerprint: clip_name(&s.fingerprint),
        previous_fingerprint: clip_name(&s.previous_fingerprint),
        size: s.size,
        cause: clip(&s.cause),
        command_id: clip_name(&s.command_id),
        at_unix_ms,
        version: version.clone(),
    };
    let at = file.snapshots.partition_point(|r| r.version < *version);
    file.snapshots.insert(at, row);
    let excess = file.snapshots.len().saturating_sub(CONFIG_HISTORY_KEPT);
    file.snapshots.drain(..excess);
}

fn clip_name(text: &str) -> String {
    if text.len() > NAME_BYTES_KEPT {
        clip(text)
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(fp: &str, cause: &str) -> pb::ServiceConfigSnapshot {
        pb::ServiceConfigSnapshot {
            service: "app".into(),
            file: "/etc/app/app.json".into(),
            fingerprint: fp.into(),
            size: 10,
            cause: cause.into(),
            previous_fingerprint: String::new(),
            command_id: String::new(),
        }
    }

    #[test]
    fn history_is_in_log_order_and_bounded() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        let v = |seq| ("inc".to_owned(), seq);
        fold(&mut map, &snap("bb", "drift"), &v(5), 5, &mut dropped);
        fold(&mut map, &snap("aa", "start"), &v(2), 2, &mut dropped);
        let h = &map["app"].files["/etc/app/app.json"];
        let causes: Vec<&str> = h.snapshots.iter().map(|r| r.cause.as_str()).collect();
        assert_eq!(causes, ["start", "drift"]);
        assert_eq!(h.latest().map(|r| r.fingerprint.as_str()), Some("bb"));
        for i in 0..CONFIG_HISTORY_KEPT as u64 + 5 {
            fold(
                &mut map,
                &snap("cc", "applied"),
                &v(10 + i),
                10,
                &mut dropped,
            );
        }
        let h = &map["app"].files["/etc/app/app.json"];
        assert_eq!(h.snapshots.len(), CONFIG_HISTORY_KEPT);
        assert!(h.snapshots.iter().all(|r| r.cause == "applied"));
        assert_eq!(dropped, 0);
    }

    #[test]
    fn files_beyond_the_cap_are_counted() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        for i in 0..CONFIG_FILES_KEPT + 2 {
            let mut s = snap("aa", "start");
            s.file = format!("/etc/app/{i:02}.json");
            fold(&mut map, &s, &("inc".to_owned(), 1), 1, &mut dropped);
        }
        assert_eq!(map["app"].files.len(), CONFIG_FILES_KEPT);
        assert_eq!(dropped, 2);
    }
}
