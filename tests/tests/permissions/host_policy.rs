//! Negative tests of the host-owned policy and the agent's admin surface. The boundary is the
//! agent itself, so these run the real binaries on the plain harness: whatever reaches
//! `ops.cmd.<host>` (a coordinator's command, or one published straight into `OPS_CMDS` as a
//! compromised coordinator could) and whatever reaches the admin routes is checked by the
//! agent against `[policy]` of its own config file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use prost::Message;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HOST: &str = "web-01";

fn q(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// Every event of `HOST` with `kind` in the stream, in stream order.
async fn events_of(url: &str, kind: &str) -> Result<Vec<EventEnvelope>> {
    let js = jetstream::new(async_nats::connect(url).await?);
    let stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let mut c = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects::event_subject(HOST, kind),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut left = c.info().await?.num_pending;
    let mut out = Vec::new();
    if left == 0 {
        return Ok(out);
    }
    let mut messages = c.messages().await?;
    while left > 0 {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("reading the events stream")?
            .context("stream ended")??;
        left = msg.info().map(|i| i.pending).unwrap_or(0);
        out.push(EventEnvelope::decode(&msg.payload)?);
    }
    Ok(out)
}

/// The `config_rejected` bodies of `HOST`, oldest first.
async fn rejections(url: &str) -> Result<Vec<pb::ConfigRejected>> {
    Ok(events_of(url, "config_rejected")
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            pb::event::Body::ConfigRejected(r) => Some(r),
            _ => None,
        })
        .collect())
}

/// The fingerprints `module` announced in its `module_state` events, oldest first, with
/// the config TOML of each.
async fn configs_of(url: &str, module: &str) -> Result<Vec<(String, String)>> {
    Ok(events_of(url, "module_state")
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            pb::event::Body::ModuleState(m) if m.module == module => {
                Some((m.config_fingerprint, m.config_toml))
            }
            _ => None,
        })
        .collect())
}

