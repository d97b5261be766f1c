//! systemd hosts for real: five containers booted with systemd as PID 1 from a Debian bookworm
//! root filesystem built by `scripts/systemd-rootfs.sh` (debootstrap, cached), installed the
//! way `docs/runbooks/adding-a-host.md` says — three NATS nodes with `scripts/install-host.sh`
//! from the checkout, coordinator blue and agent web-01 from the `.deb` of
//! `scripts/build-deb.sh` (`dpkg -i`, then `opsfleet-join`) — with the shipped units, users,
//! directories and file modes. Checks that every unit becomes active, that `opsctl status` (as viewer vera,
//! inside the coordinator's host) lists web-01 reporting, and that each unit stops cleanly
//! (result `success`) well within its `TimeoutStopSec`. Skips with a message without Docker.
//!
//! The containers get `CAP_SYS_ADMIN` and nothing else extra: systemd needs it to set up the
//! units' mount namespaces (`BindPaths=`, `ProtectSystem=`), as it has on a real host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use opsfleet_tests::bins;
use opsfleet_tests::compose::{docker, docker_engine_missing};
use opsfleet_tests::secure::{generate_secrets, repo_root};
use opsfleet_tests::wait_until;

/// (container name suffix, role, identity name, unit). NATS nodes are installed from the
/// checkout (`scripts/install-host.sh`), the coordinator and the agent from the `.deb`
/// (`scripts/build-deb.sh`, then `opsfleet-join`).
const HOSTS: [(&str, &str, &str, &str); 5] = [
    ("nats-1", "nats", "nats-1", "nats-server.service"),
    ("nats-2", "nats", "nats-2", "nats-server.service"),
    ("nats-3", "nats", "nats-3", "nats-server.service"),
    ("blue", "coordinator", "blue", "ops-coordinator.service"),
    ("web-01", "agent", "web-01", "ops-agent.service"),
];

fn packaged(role: &str) -> bool {
    role != "nats"
}
/// The units' `TimeoutStopSec` (tests/tests/deploy_assets.rs keeps them at 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The containers and network of one run; removed on drop.
struct Hosts {
    prefix: String,
}

