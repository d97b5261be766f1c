//! The chaos suite's stack: the shipped compose file plus an override (every NATS node's client
//! port published on loopback, web-01's log module reading the lines the test writes), the
//! line producer, the observers (opsctl as alice, a JetStream client for stream leaders), and
//! the checks after a schedule.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use opsfleet_bus::{ConnectMode, NatsConfig, TlsConfig};
use opsfleet_proto::api::{CommandView, Responder};
use opsfleet_tests::check::{check_exactly_once, LogEntry};
use opsfleet_tests::compose::{build_images, remove_stale_stacks, Stack};
use opsfleet_tests::disk::SmallDisk;
use opsfleet_tests::secure::{free_port, generate_secrets, operator_args, repo_root};
use opsfleet_tests::{wait_until, Opsctl, RebuildReport};

use super::clock::FakeClock;
use super::faults::Fault;
use super::logs::common_prefix;

const TAG: &str = "chaos";
const PROJECT_PREFIX: &str = "opsfleet-chaos-";
const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];
const LINES_PER_SECOND: u64 = 20;
/// Size of nats-2's filesystem: room for the run's streams, small enough to fill at once.
const SMALL_DISK_MIB: u32 = 256;

/// Appends `ERROR chaos line <n>` to a file at a steady rate until stopped.
struct Producer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Producer {
    fn start(path: PathBuf) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w) = (Arc::clone(&stop), Arc::clone(&written));
        let thread = std::thread::spawn(move || -> Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            // Bounded: at most an hour of lines, whatever happens to the test.
            for n in 1..=LINES_PER_SECOND * 3600 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                writeln!(file, "2026-01-01T00:00:00Z ERROR chaos line {n}")?;
                file.flush()?;
                w.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1000 / LINES_PER_SECOND));
            }
            Ok(())
        });
        Producer {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// Stops writing; the number of lines written.
    fn finish(&mut self) -> Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("the line producer panicked"))??;
        }
        Ok(self.written.load(Ordering::SeqCst))
    }
}

pub struct Chaos {
    pub stack: Stack,
    /// nats-2's `/data`: a small tmpfs of the test's own that a fault fills up. `None` where
    /// it cannot be mounted (not root); that fault is then skipped with a message.
    pub small_disk: Option<SmallDisk>,
    /// web-01's clock offset, where libfaketime is installed (else that fault is skipped).
    pub fake_clock: Option<FakeClock>,
    _tmp: tempfile::TempDir,
    pub opsctl: Opsctl,
    js: jetstream::Context,
    producer: std::sync::Mutex<Producer>,
    commands_issued: AtomicU64,
}