/// `opsctl --output json <args> --host web-01 --wait 60s`: success and the one command's view.
async fn verb(c: &Cluster, args: &[&str]) -> Result<(bool, Value)> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--host", HOST, "--wait", "60s"]);
    let out = c.opsctl.run(&all).await?;
    let outcome: Value = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("opsctl {args:?}: {} {}", out.stdout, out.stderr))?;
    let cmd = outcome["commands"]
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .context("one command")?;
    Ok((out.status.success(), cmd))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_commands_that_break_the_host_policy_are_refused_naming_the_rule() {
    Cluster::run("host-policy", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        for d in ["logs", "runs", "src", "dest"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        std::fs::write(dir.join("logs/app.log"), b"start\n")?;
        let modules = format!(
            "[[modules]]\ntype = \"log\"\nname = \"applog\"\ninterval = \"200ms\"\npaths = [{log}]\n\
             [[modules]]\ntype = \"health\"\nname = \"svc\"\ninterval = \"1s\"\n\
             [[modules]]\ntype = \"janitor\"\nname = \"jan\"\ninterval = \"1h\"\n\
             [[modules.roots]]\npath = {runs}\n\
             [[modules]]\ntype = \"backup\"\nname = \"backup\"\ninterval = \"1s\"\n\
             [[modules.jobs]]\nname = \"app\"\nsources = [{src}]\ndestination = {dest}\n",
            log = q(&dir.join("logs/app.log")),
            runs = q(&dir.join("runs")),
            src = q(&dir.join("src")),
            dest = q(&dir.join("dest")),
        );
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        // No [policy] section: the defaults are what refuses.
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&modules),
        )?;
        let url = c.nats_url();
        let mut first = Vec::new();
        for m in ["applog", "svc", "jan"] {
            let fp = wait_until_default(&format!("{m} started"), async || {
                Ok(configs_of(&url, m).await?.first().map(|(fp, _)| fp.clone()))
            })
            .await?;
            first.push((m, fp));
        }

        // Each a valid module config, each breaking one host rule. Nothing is ever run from
        // them on a fixed agent: the janitor one is a dry run on a path that does not exist.
        let outside = dir.parent().context("parent")?.join("opsfleet-not-allowed");
        let cases = [
            (
                "applog",
                "type = \"log\"\nname = \"applog\"\npaths = [\"/etc/shadow\"]\n".to_owned(),
                "policy.log_paths",
            ),
            (
                "applog",
                format!(
                    "type = \"sentinel\"\nname = \"applog\"\npaths = [{}]\nmax_age = \"1h\"\n",
                    q(&dir.join("logs/app.log"))
                ),
                "policy.allow_kind_change",
            ),
            (
                "svc",
                "type = \"health\"\nname = \"svc\"\n[[probes]]\nname = \"pwn\"\ntype = \"command\"\n\
                 argv = [\"/bin/sh\", \"-c\", \"id > /tmp/opsfleet-pwned\"]\n"
                    .to_owned(),
                "policy.allow_command_probes",
            ),
            (
                "jan",
                format!(
                    "type = \"janitor\"\nname = \"jan\"\n[[roots]]\npath = {}\ndry_run = true\n",
                    q(&outside)
                ),
                "policy.janitor_roots",
            ),
        ];
        for (i, (module, toml, rule)) in cases.iter().enumerate() {
            let file = dir.join(format!("bad-{i}.toml"));
            std::fs::write(&file, toml)?;
            let file = file.display().to_string();
            let (ok, cmd) = verb(c, &["config", "apply", module, "--file", &file]).await?;
            let detail = cmd["detail"].as_str().unwrap_or_default();
            ensure!(
                !ok && cmd["state"] == "failed" && detail.contains(rule),
                "{rule}: the apply must fail naming the rule: {cmd}"
            );
        }
        let rejected = rejections(&url).await?;
        let rules: Vec<(String, Vec<String>)> = rejected
            .iter()
            .map(|r| (r.module.clone(), r.rules.clone()))
            .collect();
        let want: Vec<(String, Vec<String>)> = cases
            .iter()
            .map(|(m, _, rule)| ((*m).to_owned(), vec![(*rule).to_owned()]))
            .collect();
        ensure!(rules == want, "config_rejected rules {rules:?}, want {want:?}");
        for (m, fp) in &first {
            ensure!(
                rejected
                    .iter()
                    .filter(|r| r.module == *m)
                    .all(|r| r.kept_fingerprint == *fp),
                "{m} keeps {fp}"
            );
            let now = configs_of(&url, m).await?;
            ensure!(
                now.iter().all(|(f, _)| f == fp),
                "{m}'s config never changed: {now:?}"
            );
        }
        ensure!(!Path::new("/tmp/opsfleet-pwned").exists(), "the probe never ran");

        // Keeping the file's own paths is fine: applied.
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            format!(
                "type = \"log\"\nname = \"applog\"\ninterval = \"300ms\"\npaths = [{}]\n",
                q(&dir.join("logs/app.log"))
            ),
        )?;
        let good = good.display().to_string();
        let (ok, cmd) = verb(c, &["config", "apply", "applog", "--file", &good]).await?;
        ensure!(ok && cmd["state"] == "completed", "allowed apply: {cmd}");

        // A restore is refused before anything is written: `restore_targets` is empty.
        let target = dir.join("elsewhere/target");
        let target_arg = target.display().to_string();
        let (ok, cmd) = verb(
            c,
            &[
                "restore",
                "--archive",
                "app-20260101T000000.000Z.tar.zst",
                "--target",
                &target_arg,
            ],
        )
        .await?;
        let detail = cmd["detail"].as_str().unwrap_or_default();
        ensure!(
            !ok && cmd["state"] == "rejected" && detail.contains("policy.restore_targets"),
            "restore outside the allowlist: {cmd}"
        );
        ensure!(!target.exists() && !dir.join("elsewhere").exists(), "nothing written");
        Ok(())
    })
    .await;
}

fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Publishes a command for `HOST` straight into `OPS_CMDS`, as a coordinator (or anything
/// holding its credentials) could; returns its id.
async fn send(
    js: &jetstream::Context,
    deadline: i64,
    action: pb::command::Action,
) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let cmd = pb::Command {
        id: id.clone(),
        epoch: 1,
        issued_by: "mallory".to_owned(),
        target: HOST.to_owned(),
        deadline_unix_ms: deadline,
        issued_unix_ms: now_ms(),
        action: Some(action),
    };
    js.publish(subjects::command_subject(HOST), cmd.encode_to_vec().into())
        .await?
        .await
        .context("command not stored")?;
    Ok(id)
}

