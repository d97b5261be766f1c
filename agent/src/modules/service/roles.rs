//! `RoleBoard`: each service's active/standby group and role (`[modules.role]`) and blue/green
//! slot group and liveness (`[modules.traffic]`), shared by the service modules (which fill
//! their heartbeat summary from it and deliver the role at start) and the command handler
//! (`service_role`, `traffic_switch`). Also the delivery of a role to the app (a file, an env
//! file) and the persisted keys (module state of the service: `role`, `live`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use opsfleet_proto::pb;
use tracing::{info, warn};

use crate::config::{GroupRole, RoleDelivery, ServiceConfig};
use crate::modules::health::probe::post_json;

/// Key of the last role given to the service (module state of the service).
pub const ROLE_KEY: &str = "role";
/// Key of the "has the traffic of its slot group" mark (module state; present = live).
pub const LIVE_KEY: &str = "live";

/// What a service is in its groups now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub group: String,
    /// "active", "standby"; empty before any was passed to the app.
    pub role: String,
    pub slot_group: String,
    pub live: bool,
}

/// Every service's membership, keyed by service (module) name.
#[derive(Debug, Clone, Default)]
pub struct RoleBoard(Arc<Mutex<BTreeMap<String, Membership>>>);

impl RoleBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Membership>> {
        // Plain values; a panicked holder cannot leave them inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, service: &str) -> Option<Membership> {
        self.lock().get(service).cloned()
    }

    /// The role passed to the app (by a command, or at start).
    pub fn set_role(&self, service: &str, group: &str, role: GroupRole) {
        let mut map = self.lock();
        let m = map.entry(service.to_owned()).or_default();
        m.group = group.to_owned();
        m.role = role.as_str().to_owned();
    }

    /// The role delivered at start, unless a command gave one meanwhile; whether it was set.
    pub fn set_initial_role(&self, service: &str, group: &str, role: GroupRole) -> bool {
        let mut map = self.lock();
        let m = map.entry(service.to_owned()).or_default();
        if !m.role.is_empty() {
            return false;
        }
        m.group = group.to_owned();
        m.role = role.as_str().to_owned();
        true
    }

    /// Whether a role was given to the service yet.
    pub fn has_role(&self, service: &str) -> bool {
        self.lock().get(service).is_some_and(|m| !m.role.is_empty())
    }

    /// The service's slot group and liveness as known at start (unless a switch set them).
    pub fn set_slot(&self, service: &str, slot_group: &str, live: bool) {
        let mut map = self.lock();
        let m = map.entry(service.to_owned()).or_default();
        if m.slot_group.is_empty() {
            m.slot_group = slot_group.to_owned();
            m.live = live;
        }
    }

    /// After a switch to `service`: it is live, `others` (the other slots of its group on
    /// this host) are not.
    pub fn switched(&self, service: &str, slot_group: &str, others: &[String]) {
        let mut map = self.lock();
        for (name, live) in
            std::iter::once((service, true)).chain(others.iter().map(|o| (o.as_str(), false)))
        {
            let m = map.entry(name.to_owned()).or_default();
            m.slot_group = slot_group.to_owned();
            m.live = live;
        }
    }

    /// `summary` with the service's group, role, slot group and liveness filled in.
    pub fn fill(&self, summary: &mut pb::ServiceSummary) {
        if let Some(m) = self.lock().get(&summary.service) {
            summary.group = m.group.clone();
            summary.role = m.role.clone();
            summary.slot_group = m.slot_group.clone();
            summary.live = m.live;
        }
    }
}

/// Errors of delivering a role to the app through a file.
#[derive(Debug, thiserror::Error)]
pub enum RoleWriteError {
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `content` to `path` atomically (a temp file beside it, flushed, renamed over it).
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), RoleWriteError> {
    let err = |source| RoleWriteError::Write {
        path: path.display().to_string(),
        source,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(".{}.role-new", name.unwrap_or_default()));
    let mut f = std::fs::File::create(&temp).map_err(err)?;
    f.write_all(content)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        err(e)
    })
}

