//! An active/standby service group for the tests: one member per host, each running testapp
//! (tests/fixtures) as the `router` service of group `router` with a role file, and the waits
//! that read what the group did (the role files, the `group_failover` events).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use opsfleet_proto::api::{GroupMemberView, GroupsReply};
use serde_json::Value;

use crate::agent::AgentSpec;
use crate::cluster::Cluster;
use crate::opsctl::Opsctl;
use crate::secure::free_port;
use crate::wait::wait_until;

/// How often the role files are read.
const POLL: Duration = Duration::from_millis(250);

fn testapp() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/testapp.py")
}

/// One host's member: its host, its app's port and directory (`broken` there makes the app
/// exit at start; `role` is the role file).
pub struct Member {
    pub host: String,
    pub port: u16,
    pub dir: PathBuf,
}

impl Member {
    pub fn new(root: &Path, host: &str) -> Result<Member> {
        let dir = root.join(format!("router-{host}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Member {
            host: host.to_owned(),
            port: free_port()?,
            dir,
        })
    }

    pub fn role_file(&self) -> PathBuf {
        self.dir.join("role")
    }

    /// What the role file says now (empty before the first role).
    pub fn role(&self) -> String {
        std::fs::read_to_string(self.role_file()).unwrap_or_default()
    }

    /// The agent's `[[modules]]`: the `router` service of group `router`.
    pub fn modules(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"
[[modules]]
type = "service"
name = "router"
interval = "200ms"
argv = ["sh", "-c", "test -e {d}/broken && exit 1; exec python3 {app} --port {port} --ready-after 1"]
stop_grace = "3s"
restart_backoff_min = "1s"
restart_backoff_max = "2s"
remote = ["role", "restart"]
health_interval = "300ms"
ready_timeout = "10s"

[[modules.health]]
name = "web"
type = "http"
url = "http://127.0.0.1:{port}/healthz"
timeout = "300ms"

[modules.role]
group = "router"
file = "{d}/role"
"#,
            app = testapp().display(),
            port = self.port,
        )
    }
}

/// The host whose role file says `active` once exactly one does and every other says
/// `standby` (and it is not `not`), within `wait`.
pub async fn one_active(members: &[Member], not: Option<&str>, wait: Duration) -> Result<String> {
    wait_until(
        "exactly one role file saying active",
        wait,
        POLL,
        async || {
            let roles: Vec<(&str, String)> = (members.iter())
                .map(|m| (m.host.as_str(), m.role()))
                .collect();
            let actives: Vec<&str> = (roles.iter())
                .filter(|(_, r)| r.as_str() == "active")
                .map(|(h, _)| *h)
                .collect();
            let standbys = roles
                .iter()
                .filter(|(_, r)| r.as_str() == "standby")
                .count();
            Ok(match actives.as_slice() {
                [one] if standbys + 1 == members.len() && Some(*one) != not => {
                    Some((*one).to_owned())
                }
                _ => None,
            })
        },
    )
    .await
}

/// The group `router` as `opsctl service groups` shows it, once one of its members holds `f`.
pub async fn member_where(
    opsctl: &Opsctl,
    wait: Duration,
    what: &str,
    f: impl Fn(&GroupMemberView) -> bool,
) -> Result<GroupsReply> {
    wait_until(what, wait, POLL, async || {
        let r: GroupsReply = opsctl.json(&["service", "groups"]).await?;
        let ok = (r.groups.iter())
            .filter(|g| g.name == "router")
            .flat_map(|g| &g.members)
            .any(&f);
        Ok(ok.then_some(r))
    })
    .await
}

/// Starts one agent per host of `hosts` (heartbeat every 300 ms), each a member of group
/// `router`, and waits until the group settled: one member active, its activation recorded
/// `completed`, and a healthy standby. The members, the active host and a standby host.
pub async fn start_settled(
    c: &mut Cluster,
    hosts: &[&str],
    wait: Duration,
) -> Result<(Vec<Member>, String, String)> {
    let mut members = Vec::new();
    for host in hosts {
        let m = Member::new(c.dir(), host)?;
        let spec = (AgentSpec::new(host))
            .heartbeat(Duration::from_millis(300))
            .modules_toml(&m.modules());
        c.add_agent(spec)?;
        members.push(m);
    }
    let opsctl = c.opsctl.clone();
    let first = one_active(&members, None, wait).await?;
    let other = (hosts.iter().find(|h| **h != first))
        .context("two members")?
        .to_string();
    // The activation has ended (recorded), so a failover is not refused as still running.
    wait_until(
        "the activation recorded completed",
        wait,
        POLL,
        async || {
            let events = failover_events(&opsctl).await?;
            let done = (events.iter())
                .any(|e| e["phase"] == "completed" && e["to_host"] == first.as_str());
            Ok(done.then_some(()))
        },
    )
    .await?;
    member_where(&opsctl, wait, "the standby healthy in groups", |m| {
        m.host == other && m.role == "standby" && m.fitness == "healthy"
    })
    .await?;
    Ok((members, first, other))
}

/// The `group_failover` events of the log (their payloads).
pub async fn failover_events(opsctl: &Opsctl) -> Result<Vec<Value>> {
    let out = (opsctl)
        .run(&[
            "-o",
            "json",
            "events",
            "--since",
            "30m",
            "--kind",
            "group_failover",
        ])
        .await?
        .ok()?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["payload"].clone())
        .collect())
}
