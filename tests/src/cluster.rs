//! A whole test cluster in one temp dir: nats-server, coordinators, agents and opsctl, with the
//! waits the scenarios share, log tails on failure, and teardown in every case.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use opsfleet_proto::api::StatusReply;
use tempfile::TempDir;

use crate::agent::{Agent, AgentSpec, OutboxInfo};
use crate::coordinator::{Coordinator, CoordinatorSpec};
use crate::nats::NatsServer;
use crate::opsctl::Opsctl;
use crate::wait::{wait_until, wait_until_default};

/// Processes of one test; everything is killed when it drops.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: processes first, then the temp dir.
    pub agents: Vec<Agent>,
    pub coordinators: Vec<Coordinator>,
    pub nats: NatsServer,
    pub opsctl: Opsctl,
    tmp: Option<TempDir>,
}

impl Cluster {
    /// Runs `scenario` against a fresh cluster (temp dir + nats-server). On error or panic the
    /// last lines of every process log are printed; all processes are torn down either way.
    /// Set `OPSFLEET_KEEP_TMP=1` to keep the temp dir of a failed run.
    pub async fn run<F>(name: &str, scenario: F)
    where
        F: AsyncFnOnce(&mut Cluster) -> Result<()>,
    {
        Self::run_on(name, "127.0.0.1", scenario).await;
    }

    /// [`Cluster::run`] with the nats-server listening on `nats_addr` instead of loopback.
    pub async fn run_on<F>(name: &str, nats_addr: &str, scenario: F)
    where
        F: AsyncFnOnce(&mut Cluster) -> Result<()>,
    {
        let cluster = match Cluster::start_on(name, nats_addr).await {
            Ok(c) => c,
            Err(e) => panic!("{name}: cannot start the cluster: {e:#}"),
        };
        Cluster::run_with(cluster, name, scenario).await
    }

    /// Runs `scenario` against a cluster built by the caller (e.g. on a server started from a
    /// shipped config); logs on failure and teardown as in [`Cluster::run`].
    pub async fn run_with<F>(mut cluster: Cluster, name: &str, scenario: F)
    where
        F: AsyncFnOnce(&mut Cluster) -> Result<()>,
    {
        let result = scenario(&mut cluster).await;
        if let Err(e) = result {
            cluster.print_logs();
            let kept = cluster.keep_tmp_if_asked();
            panic!("{name} failed: {e:#}{kept}");
        }
    }

    /// A cluster on a server the caller started in `tmp` (removed on drop), talking to it
    /// with `opsctl`; no coordinators or agents yet.
    pub fn with_server(tmp: TempDir, nats: NatsServer, opsctl: Opsctl) -> Cluster {
        Cluster {
            agents: Vec::new(),
            coordinators: Vec::new(),
            nats,
            opsctl,
            tmp: Some(tmp),
        }
    }

    /// A temp dir and a running nats-server; no coordinators or agents yet.
    pub async fn start(name: &str) -> Result<Cluster> {
        Self::start_on(name, "127.0.0.1").await
    }