/// `text` (an env file) with `var=value` replacing every earlier assignment of `var`
/// (appended when there was none); other lines kept as they were. Pure.
pub fn set_env_line(text: &str, var: &str, value: &str) -> String {
    let mut out = String::new();
    let mut set = false;
    for line in text.lines() {
        let bare = line.trim_start();
        let bare = bare.strip_prefix("export ").unwrap_or(bare).trim_start();
        let assigns = bare
            .strip_prefix(var)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if assigns {
            if !set {
                out.push_str(&format!("{var}={value}\n"));
                set = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !set {
        out.push_str(&format!("{var}={value}\n"));
    }
    out
}

/// Writes `var=true|false` for `role` into the env file at `path` (created when missing).
pub fn write_env_role(path: &Path, var: &str, role: GroupRole) -> Result<(), RoleWriteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(RoleWriteError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let value = if role == GroupRole::Active {
        "true"
    } else {
        "false"
    };
    write_atomic(path, set_env_line(&text, var, value).as_bytes())
}

/// The JSON an app told by HTTP gets: `{"role": "active"}`.
pub fn http_body(role: GroupRole) -> String {
    serde_json::json!({ "role": role.as_str() }).to_string()
}

/// What a service module does for its groups: the persisted role and liveness (from
/// `restore`), delivered once at start.
#[derive(Debug, Default)]
pub struct Groups {
    saved_role: Option<GroupRole>,
    saved_live: bool,
    started: bool,
    board: Option<RoleBoard>,
}

impl Groups {
    /// Takes a persisted key of the module's state; false when it is not one of ours.
    pub fn restore(&mut self, service: &str, key: &str, value: &[u8]) -> bool {
        match key {
            ROLE_KEY => {
                let text = String::from_utf8_lossy(value);
                self.saved_role = GroupRole::parse(&text);
                if self.saved_role.is_none() {
                    warn!(service, role = %text, "unreadable persisted role ignored");
                }
                true
            }
            LIVE_KEY => {
                self.saved_live = true;
                true
            }
            _ => false,
        }
    }

    /// Once, before the service starts: the persisted role (else `initial`) passed to the
    /// app (a file or env file now; an HTTP call in the background, retried until the app
    /// answers or a command gave a role), and the slot group with its persisted liveness.
    pub fn start(&mut self, service: &str, cfg: &ServiceConfig, board: &RoleBoard) {
        if self.started {
            return;
        }
        self.started = true;
        self.board = Some(board.clone());
        if let Some(t) = &cfg.traffic {
            board.set_slot(service, &t.slot_group, self.saved_live);
        }
        let Some(section) = &cfg.role else {
            return;
        };
        let role = self.saved_role.unwrap_or(section.initial);
        let group = section.group.clone();
        let written = match section.delivery() {
            Some(RoleDelivery::File(path)) => write_atomic(path, role.as_str().as_bytes()),
            Some(RoleDelivery::EnvFile { path, var, .. }) => write_env_role(path, var, role),
            Some(RoleDelivery::Http(url)) => {
                let (url, board, service) = (url.to_owned(), board.clone(), service.to_owned());
                let timeout = section.http_timeout;
                tokio::spawn(async move {
                    let body = http_body(role);
                    for _ in 0..START_ATTEMPTS {
                        if board.has_role(&service) {
                            return;
                        }
                        let call = tokio::time::timeout(timeout, post_json(&url, &body)).await;
                        if let Ok(Ok((status, _))) = call {
                            if (200..300).contains(&status)
                                && board.set_initial_role(&service, &group, role)
                            {
                                info!(service = %service, role = role.as_str(), "role passed to the app at start");
                            }
                            return;
                        }
                        tokio::time::sleep(START_RETRY).await;
                    }
                    warn!(service = %service, url = %url, "the app never took its role at start");
                });
                return;
            }
            None => return,
        };
        match written {
            Ok(()) => {
                board.set_initial_role(service, &group, role);
                info!(
                    service,
                    role = role.as_str(),
                    "role passed to the app at start"
                );
            }
            Err(e) => {
                warn!(service, error = %opsfleet_report::ErrorChain(&e), "role not written at start")
            }
        }
    }

    /// `summary` with the group fields filled in (once started).
    pub fn fill(&self, summary: &mut pb::ServiceSummary) {
        if let Some(b) = &self.board {
            b.fill(summary);
        }
    }
}

/// How often an app told by HTTP is tried at start, and how long apart.
const START_ATTEMPTS: u32 = 120;
const START_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoleSection;

    #[test]
    fn the_env_var_is_replaced_once_and_other_lines_kept() {
        let text =
            "# router\nPORT=80\nROUTER_ACTIVE=false\nexport ROUTER_ACTIVE = 1\nROUTER_ACTIVE_X=1\n";
        assert_eq!(
            set_env_line(text, "ROUTER_ACTIVE", "true"),
            "# router\nPORT=80\nROUTER_ACTIVE=true\nROUTER_ACTIVE_X=1\n"
        );
        assert_eq!(set_env_line("", "A", "false"), "A=false\n");
    }

    #[test]
    fn a_restart_keeps_the_persisted_role_else_the_initial_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("role");
        let mut cfg = ServiceConfig::process(vec!["app".into()]);
        cfg.role = Some(RoleSection::file("router", file.clone()));
        let board = RoleBoard::default();
        Groups::default().start("r", &cfg, &board);
        assert_eq!(std::fs::read_to_string(&file).expect("written"), "standby");
        assert_eq!(board.get("r").expect("member").role, "standby");

        let mut g = Groups::default();
        assert!(g.restore("r", ROLE_KEY, b"active"));
        assert!(!g.restore("r", "child", b"{}"));
        let board = RoleBoard::default();
        g.start("r", &cfg, &board);
        assert_eq!(std::fs::read_to_string(&file).expect("written"), "active");
        let mut s = pb::ServiceSummary {
            service: "r".into(),
            ..Default::default()
        };
        g.fill(&mut s);
        assert_eq!((s.group.as_str(), s.role.as_str()), ("router", "active"));
        // A command's role is not overwritten by a late start delivery.
        board.set_role("r", "router", GroupRole::Standby);
        assert!(!board.set_initial_role("r", "router", GroupRole::Active));
    }

    #[test]
    fn a_switch_makes_one_slot_live() {
        let board = RoleBoard::default();
        board.set_slot("blue", "web", true);
        board.set_slot("green", "web", false);
        board.switched("green", "web", &["blue".to_owned()]);
        assert!(board.get("green").expect("green").live);
        assert!(!board.get("blue").expect("blue").live);
    }
}
