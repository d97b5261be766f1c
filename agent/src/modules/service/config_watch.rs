//! The service module's look at its declared config files on every run: through the shared
//! `ConfigBoard` (see there how a command's write is told from drift), a
//! `ServiceConfigSnapshot` at the first look and on every change; the fingerprints reported
//! are persisted with the module's state (key `config`) so a restarted agent reports a file
//! again only when it changed meanwhile.

use std::collections::BTreeMap;
use std::path::PathBuf;

use opsfleet_proto::pb;
use tracing::warn;

use super::config_board::ConfigBoard;
use crate::config::AppConfigFiles;

/// The module state key of the persisted fingerprints.
pub const CONFIG_KEY: &str = "config";

/// One service's watch of its config files.
#[derive(Debug, Default)]
pub struct ConfigWatch {
    /// Fingerprints persisted by an earlier agent (from `restore`).
    persisted: BTreeMap<PathBuf, String>,
    /// As last handed to `take_state`.
    saved: BTreeMap<PathBuf, String>,
    board: Option<ConfigBoard>,
    /// Files whose last read failed (logged once until they read again).
    failing: Vec<PathBuf>,
}

impl ConfigWatch {
    /// Fingerprints an earlier agent persisted (`take_state`'s value).
    pub fn restore(&mut self, value: &[u8]) {
        match serde_json::from_slice::<BTreeMap<PathBuf, String>>(value) {
            Ok(map) => {
                self.saved = map.clone();
                self.persisted = map;
            }
            Err(e) => warn!(error = %e, "unreadable config fingerprints ignored"),
        }
    }

    /// Looks at every declared file; the snapshots of those that changed.
    pub fn look(
        &mut self,
        service: &str,
        cfg: &AppConfigFiles,
        board: &ConfigBoard,
    ) -> Vec<pb::event::Body> {
        self.board.get_or_insert_with(|| board.clone());
        let mut out = Vec::new();
        for file in &cfg.files {
            let persisted = self.persisted.get(file).map(String::as_str);
            match board.observe(service, file, cfg.keep, persisted) {
                Ok(snap) => {
                    self.failing.retain(|f| f != file);
                    out.extend(snap.map(pb::event::Body::ServiceConfig));
                }
                Err(e) if !self.failing.contains(file) => {
                    warn!(service, file = %file.display(), error = %opsfleet_report::ErrorChain(&e), "cannot read a config file");
                    self.failing.push(file.clone());
                }
                Err(_) => {}
            }
        }
        out
    }

    /// The fingerprints reported, when they changed since last taken.
    pub fn take_state(
        &mut self,
        service: &str,
        cfg: &AppConfigFiles,
    ) -> Option<(String, Option<Vec<u8>>)> {
        let board = self.board.as_ref()?;
        let now: BTreeMap<PathBuf, String> = (cfg.files.iter())
            .filter_map(|f| Some((f.clone(), board.known(service, f)?)))
            .collect();
        if now == self.saved {
            return None;
        }
        let value = serde_json::to_vec(&now).ok();
        self.saved = now;
        Some((CONFIG_KEY.to_owned(), value))
    }
}
