//! Negative tests of the host-owned policy and the agent's admin surface. The boundary is the
//! agent itself, so these run the real binaries on the plain harness: whatever reaches
//! `ops.cmd.<host>` (a coordinator's command, or one published straight into `OPS_CMDS` as a
//! compromised coordinator could) and whatever reaches the admin routes is checked by the
//! agent against `[policy]` of its own config file.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use prost::Message;
use serde_json::Value;

// The admin surface's tests.
#[path = "host_policy_admin.rs"]
mod admin;

const HOST: &str = "web-01";

fn q(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// Every event of `HOST` with `kind` in the stream, in stream order.
async fn events_of(url: &str, kind: &str) -> Result<Vec<EventEnvelope>> {
    opsfleet_tests::stream::events_of(url, HOST, kind).await
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
             [[modules.jobs]]\nname = \"app\"\nsources = [{src}]\ndestination = {dest}\n\
             [[modules]]\ntype = \"service\"\nname = \"app\"\nargv = [\"sleep\", \"300\"]\n",
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
            // A service runs a program: no policy key lets a remote config change one.
            (
                "app",
                "type = \"service\"\nname = \"app\"\n\
                 argv = [\"/bin/sh\", \"-c\", \"id > /tmp/opsfleet-pwned\"]\n"
                    .to_owned(),
                "service modules",
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
    // As a coordinator's dispatch does, so only the policy stands between it and the host.
    let msg = jetstream::message::PublishMessage::build()
        .payload(cmd.encode_to_vec().into())
        .message_id(&id);
    js.send_publish(subjects::command_subject(HOST), msg)
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
