//! Projections that forget: a config rolled back from two mounts to one drops the other
//! disk, a probe removed drops its check, a module the heartbeat no longer lists leaves (a
//! service module with its service).

use crate::projection::Fleet;
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::EventEnvelope;
use uuid::Uuid;

struct Host {
    fleet: Fleet,
    seq: u64,
}

impl Host {
    fn new() -> Self {
        Host {
            fleet: Fleet::new(),
            seq: 0,
        }
    }

    fn send(&mut self, module: &str, body: Body) {
        self.seq += 1;
        self.fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: "web-01".to_owned(),
            seq: self.seq,
            time_unix_ms: 1_790_000_000_000 + self.seq as i64,
            module: module.to_owned(),
            incarnation: Uuid::nil(),
            body,
        });
    }

    fn config(&mut self, module: &str, kind: &str, toml: &str) {
        let body = Body::ModuleState(pb::ModuleState {
            module: module.to_owned(),
            kind: kind.to_owned(),
            state: pb::ModuleRunState::Running as i32,
            reason: "started".to_owned(),
            config_fingerprint: format!("fp-{}", toml.len()),
            config_toml: toml.to_owned(),
        });
        self.send(module, body);
    }

    fn disk(&mut self, path: &str) {
        let body = Body::Disk(pb::DiskUsage {
            path: path.to_owned(),
            used_basis_points: 9500,
            level: pb::DiskLevel::Crit as i32,
            ..Default::default()
        });
        self.send("disk", body);
    }

    fn check(&mut self, check: &str) {
        let body = Body::Health(pb::HealthCheck {
            check: check.to_owned(),
            status: pb::HealthStatus::Failed as i32,
            ..Default::default()
        });
        self.send("health", body);
    }

    fn heartbeat(&mut self, modules: &[(&str, &str)]) {
        let body = Body::Heartbeat(pb::Heartbeat {
            interval_ms: 1000,
            modules: (modules.iter())
                .map(|(name, kind)| pb::ModuleStatus {
                    name: (*name).to_owned(),
                    kind: (*kind).to_owned(),
                    state: pb::ModuleRunState::Running as i32,
                    expected_interval_ms: 1000,
                })
                .collect(),
            ..Default::default()
        });
        self.send("heartbeat", body);
    }

    fn disks(&self) -> Vec<String> {
        self.fleet
            .host("web-01")
            .unwrap()
            .disks
            .keys()
            .cloned()
            .collect()
    }
}

const TWO_MOUNTS: &str = "type = \"disk\"\npaths = [\"/\", \"/data\"]\n";
const ONE_MOUNT: &str = "type = \"disk\"\npaths = [\"/\"]\n";

#[test]
fn a_disk_config_rolled_back_to_fewer_mounts_forgets_the_dropped_one() {
    let mut h = Host::new();
    h.config("disk", "disk", TWO_MOUNTS);
    h.disk("/");
    h.disk("/data");
    assert_eq!(h.disks(), ["/", "/data"]);
    h.config("disk", "disk", ONE_MOUNT);
    assert_eq!(h.disks(), ["/"]);
    // A pause (no config in the event) forgets nothing.
    h.config("disk", "disk", "");
    assert_eq!(h.disks(), ["/"]);
}

#[test]
fn all_mounts_or_an_unknown_config_forgets_no_disk() {
    let mut h = Host::new();
    h.disk("/");
    h.disk("/data");
    h.config(
        "disk",
        "disk",
        "type = \"disk\"\npaths = [\"/\"]\nall_mounts = true\n",
    );
    assert_eq!(h.disks(), ["/", "/data"]);
    h.config("disk", "disk", "not toml [");
    assert_eq!(h.disks(), ["/", "/data"]);
}

#[test]
fn a_removed_probe_forgets_its_check() {
    let mut h = Host::new();
    let probe = |name: &str| {
        format!("[[probes]]\nname = \"{name}\"\ntype = \"tcp\"\naddress = \"127.0.0.1:1\"\n")
    };
    let two = format!("type = \"health\"\n{}{}", probe("api"), probe("db"));
    h.config("health", "health", &two);
    h.check("api");
    h.check("db");
    let one = format!("type = \"health\"\n{}", probe("api"));
    h.config("health", "health", &one);
    let host = h.fleet.host("web-01").unwrap();
    let checks: Vec<&String> = host.runbooks.health.keys().collect();
    assert_eq!(checks, ["api"]);
}

#[test]
fn a_module_the_heartbeat_no_longer_lists_leaves_and_takes_its_disks() {
    let mut h = Host::new();
    h.heartbeat(&[("heartbeat", "heartbeat"), ("disk", "disk"), ("log", "log")]);
    h.config("disk", "disk", TWO_MOUNTS);
    h.disk("/data");
    h.heartbeat(&[("heartbeat", "heartbeat"), ("disk", "disk")]);
    let host = h.fleet.host("web-01").unwrap();
    assert_eq!(
        host.modules.keys().collect::<Vec<_>>(),
        ["disk", "heartbeat"]
    );
    assert_eq!(h.disks(), ["/data"]);
    // The disk module is gone from the config: its disks go with it.
    h.heartbeat(&[("heartbeat", "heartbeat")]);
    let host = h.fleet.host("web-01").unwrap();
    assert_eq!(host.modules.keys().collect::<Vec<_>>(), ["heartbeat"]);
    assert!(h.disks().is_empty());
}

#[test]
fn a_service_module_the_heartbeat_no_longer_lists_takes_its_service() {
    let mut h = Host::new();
    let service = |name: &str| {
        Body::Service(pb::ServiceState {
            service: name.to_owned(),
            manager: "process".to_owned(),
            state: pb::ServiceRunState::Stopped as i32,
            ..Default::default()
        })
    };
    h.heartbeat(&[
        ("heartbeat", "heartbeat"),
        ("app", "service"),
        ("web", "service"),
    ]);
    h.send("app", service("app"));
    h.send("web", service("web"));
    let services = |h: &Host| -> Vec<String> {
        let host = h.fleet.host("web-01").unwrap();
        host.services.keys().cloned().collect()
    };
    assert_eq!(services(&h), ["app", "web"]);
    h.heartbeat(&[("heartbeat", "heartbeat"), ("web", "service")]);
    assert_eq!(services(&h), ["web"]);
}