/// The lifecycle event that ended command `id` on `HOST`: (kind, reason or detail).
async fn outcome(url: &str, id: &str) -> Result<(String, String)> {
    wait_until_default(&format!("the outcome of command {id}"), async || {
        for kind in ["command_completed", "command_failed", "command_rejected"] {
            for e in events_of(url, kind).await? {
                let found = match &e.body {
                    pb::event::Body::CommandCompleted(x) if x.command_id == id => Some(&x.detail),
                    pb::event::Body::CommandFailed(x) if x.command_id == id => Some(&x.reason),
                    pb::event::Body::CommandRejected(x) if x.command_id == id => Some(&x.reason),
                    _ => None,
                };
                if let Some(text) = found {
                    return Ok(Some((kind.to_owned(), text.clone())));
                }
            }
        }
        Ok(None)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_recomputes_rollback_fingerprints_and_requires_deadlines() {
    Cluster::run("host-policy-fp", async |c: &mut Cluster| {
        let url = c.nats_url();
        let js = jetstream::new(async_nats::connect(&url).await?);
        opsfleet_bus::ensure_topology(&js, &opsfleet_bus::TopologyConfig::default()).await?;
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(300))
                .disk(Duration::from_secs(1), vec!["/".into()]),
        )?;
        let (first_fp, first_toml) = wait_until_default("disk started", async || {
            Ok(configs_of(&url, "disk").await?.first().cloned())
        })
        .await?;
        let other = "type = \"disk\"\nname = \"disk\"\ninterval = \"2s\"\npaths = [\"/\"]\n";
        let rollback = |fingerprint: &str, toml: &str| {
            pb::command::Action::ConfigRollback(pb::ConfigRollback {
                module: "disk".to_owned(),
                fingerprint: fingerprint.to_owned(),
                config_toml: toml.to_owned(),
            })
        };

        // A rollback claiming the first config's fingerprint but carrying another config.
        let soon = now_ms() + 60_000;
        let forged = send(&js, soon, rollback(&first_fp, other)).await?;
        let (kind, reason) = outcome(&url, &forged).await?;
        ensure!(
            kind == "command_failed"
                && reason.contains("fingerprint")
                && reason.contains(&first_fp),
            "forged rollback: {kind}: {reason}"
        );
        let rejected = rejections(&url).await?;
        ensure!(
            rejected.len() == 1
                && rejected[0].rules == ["fingerprint"]
                && rejected[0].kept_fingerprint == first_fp,
            "config_rejected naming the fingerprint: {rejected:?}"
        );
        let now = configs_of(&url, "disk").await?;
        ensure!(
            now.iter().all(|(f, _)| *f == first_fp),
            "config kept: {now:?}"
        );

        // Honest commands pass: an apply without a claim, then a true rollback.
        let apply = send(
            &js,
            soon,
            pb::command::Action::ConfigApply(pb::ConfigApply {
                module: "disk".to_owned(),
                config_toml: other.to_owned(),
                fingerprint: String::new(),
            }),
        )
        .await?;
        ensure!(outcome(&url, &apply).await?.0 == "command_completed");
        let back = send(&js, soon, rollback(&first_fp, &first_toml)).await?;
        let (kind, detail) = outcome(&url, &back).await?;
        ensure!(
            kind == "command_completed" && detail.contains(&first_fp),
            "{kind}: {detail}"
        );

        // A command without a deadline, or with one far beyond the cap, is refused.
        let noop = || pb::command::Action::Noop(pb::Noop {});
        let (kind, reason) = outcome(&url, &send(&js, 0, noop()).await?).await?;
        ensure!(
            kind == "command_rejected" && reason.contains("no deadline"),
            "{kind}: {reason}"
        );
        let year = 365 * 24 * 3600 * 1000;
        let (kind, reason) = outcome(&url, &send(&js, now_ms() + year, noop()).await?).await?;
        ensure!(
            kind == "command_rejected" && reason.contains("ahead of this host's clock"),
            "{kind}: {reason}"
        );
        Ok(())
    })
    .await;
}

/// One HTTP/1.1 request over `stream` (POST, or GET for `/healthz`): status and body.
async fn raw<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let method = if path == "/healthz" { "GET" } else { "POST" };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut out))
        .await
        .context("admin answer timed out")??;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    Ok((
        code,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    ))
}

/// Starts `HOST` with a health module `svc`, a disk module and `http` (the `[http]` table),
/// and returns its HTTP address (from its log) and its admin socket path.
async fn admin_agent(
    c: &mut Cluster,
    http: &str,
    policy: Option<&str>,
) -> Result<(std::net::SocketAddr, std::path::PathBuf)> {
    let js = jetstream::new(async_nats::connect(&c.nats_url()).await?);
    opsfleet_bus::ensure_topology(&js, &opsfleet_bus::TopologyConfig::default()).await?;
    let mut spec = AgentSpec::new(HOST)
        .heartbeat(Duration::from_millis(300))
        .disk(Duration::from_secs(1), vec!["/".into()])
        .modules_toml(&format!(
            "[[modules]]\ntype = \"health\"\nname = \"svc\"\ninterval = \"1s\"\n\n[http]\n{http}\n"
        ));
    if let Some(p) = policy {
        spec = spec.policy(p);
    }
    c.add_agent(spec)?;
    let agent = c.agent(HOST)?;
    let socket = agent.data_dir.join("admin.sock");
    let addr = wait_until_default("the agent's HTTP endpoint", async || {
        agent.proc_mut().check_running()?;
        let log = agent.proc().log_since_start();
        let line = log.lines().find(|l| l.contains("http endpoint bound"));
        Ok(line.and_then(|l| {
            let rest = l.split("addr=").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        }))
    })
    .await?;
    Ok((addr, socket))
}