impl Hosts {
    fn name(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn exec(&self, host: &str, args: &[&str]) -> Result<String> {
        let name = self.name(host);
        let mut all = vec!["exec", name.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    fn journal(&self, host: &str, unit: &str) -> String {
        self.exec(host, &["journalctl", "-u", unit, "--no-pager", "-n", "40"])
            .unwrap_or_else(|e| format!("(no journal: {e})"))
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (host, ..) in HOSTS {
            let _ = Command::new("docker")
                .args(["rm", "-f", &self.name(host)])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.prefix])
            .output();
    }
}

/// The nats-server executable itself (a pyenv shim on PATH is a script that would not run in
/// the container).
fn nats_server_binary() -> Result<PathBuf> {
    let is_elf = |p: &Path| {
        std::fs::read(p)
            .map(|b| b.starts_with(b"\x7fELF"))
            .unwrap_or(false)
    };
    if let Ok(out) = Command::new("pyenv")
        .args(["which", "nats-server"])
        .output()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && is_elf(&p) {
            return Ok(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| is_elf(p))
        .context("no nats-server executable on PATH (scripts/test.sh installs one)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_units_boot_report_and_stop_cleanly_under_systemd() -> Result<()> {
    if let Some(why) = docker_engine_missing() {
        eprintln!("SKIPPED systemd_boot: {why}; booting systemd hosts needs a Docker engine");
        println!("SKIPPED systemd_boot: {why}");
        return Ok(());
    }
    let root = repo_root();
    let started = Instant::now();
    let image = run(Command::new("bash").arg(root.join("scripts/systemd-rootfs.sh")))?
        .trim()
        .to_owned();
    eprintln!(
        "systemd_boot: image {image} ready after {:?}",
        started.elapsed()
    );

    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-systemd-")
        .tempdir()?;
    let secrets = tmp.path().join("secrets");
    generate_secrets(&secrets)?;
    let nats = nats_server_binary()?;
    let bin_dir = bins::bin(bins::AGENT)?
        .parent()
        .context("the agent binary has no directory")?
        .to_path_buf();
    for bin in [bins::AGENT, bins::COORDINATOR, bins::OPSCTL] {
        bins::bin(bin)?;
    }

    let pkg_dir = tmp.path().join("pkg");
    let deb = run(Command::new("bash")
        .arg(root.join("scripts/build-deb.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(&pkg_dir)
        .arg("--fast"))?;
    let deb_name = Path::new(deb.trim())
        .file_name()
        .context("build-deb.sh printed no package path")?
        .to_string_lossy()
        .into_owned();
    eprintln!("systemd_boot: built {deb_name}");

    let hosts = Hosts {
        prefix: format!("opsfleet-systemd-{}", std::process::id()),
    };
    docker(&["network", "create", &hosts.prefix])?;
    let mounts = [
        format!("{}:/opt/opsfleet:ro", root.display()),
        format!("{}:/opt/bin:ro", bin_dir.display()),
        format!("{}:/opt/secrets:ro", secrets.display()),
        format!("{}:/opt/nats-server:ro", nats.display()),
        format!("{}:/opt/pkg:ro", pkg_dir.display()),
    ];
    for (host, ..) in HOSTS {
        let name = hosts.name(host);
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            host,
            "--network",
            &hosts.prefix,
            "--network-alias",
            host,
            "--cap-add",
            "SYS_ADMIN",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        ];
        for m in &mounts {
            args.extend(["-v", m.as_str()]);
        }
        args.extend([image.as_str(), "/sbin/init"]);
        docker(&args)?;
    }
    let result = boot_and_check(&hosts, &deb_name).await;
    if result.is_err() {
        for (host, _, _, unit) in HOSTS {
            eprintln!("----- {host}: {unit} -----\n{}", hosts.journal(host, unit));
        }
    }
    eprintln!("systemd_boot: done in {:?}", started.elapsed());
    result
}

async fn boot_and_check(hosts: &Hosts, deb: &str) -> Result<()> {
    // systemd is up in every container.
    for (host, ..) in HOSTS {
        wait_until(
            &format!("systemd to finish booting {host}"),
            Duration::from_secs(90),
            Duration::from_millis(500),
            async || {
                let state = hosts
                    .exec(host, &["systemctl", "is-system-running"])
                    .unwrap_or_else(|e| e.to_string());
                Ok((state.contains("running") || state.contains("degraded")).then_some(()))
            },
        )
        .await?;
    }
    // Install each role as the runbook does; NATS first, the agent last.
    let deb = format!("/opt/pkg/{deb}");
    for (host, role, name, unit) in HOSTS {
        let join = ["--role", role, "--name", name, "--secrets", "/opt/secrets"];
        if packaged(role) {
            hosts.exec(host, &["dpkg", "-i", &deb])?;
            let mut args = vec!["opsfleet-join"];
            args.extend(join);
            hosts
                .exec(host, &args)
                .with_context(|| format!("opsfleet-join --role {role} on {host}"))?;
            let status = hosts.exec(host, &["dpkg-query", "-W", "-f", "${Status}", "opsfleet"])?;
            ensure!(
                status.trim() == "install ok installed",
                "dpkg says {status}"
            );
            let fragment = hosts.exec(
                host,
                &["systemctl", "show", "-p", "FragmentPath", "--value", unit],
            )?;
            ensure!(
                fragment.trim() == format!("/lib/systemd/system/{unit}"),
                "{unit} on {host} is not the package's unit: {fragment}"
            );
        } else {
            let mut args = vec!["bash", "/opt/opsfleet/scripts/install-host.sh"];
            args.extend(join);
            args.extend(["--bin-dir", "/opt/bin", "--nats-bin", "/opt/nats-server"]);
            hosts
                .exec(host, &args)
                .with_context(|| format!("install-host.sh --role {role} on {host}"))?;
        }
    }
    for (host, _, _, unit) in HOSTS {
        wait_until(
            &format!("{unit} to be active on {host}"),
            Duration::from_secs(90),
            Duration::from_millis(500),
            async || {
                let state = hosts
                    .exec(host, &["systemctl", "is-active", unit])
                    .unwrap_or_else(|e| e.to_string());
                Ok((state.trim() == "active").then_some(()))
            },
        )
        .await?;
    }
    // What the units run as, and the modes of what they read.
    let user_of = |host: &str, unit: &str| -> Result<String> {
        let pid = hosts.exec(
            host,
            &["systemctl", "show", "-p", "MainPID", "--value", unit],
        )?;
        hosts.exec(host, &["ps", "-o", "user=", "-p", pid.trim()])
    };
    ensure!(user_of("nats-1", "nats-server.service")?.trim() == "nats");
    ensure!(user_of("blue", "ops-coordinator.service")?.trim() == "opsfleet");
    ensure!(user_of("web-01", "ops-agent.service")?.trim() == "root");
    let modes = hosts.exec(
        "nats-1",
        &[
            "stat",
            "-c",
            "%a %U:%G %n",
            "/etc/nats/secrets/tls/server-key.pem",
        ],
    )?;
    ensure!(
        modes.starts_with("640 root:nats"),
        "the server key is {modes}"
    );
    let backups = hosts.exec("web-01", &["stat", "-c", "%a %U", "/var/backups/opsfleet"])?;
    ensure!(
        backups.trim() == "750 root",
        "/var/backups/opsfleet is {backups}"
    );

    // The agent reports, seen by a viewer through the cluster.
    let status = wait_until(
        "opsctl status to list web-01 reporting",
        Duration::from_secs(120),
        Duration::from_secs(1),
        async || {
            let out = hosts.exec(
                "blue",
                &[
                    "opsctl",
                    "--nats",
                    "tls://nats-1:4222,tls://nats-2:4222,tls://nats-3:4222",
                    "--nkey",
                    "/opt/secrets/nkeys/vera.nk",
                    "--operator",
                    "vera",
                    "--tls-ca",
                    "/opt/secrets/tls/ca.pem",
                    "--tls-cert",
                    "/opt/secrets/tls/operator.pem",
                    "--tls-key",
                    "/opt/secrets/tls/operator-key.pem",
                    "--output",
                    "json",
                    "status",
                ],
            );
            let Ok(out) = out else { return Ok(None) };
            let v: serde_json::Value = serde_json::from_str(out.trim())?;
            let reporting = v["hosts"].as_array().is_some_and(|hs| {
                hs.iter()
                    .any(|h| h["host"] == "web-01" && h["last_seq"].as_u64().unwrap_or(0) >= 2)
            });
            Ok((reporting && v["responder"]["role"] == "active").then_some(v))
        },
    )
    .await?;
    eprintln!(
        "systemd_boot: opsctl status: coordinator {} {} at epoch {}, web-01 reporting",
        status["responder"]["name"], status["responder"]["role"], status["responder"]["epoch"]
    );

    // Each unit stops cleanly and in time: the agent, the coordinator, then the NATS nodes.
    let mut table = Vec::new();
    for (host, _, _, unit) in HOSTS.iter().rev() {
        let t = Instant::now();
        hosts.exec(host, &["systemctl", "stop", unit])?;
        let took = t.elapsed();
        let result = hosts.exec(
            host,
            &["systemctl", "show", "-p", "Result", "--value", unit],
        )?;
        ensure!(
            result.trim() == "success",
            "{unit} on {host} stopped with result {}",
            result.trim()
        );
        ensure!(
            took < STOP_TIMEOUT,
            "{unit} on {host} took {took:?} to stop (TimeoutStopSec {STOP_TIMEOUT:?})"
        );
        let journal = hosts.journal(host, unit);
        ensure!(
            !journal.contains("timed out. Killing") && !journal.contains("SIGKILL"),
            "{unit} on {host} was killed:\n{journal}"
        );
        table.push(format!("{host:8} {unit:25} stopped in {took:?}"));
    }
    eprintln!("systemd_boot:\n  {}", table.join("\n  "));
    Ok(())
}