    /// [`Cluster::start`] with the nats-server listening on `nats_addr`.
    pub async fn start_on(name: &str, nats_addr: &str) -> Result<Cluster> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("opsfleet-{name}-"))
            .tempdir()
            .context("cannot create the test's temp dir")?;
        let nats = NatsServer::start_in_on(tmp.path(), nats_addr).await?;
        let opsctl = Opsctl::new(&nats.url())?;
        Ok(Cluster {
            agents: Vec::new(),
            coordinators: Vec::new(),
            nats,
            opsctl,
            tmp: Some(tmp),
        })
    }

    pub fn dir(&self) -> &Path {
        self.tmp
            .as_ref()
            .map_or(Path::new("/nonexistent"), |t| t.path())
    }

    pub fn nats_url(&self) -> String {
        self.nats.url()
    }

    /// Writes the coordinator's config and starts it.
    pub fn add_coordinator(&mut self, spec: CoordinatorSpec) -> Result<()> {
        let c = Coordinator::spawn(self.dir(), &spec, &self.nats.url())?;
        self.coordinators.push(c);
        Ok(())
    }

    /// Writes the agent's config and starts it.
    pub fn add_agent(&mut self, spec: AgentSpec) -> Result<()> {
        let a = Agent::spawn(self.dir(), &spec, &self.nats.url())?;
        self.agents.push(a);
        Ok(())
    }

    pub fn agent(&mut self, host: &str) -> Result<&mut Agent> {
        self.agents
            .iter_mut()
            .find(|a| a.host == host)
            .ok_or_else(|| anyhow!("no agent {host} in this cluster"))
    }

    pub fn coordinator(&mut self, name: &str) -> Result<&mut Coordinator> {
        self.coordinators
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("no coordinator {name} in this cluster"))
    }

    pub fn hosts(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.host.clone()).collect()
    }

    /// Fails with `ProcessExited` if any process that should be running has died.
    pub fn check_alive(&mut self) -> Result<()> {
        self.nats.proc_mut().check_running()?;
        for c in &mut self.coordinators {
            c.proc_mut().check_running()?;
        }
        for a in &mut self.agents {
            a.proc_mut().check_running()?;
        }
        Ok(())
    }

    /// `opsctl status --output json`, from one coordinator or whichever answers first.
    pub async fn status(&mut self, coordinator: Option<&str>) -> Result<StatusReply> {
        self.check_alive()?;
        self.opsctl.status(coordinator).await
    }

    /// Waits until `coordinator` answers `opsctl status` as `role` (`active`, `standby`),
    /// polling every 100 ms for at most `wait`.
    pub async fn wait_role(&mut self, coordinator: &str, role: &str, wait: Duration) -> Result<()> {
        let what = format!("{coordinator} to be {role}");
        wait_until(&what, wait, Duration::from_millis(100), async || {
            let r = self.status(Some(coordinator)).await?;
            Ok((r.responder.role.as_str() == role).then_some(()))
        })
        .await
    }

    /// Waits until `coordinator` reports every host in `min_seq` with `last_seq >= min`.
    pub async fn wait_hosts_at_least(
        &mut self,
        coordinator: &str,
        min_seq: &BTreeMap<String, u64>,
    ) -> Result<StatusReply> {
        let what = format!("coordinator {coordinator} to report hosts at least at {min_seq:?}");
        wait_until_default(&what, async || {
            let reply = self.status(Some(coordinator)).await?;
            let ok = min_seq.iter().all(|(host, min)| {
                reply
                    .hosts
                    .iter()
                    .any(|h| &h.host == host && h.last_seq >= *min)
            });
            Ok(ok.then_some(reply))
        })
        .await
    }

    /// Waits until `coordinator` has persisted everything: `behind == 0` and every host's
    /// `last_seq` equals the expected one (and no more hosts' events are arriving).
    pub async fn wait_caught_up(
        &mut self,
        coordinator: &str,
        expected: &BTreeMap<String, u64>,
    ) -> Result<StatusReply> {
        let what = format!("coordinator {coordinator} to catch up to {expected:?} with behind = 0");
        let mut last_seen = String::new();
        let result = wait_until_default(&what, async || {
            let reply = self.status(Some(coordinator)).await?;
            let seqs: BTreeMap<&str, u64> = reply
                .hosts
                .iter()
                .map(|h| (h.host.as_str(), h.last_seq))
                .collect();
            last_seen = format!("behind = {}, hosts = {seqs:?}", reply.responder.behind);
            let all = expected
                .iter()
                .all(|(host, n)| seqs.get(host.as_str()) == Some(n));
            Ok((all && reply.responder.behind == 0).then_some(reply))
        })
        .await;
        result.with_context(|| format!("last status: {last_seen}"))
    }

    /// Stops every running agent gracefully and returns their outbox reports; each must have
    /// drained (`pending == 0`).
    pub async fn stop_agents(&mut self) -> Result<BTreeMap<String, OutboxInfo>> {
        let mut out = BTreeMap::new();
        for a in &mut self.agents {
            if a.is_running() {
                a.stop().await?;
            }
            let info = a.outbox().await?;
            if info.pending != 0 {
                bail!(
                    "agent {} exited with {} events still in its outbox (last_seq {}); log tail:\n{}",
                    a.host,
                    info.pending,
                    info.last_seq,
                    a.proc().log_tail(crate::procs::TAIL_LINES)
                );
            }
            out.insert(a.host.clone(), info);
        }
        Ok(out)
    }

    /// Prints the last lines of every process log to the test output.
    pub fn print_logs(&mut self) {
        eprintln!(
            "===== logs of the test cluster in {} =====",
            self.dir().display()
        );
        self.nats.proc_mut().print_tail();
        for c in &mut self.coordinators {
            c.proc_mut().print_tail();
        }
        for a in &mut self.agents {
            a.proc_mut().print_tail();
        }
    }

    fn keep_tmp_if_asked(&mut self) -> String {
        if std::env::var_os("OPSFLEET_KEEP_TMP").is_some_and(|v| v != "0") {
            if let Some(tmp) = self.tmp.take() {
                let path = tmp.keep();
                return format!("\n(temp dir kept: {})", path.display());
            }
        }
        "\n(set OPSFLEET_KEEP_TMP=1 to keep the temp dir of a failed run)".to_owned()
    }
}
