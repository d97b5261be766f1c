//! Projections that forget (pure): what an agent no longer has configured leaves its host's
//! state. Modules missing from the current heartbeat (the agent's list of its modules) are
//! dropped unless an event newer than it told of them, and so are their services; disks and health checks outside the
//! configured paths and probes of the host's disk and health modules (known from the configs
//! their `module_state` events carried) are dropped. So they leave the views and their
//! alerts resolve.

use std::collections::BTreeSet;

use opsfleet_agent::config::{parse_module_toml, ModuleConfig};
use opsfleet_proto::pb;

use super::HostState;
use crate::projection::runbooks::restore_tests;
use crate::projection::seq::Version;

/// The module kinds whose config names what they report.
pub const DISK_KIND: &str = "disk";
pub const HEALTH_KIND: &str = "health";

/// Drops the modules the current heartbeat at `version` no longer lists; then the disks or
/// checks, if a disk or health module left.
pub fn after_heartbeat(host: &mut HostState, hb: &pb::Heartbeat, version: &Version) {
    let listed: BTreeSet<&str> = hb.modules.iter().map(|m| m.name.as_str()).collect();
    let mut left = BTreeSet::new();
    host.modules.retain(|name, m| {
        let keep = listed.contains(name.as_str()) || m.version > *version;
        if !keep {
            left.insert(m.kind.clone());
        }
        keep
    });
    for kind in left {
        after_config(host, &kind, version);
        if kind == restore_tests::BACKUP_KIND {
            // A backup module left: its jobs' declared restore tests go with it.
            let at = host.last_seen_unix_ms;
            restore_tests::declare(
                &host.modules,
                &mut host.runbooks.backups,
                at,
                &mut host.truncated,
            );
        }
    }
    // A service is its module: one the agent no longer runs leaves with its alerts.
    (host.services).retain(|name, s| listed.contains(name.as_str()) || s.version > *version);
}

/// After a module of `kind` changed config (or left): drops what no module of that kind is
/// configured to report any more (reported no later than `version`). Nothing is dropped
/// while any such module's config is not known (not in the log, or a disk module reporting
/// `all_mounts`: the mounts are the host's to find).
pub fn after_config(host: &mut HostState, kind: &str, version: &Version) {
    let Some(names) = configured(host, kind) else {
        return;
    };
    match kind {
        DISK_KIND => (host.disks).retain(|p, d| names.contains(p) || d.version > *version),
        HEALTH_KIND => {
            (host.runbooks.health).retain(|c, s| names.contains(c) || s.version > *version)
        }
        _ => {}
    }
}

/// The disk paths or check names the host's modules of `kind` are configured to report, if
/// every one of their current configs is known; `None` for other kinds.
pub fn configured(host: &HostState, kind: &str) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for m in host.modules.values().filter(|m| m.kind == kind) {
        let known = m
            .configs
            .iter()
            .find(|c| c.fingerprint == m.config_fingerprint)?;
        match parse_module_toml(&known.toml).ok()? {
            ModuleConfig::Disk(c) if !c.all_mounts && !c.paths.is_empty() => {
                names.extend(c.paths.iter().map(|p| p.display().to_string()))
            }
            ModuleConfig::Health(c) => names.extend(c.probes.into_iter().map(|p| p.name)),
            _ => return None,
        }
    }
    matches!(kind, DISK_KIND | HEALTH_KIND).then_some(names)
}

#[cfg(test)]
#[path = "forget_tests.rs"]
mod tests;