impl Chaos {
    /// Builds the images, starts the stack and waits until events flow from every host.
    pub async fn up() -> Result<Chaos> {
        let root = repo_root();
        build_images(TAG)?;
        remove_stale_stacks(&root.join("deploy/compose.yaml"), PROJECT_PREFIX);
        let tmp = tempfile::Builder::new()
            .prefix("opsfleet-chaos-")
            .tempdir()?;
        let secrets = tmp.path().join("secrets");
        generate_secrets(&secrets)?;
        let applog = tmp.path().join("applog");
        std::fs::create_dir_all(&applog)?;
        // The agent runs unprivileged in its container.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&applog, std::fs::Permissions::from_mode(0o777))?;
        let shipped = std::fs::read_to_string(root.join("deploy/compose/agent-web-01.toml"))?;
        let agent_toml = tmp.path().join("agent-web-01.toml");
        std::fs::write(
            &agent_toml,
            format!(
                "{}\n[[modules]]\ntype = \"log\"\nname = \"log\"\ninterval = \"1s\"\n\
                 paths = [\"/var/log/app/*.log\"]\nstart_at = \"beginning\"\nrate_limit = 0\n\
                 [[modules.patterns]]\nname = \"chaos\"\nregex = 'ERROR chaos line \\d+'\n",
                shipped
            ),
        )?;
        std::fs::set_permissions(&agent_toml, std::fs::Permissions::from_mode(0o644))?;
        // nats-2 stores on a small filesystem of the test's own (it survives container
        // restarts, unlike a compose tmpfs), so that a fault can fill it.
        let small_disk = match SmallDisk::mount(&tmp.path().join("nats-2-data"), SMALL_DISK_MIB) {
            Ok(disk) => {
                std::fs::set_permissions(disk.dir(), std::fs::Permissions::from_mode(0o777))?;
                Some(disk)
            }
            Err(e) => {
                eprintln!("cluster_chaos: nats-2 keeps its volume, the disk-full fault will be skipped: {e:#}");
                None
            }
        };
        let nats2_data = match &small_disk {
            Some(disk) => format!("\n    volumes:\n      - {}:/data", disk.dir().display()),
            None => String::new(),
        };
        let fake_clock = FakeClock::prepare(TAG, &tmp.path().join("faketime"))?;
        let (web01_clock, web01_offset) = match &fake_clock {
            Some(c) => (c.override_lines(), c.volume_line()),
            None => (String::new(), String::new()),
        };
        // Fixed host ports: a restarted container keeps its port (port 0 would pick a new one).
        let ports = [free_port()?, free_port()?, free_port()?];
        let override_file = tmp.path().join("chaos.override.yaml");
        std::fs::write(
            &override_file,
            format!(
                "version: \"3.8\"\nservices:\n  nats-1:\n    ports: [\"127.0.0.1:{}:4222\"]\n  \
                 nats-2:\n    ports: [\"127.0.0.1:{}:4222\"]{}\n  \
                 nats-3:\n    ports: [\"127.0.0.1:{}:4222\"]\n  agent-web-01:{}\n    volumes:\n      \
                 - {}:/etc/opsfleet/agent.toml:ro\n      - {}:/var/log/app:ro{}\n",
                ports[0],
                ports[1],
                nats2_data,
                ports[2],
                web01_clock,
                agent_toml.display(),
                applog.display(),
                web01_offset
            ),
        )?;
        let stack = Stack {
            project: format!("{PROJECT_PREFIX}{}", std::process::id()),
            files: vec![root.join("deploy/compose.yaml"), override_file],
            secrets: secrets.clone(),
            tag: TAG.to_owned(),
        };
        stack.run(&["up", "-d"])?;
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let tls = secrets.join("tls");
        let opsctl =
            Opsctl::new(&urls.join(","))?.with_args(operator_args(&secrets, "alice", "alice"));
        // Stream leaders are asked with a coordinator's read rights (stream info only).
        let observer = NatsConfig {
            urls: urls.clone(),
            nkey: Some(secrets.join("nkeys/blue.nk")),
            inbox_prefix: Some("_INBOX.blue".to_owned()),
            tls: Some(TlsConfig {
                ca: Some(tls.join("ca.pem")),
                cert: Some(tls.join("coordinator.pem")),
                key: Some(tls.join("coordinator-key.pem")),
            }),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let client = wait_until(
            "the observer to connect",
            Duration::from_secs(60),
            Duration::from_millis(500),
            async || {
                Ok(
                    opsfleet_bus::connect(&observer, "chaos observer", ConnectMode::FailFast)
                        .await
                        .ok(),
                )
            },
        )
        .await?;
        let js = opsfleet_bus::jetstream(client, &observer);
        let producer = Producer::start(applog.join("app.log"));
        let chaos = Chaos {
            stack,
            small_disk,
            fake_clock,
            _tmp: tmp,
            opsctl,
            js,
            producer: std::sync::Mutex::new(producer),
            commands_issued: AtomicU64::new(0),
        };
        wait_until(
            "events from every host and an active coordinator",
            Duration::from_secs(90),
            Duration::from_millis(500),
            async || {
                let reply = chaos.opsctl.status(None).await?;
                let flowing = HOSTS
                    .iter()
                    .all(|h| reply.hosts.iter().any(|v| v.host == *h && v.last_seq >= 3));
                let active = chaos.active().await.ok().flatten().is_some();
                Ok((flowing && active).then_some(()))
            },
        )
        .await?;
        Ok(chaos)
    }

    /// The compose network of the stack.
    pub fn network(&self) -> String {
        format!("{}_default", self.stack.project)
    }

    /// The container id of a service.
    pub fn container(&self, service: &str) -> Result<String> {
        let id = self.stack.run(&["ps", "-q", service])?;
        let id = id.trim();
        ensure!(!id.is_empty(), "{service} has no container");
        Ok(id.to_owned())
    }

    /// The node leading `stream` now (waits while it has none).
    pub async fn stream_leader(&self, stream: &str) -> Result<String> {
        wait_until(
            &format!("a leader of {stream}"),
            Duration::from_secs(60),
            Duration::from_millis(500),
            async || {
                let Ok(mut s) = self.js.get_stream(stream).await else {
                    return Ok(None);
                };
                let Ok(info) = s.info().await else {
                    return Ok(None);
                };
                Ok(info.cluster.as_ref().and_then(|c| c.leader.clone()))
            },
        )
        .await
    }

    pub async fn active(&self) -> Result<Option<Responder>> {
        let replies = self.coordinators().await?;
        Ok(replies
            .into_iter()
            .find(|r| r.role == opsfleet_proto::api::LeaderRole::Active))
    }

    /// Every coordinator's answer to `opsctl leader` (its rows are responders; one that did
    /// not answer shows role `unknown`). Exit 1 (none active) still prints the rows.
    pub async fn coordinators(&self) -> Result<Vec<Responder>> {
        let out = self.opsctl.run(&["--output", "json", "leader"]).await?;
        if out.status.code() != Some(1) {
            out.clone().ok()?;
        }
        Ok(serde_json::from_str(out.stdout.trim())?)
    }

    /// The lines of `opsctl --output json events <filters>` (one JSON event each).
    pub async fn events(&self, filters: &[&str]) -> Result<Vec<String>> {
        let mut args = vec!["--output", "json", "events"];
        args.extend_from_slice(filters);
        let out = self.opsctl.run(&args).await?.ok()?;
        Ok(out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// web-01's last seq as the active coordinator has it, if one answers.
    async fn web01_seq(&self) -> Option<u64> {
        let reply = self.opsctl.status(None).await.ok()?;
        reply
            .hosts
            .iter()
            .find(|h| h.host == "web-01")
            .map(|h| h.last_seq)
    }

    /// Runs the schedule, then the checks.
    pub async fn run(&self, schedule: &[Fault]) -> Result<()> {
        let mut recoveries = Vec::new();
        for (i, fault) in schedule.iter().enumerate() {
            let started = Instant::now();
            let healed = std::sync::Mutex::new(None::<Instant>);
            let inject = async {
                let what = fault.inject(self).await;
                if let Ok(mut h) = healed.lock() {
                    *h = Some(Instant::now());
                }
                what
            };
            // Meanwhile: the longest time web-01's seq stood still in the active coordinator,
            // from the fault until events flow again after the heal.
            let watch = async {
                let mut last = (self.web01_seq().await, Instant::now());
                let mut longest = Duration::ZERO;
                let deadline = Instant::now() + Duration::from_secs(300);
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let now = self.web01_seq().await;
                    if now.is_some() && now > last.0 {
                        longest = longest.max(last.1.elapsed());
                        last = (now, Instant::now());
                        let heal = healed.lock().ok().and_then(|h| *h);
                        if heal.is_some_and(|h| last.1 > h) {
                            return Ok((longest, heal.map(|h| h.elapsed())));
                        }
                    }
                }
                anyhow::bail!(
                    "events did not flow into the active coordinator within 300 s of the fault"
                )
            };
            let (what, flow) = tokio::join!(inject, watch);
            let what = what?;
            let (stall, after_heal) = flow?;
            eprintln!(
                "cluster_chaos: fault {} {what}: longest stall of web-01's events {stall:?}, \
                 flowing {:?} after the heal, {:?} after the fault",
                i + 1,
                after_heal.unwrap_or_default(),
                started.elapsed()
            );
            recoveries.push((*fault, stall));
            self.issue_noop().await?;
        }
        self.check().await?;
        for (fault, recovery) in recoveries {
            eprintln!("cluster_chaos: {fault:?}: events stood still at most {recovery:?}");
        }
        Ok(())
    }

    async fn issue_noop(&self) -> Result<()> {
        wait_until(
            "a noop to be accepted",
            Duration::from_secs(60),
            Duration::from_millis(500),
            async || {
                let out = self.opsctl.run(&["noop", "--all", "--no-wait"]).await?;
                if !out.status.success() {
                    // It may have been issued all the same (the answer was lost): the ledger
                    // check counts at least, not exactly, what was asked.
                    eprintln!(
                        "cluster_chaos: noop failed, retrying: {}",
                        out.stderr.trim()
                    );
                }
                Ok(out.status.success().then_some(()))
            },
        )
        .await?;
        self.commands_issued
            .fetch_add(HOSTS.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// Counts one command issued (and confirmed) outside `issue_noop`.
    pub fn note_command(&self) {
        self.commands_issued.fetch_add(1, Ordering::SeqCst);
    }

    /// The checks after a schedule (see the file's header).
    async fn check(&self) -> Result<()> {
        let lines = self
            .producer
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .finish()?;
        eprintln!("cluster_chaos: {lines} lines written");
        // Every line is in the stream (the agent has published its outbox).
        wait_until(
            "every line written to be in the events stream",
            Duration::from_secs(180),
            Duration::from_secs(2),
            async || {
                let n = self
                    .events(&["--host", "web-01", "--kind", "log_match", "--since", "1h"])
                    .await
                    .map_or(0, |e| e.len()) as u64;
                Ok((n >= lines).then_some(()))
            },
        )
        .await?;
        // Every command issued reached a terminal state (in the ledger of whichever
        // coordinator answers; a standby may still be catching up, hence the wait for all).
        let issued = self.commands_issued.load(Ordering::SeqCst) as usize;
        let commands: Vec<CommandView> = wait_until(
            "every command to reach a terminal state",
            Duration::from_secs(120),
            Duration::from_secs(1),
            async || {
                let out = self
                    .opsctl
                    .run(&["--output", "json", "commands", "--limit", "1000"])
                    .await?;
                if !out.status.success() {
                    return Ok(None);
                }
                let all: Vec<CommandView> = serde_json::from_str(out.stdout.trim())?;
                let done = all.len() >= issued && all.iter().all(CommandView::is_final);
                Ok(done.then_some(all))
            },
        )
        .await?;
        ensure!(
            commands.len() >= issued,
            "{issued} commands issued (a noop to each host after each fault, and the clock \
             fault's), the ledger has {}",
            commands.len()
        );
        eprintln!(
            "cluster_chaos: {} commands in the ledger ({issued} confirmed to opsctl), all final",
            commands.len()
        );
        ensure!(
            commands.iter().all(|c| c.accepted_count <= 1),
            "a command ran twice: {:?}",
            commands.iter().find(|c| c.accepted_count > 1)
        );
        // No epoch held by two coordinators.
        let leadership = self
            .events(&["--kind", "leadership", "--since", "1h"])
            .await?;
        let mut epochs: BTreeMap<u64, String> = BTreeMap::new();
        for line in &leadership {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let summary = v["summary"].as_str().unwrap_or_default();
            if !summary.contains(" active at epoch ") {
                continue;
            }
            let holder = summary.split(' ').next().unwrap_or_default().to_owned();
            let epoch: u64 = summary
                .split(" at epoch ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|e| e.parse().ok())
                .with_context(|| format!("no epoch in {summary:?}"))?;
            if let Some(other) = epochs.insert(epoch, holder.clone()) {
                ensure!(
                    other == holder,
                    "epoch {epoch} was held by {other} and {holder}"
                );
            }
        }
        ensure!(!epochs.is_empty(), "no leadership events in the stream");
        eprintln!("cluster_chaos: epochs and holders {epochs:?}");

        // Agents stop (their outboxes are published), then both coordinators catch up.
        self.stack.run(&[
            "stop",
            "-t",
            "20",
            "agent-web-01",
            "agent-web-02",
            "agent-db-01",
        ])?;
        wait_until(
            "blue and green to hold the same last seq of every host",
            Duration::from_secs(120),
            Duration::from_secs(1),
            async || {
                let (Ok(b), Ok(g)) = (
                    self.opsctl.status(Some("blue")).await,
                    self.opsctl.status(Some("green")).await,
                ) else {
                    return Ok(None);
                };
                let seqs = |r: &opsfleet_proto::api::StatusReply| -> BTreeMap<String, u64> {
                    r.hosts
                        .iter()
                        .map(|h| (h.host.clone(), h.last_seq))
                        .collect()
                };
                Ok((seqs(&b) == seqs(&g)).then_some(()))
            },
        )
        .await?;
        self.stack
            .run(&["stop", "-t", "30", "coordinator-blue", "coordinator-green"])?;
        let mut logs = Vec::new();
        for name in ["blue", "green"] {
            let log = self.dump_log(name)?;
            for host in HOSTS {
                let entries: Vec<&LogEntry> = log.iter().filter(|e| e.host == host).collect();
                let first = entries
                    .first()
                    .with_context(|| format!("{name} has no {host}"))?;
                let last = entries.iter().map(|e| e.seq).max().unwrap_or(0);
                check_exactly_once(&log, host, &first.incarnation, last)
                    .map_err(|e| anyhow::anyhow!("{name}'s log, host {host}: {e}"))?;
            }
            let matches = log
                .iter()
                .filter(|e| e.host == "web-01" && e.kind == "log_match")
                .count() as u64;
            ensure!(
                matches == lines,
                "{name}'s log has {matches} log_match events of web-01 for {lines} lines written"
            );
            let report = self.rebuild(name)?;
            ensure!(
                report.matches,
                "{name}'s stored projection differs from its log"
            );
            eprintln!(
                "cluster_chaos: {name}: {} log entries, every host's seqs once, {matches} \
                 log_match = lines written, stored projection = its log's fold",
                log.len()
            );
            logs.push(log);
        }
        let upto = common_prefix(("blue", &logs[0]), ("green", &logs[1]))?;
        let mut digests = Vec::new();
        for name in ["blue", "green"] {
            digests.push(self.digest_at(name, upto)?);
        }
        ensure!(
            digests[0] == digests[1],
            "blue and green fold their logs up to stream sequence {upto} to different digests: \
             {digests:?}"
        );
        eprintln!(
            "cluster_chaos: blue and green fold to the same digest up to stream sequence {upto}: {}",
            digests[0]
        );
        Ok(())
    }

    /// `ops-coordinator digest-at --upto <seq>` of a stopped coordinator.
    fn digest_at(&self, name: &str, upto: u64) -> Result<String> {
        let upto = upto.to_string();
        let out =
            self.coordinator_command(name, &["digest-at", "--upto", &upto, "--output", "json"])?;
        let line = out
            .lines()
            .rfind(|l| l.trim_start().starts_with('{'))
            .with_context(|| format!("digest-at printed no JSON: {out}"))?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        v["digest"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no digest in {line}"))
    }

    /// `ops-coordinator dump-log` of a stopped coordinator, in a one-off container on its volume.
    fn dump_log(&self, name: &str) -> Result<Vec<LogEntry>> {
        let out = self.coordinator_command(name, &["dump-log", "--output", "json"])?;
        out.lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .map(|l| serde_json::from_str(l).with_context(|| format!("dump-log line {l}")))
            .collect()
    }

    fn rebuild(&self, name: &str) -> Result<RebuildReport> {
        let out = self.coordinator_command(name, &["rebuild", "--verify", "--output", "json"])?;
        let line = out
            .lines()
            .rfind(|l| l.trim_start().starts_with('{'))
            .with_context(|| format!("rebuild printed no JSON: {out}"))?;
        Ok(serde_json::from_str(line)?)
    }

    fn coordinator_command(&self, name: &str, args: &[&str]) -> Result<String> {
        let service = format!("coordinator-{name}");
        let mut all = vec![
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--entrypoint",
            "/usr/local/bin/ops-coordinator",
            &service,
            "--config",
            "/etc/opsfleet/coordinator.toml",
        ];
        all.extend_from_slice(args);
        self.stack.run(&all)
    }
}