async fn over_tcp(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(u16, String)> {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stream = tokio::net::TcpStream::connect(addr).await?;
    raw(stream, path, &refs, body).await
}

async fn over_socket(socket: &Path, path: &str, body: &str) -> Result<(u16, String)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connect to {}", socket.display()))?;
    raw(stream, path, &[("Host", "localhost")], body).await
}

const KIND_CHANGE: &str = "type = \"heartbeat\"\nname = \"disk\"\n";
const COMMAND_PROBE: &str = "type = \"health\"\nname = \"svc\"\n[[probes]]\nname = \"pwn\"\n\
    type = \"command\"\nargv = [\"/bin/true\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_on_a_private_socket_not_on_the_tcp_port() {
    Cluster::run("host-policy-socket", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        let (addr, socket) = admin_agent(c, "listen = \"127.0.0.1:0\"", None).await?;
        let meta = std::fs::symlink_metadata(&socket).context("the admin socket exists")?;
        let mode = meta.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "socket mode {mode:o}");
        ensure!(
            meta.uid() == std::fs::metadata(&dir)?.uid(),
            "owned by the agent's user"
        );

        // Loopback TCP serves no admin route unless asked (it did, without authentication).
        let own = vec![("Host", addr.to_string())];
        let (code, body) = over_tcp(addr, "/modules/disk/pause", &own, "").await?;
        ensure!(code == 404, "admin on TCP by default: {code} {body}");
        let (code, _) = over_tcp(addr, "/healthz", &own, "").await?;
        ensure!(
            code == 405 || code == 200,
            "the public routes stay on TCP ({code})"
        );

        // The socket serves them, but never a kind change or a new command probe.
        let (code, body) = over_socket(&socket, "/modules/disk/pause", "").await?;
        ensure!(code == 200 && body.contains("\"paused\""), "{code} {body}");
        let (code, body) = over_socket(&socket, "/modules/disk/reconfigure", KIND_CHANGE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_kind_change"),
            "{code} {body}"
        );
        let (code, body) = over_socket(&socket, "/modules/svc/reconfigure", COMMAND_PROBE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_command_probes"),
            "{code} {body}"
        );
        let url = c.nats_url();
        let rules = wait_until_default("both refusals in the log", async || {
            let r = rejections(&url).await?;
            Ok((r.len() >= 2).then(|| r.into_iter().map(|r| r.rules).collect::<Vec<_>>()))
        })
        .await?;
        ensure!(
            rules
                == [
                    vec!["policy.allow_kind_change"],
                    vec!["policy.allow_command_probes"]
                ],
            "{rules:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_admin_needs_the_token_a_local_host_and_no_browser() {
    Cluster::run("host-policy-tcp-admin", async |c: &mut Cluster| {
        let token_file = c.dir().join("admin.token");
        std::fs::write(&token_file, "k3y-for-tests\n")?;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
        let http = format!(
            "listen = \"127.0.0.1:0\"\nadmin_tcp = true\nadmin_token_file = {}",
            q(&token_file)
        );
        // As open as the policy gets: the admin routes refuse kind changes and command
        // probes anyway.
        let policy = "allow_kind_change = true\nallow_command_probes = true";
        let (addr, _) = admin_agent(c, &http, Some(policy)).await?;
        let own = ("Host", addr.to_string());
        let foreign = ("Host", format!("evil.example:{}", addr.port()));
        let token = ("Authorization", "Bearer k3y-for-tests".to_owned());
        let wrong = ("Authorization", "Bearer guess".to_owned());
        let origin = ("Origin", "http://evil.example".to_owned());
        for (what, headers, want) in [
            ("no token", vec![own.clone()], 401),
            ("a wrong token", vec![own.clone(), wrong], 401),
            (
                "a foreign Host (DNS rebinding)",
                vec![foreign, token.clone()],
                403,
            ),
            (
                "a browser Origin",
                vec![own.clone(), token.clone(), origin],
                403,
            ),
        ] {
            let (code, body) = over_tcp(addr, "/modules/disk/pause", &headers, "").await?;
            ensure!(code == want, "{what}: {code} {body}");
        }
        let ok = [own, token];
        let (code, body) = over_tcp(addr, "/modules/disk/pause", &ok, "").await?;
        ensure!(
            code == 200 && body.contains("\"paused\""),
            "with the token: {code} {body}"
        );
        let (code, body) = over_tcp(addr, "/modules/disk/reconfigure", &ok, KIND_CHANGE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_kind_change"),
            "{code} {body}"
        );
        let (code, body) = over_tcp(addr, "/modules/svc/reconfigure", &ok, COMMAND_PROBE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_command_probes"),
            "{code} {body}"
        );
        Ok(())
    })
    .await;
}
