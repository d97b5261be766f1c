//! The agent DaemonSet's shipped template (deploy/k8s/agents.yaml) works for a node it has
//! never seen: the real `ops-agent --render` with the DaemonSet's environment gives that node
//! its own name, seed, inbox and labels, the result validates, `--check-config` covers the
//! template and every group, a missing host source is one clear error, and an agent started
//! from the template (its NATS section pointed at the test server) reports under the node's
//! name to a real coordinator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::repo_root;
use opsfleet_tests::{bins, wait_until_default, Cluster, CoordinatorSpec, Proc};
use serde::Deserialize as _;
use serde_yaml_ng::Value;

const NEW_NODE: &str = "node-zq-4471";

/// The DaemonSet's config text, the path its command reads it from, and its literal
/// environment (`NODE_NAME` from `spec.nodeName` is left for the caller).
struct Shipped {
    template: String,
    env: BTreeMap<String, String>,
}

fn shipped() -> Result<Shipped> {
    let path = repo_root().join("deploy/k8s/agents.yaml");
    let text = std::fs::read_to_string(&path)?;
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()?;
    let ds = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .context("no DaemonSet")?;
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let cmd: Vec<&str> = c["command"]
        .as_sequence()
        .context("command")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = cmd
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .context("the DaemonSet passes no --config")?;
    // The file the command reads is the config map key mounted there.
    let mount = c["volumeMounts"]
        .as_sequence()
        .context("mounts")?
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(config_path))
        .with_context(|| format!("nothing is mounted at {config_path}"))?;
    let key = mount["subPath"]
        .as_str()
        .context("config mount has no subPath")?;
    let volume = ds["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .context("volumes")?
        .iter()
        .find(|v| v["name"] == mount["name"])
        .context("config volume")?;
    let map = volume["configMap"]["name"]
        .as_str()
        .context("not a config map")?;
    let cm = docs
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("ConfigMap") && d["metadata"]["name"].as_str() == Some(map)
        })
        .with_context(|| format!("config map {map} is not in agents.yaml"))?;
    let template = cm["data"][key]
        .as_str()
        .with_context(|| format!("{map} has no key {key}"))?
        .to_owned();
    let mut env = BTreeMap::new();
    for e in c["env"].as_sequence().into_iter().flatten() {
        let name = e["name"].as_str().context("env name")?;
        if let Some(v) = e["value"].as_str() {
            env.insert(name.to_owned(), v.to_owned());
        } else {
            ensure!(
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str() == Some("spec.nodeName")
                    && name == "NODE_NAME",
                "unexpected env {name}"
            );
        }
    }
    Ok(Shipped { template, env })
}

/// Runs `ops-agent ARGS` with exactly `env` (plus PATH).
fn agent(args: &[&str], config: &Path, env: &BTreeMap<String, String>) -> Result<Output> {
    Ok(Command::new(bins::bin(bins::AGENT)?)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .output()?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn the_daemonset_template_renders_for_a_node_it_has_never_seen() -> Result<()> {
    let s = shipped()?;
    let dir = tempfile::tempdir()?;
    let template = write(dir.path(), "agent.toml", &s.template)?;
    let mut env = s.env.clone();
    env.insert("NODE_NAME".into(), NEW_NODE.into());

    let out = agent(&["--render"], &template, &env)?;
    ensure!(out.status.success(), "--render: {}", text(&out));
    let rendered = String::from_utf8(out.stdout)?;
    let cfg: toml::Value = toml::from_str(&rendered)?;
    ensure!(
        cfg["host"].as_str() == Some(NEW_NODE),
        "host: {}",
        cfg["host"]
    );
    ensure!(
        cfg["nats"]["nkey"].as_str() == Some(&format!("/etc/opsfleet/node-key/{NEW_NODE}.nk")),
        "the seed is not the node's own: {}",
        cfg["nats"]["nkey"]
    );
    ensure!(
        cfg["nats"]["inbox_prefix"].as_str() == Some(&format!("_INBOX.{NEW_NODE}")),
        "inbox prefix: {}",
        cfg["nats"]["inbox_prefix"]
    );
    ensure!(
        cfg["labels"]["platform"].as_str() == Some("kubernetes")
            && cfg["labels"]["pool"].as_str() == s.env.get("OPS_POOL").map(String::as_str),
        "labels: {}",
        cfg["labels"]
    );
    let modules: Vec<&str> = cfg["modules"]
        .as_array()
        .context("modules")?
        .iter()
        .filter_map(|m| m["type"].as_str())
        .collect();
    ensure!(modules == ["heartbeat", "disk"], "modules: {modules:?}");
    // What the node gets is a valid per-host config in its own right.
    let plain = write(dir.path(), "rendered.toml", &rendered)?;
    let out = agent(&["--check-config"], &plain, &BTreeMap::new())?;
    ensure!(out.status.success(), "rendered config: {}", text(&out));

    // The template itself, for this node and all its groups.
    let out = agent(&["--check-config"], &template, &env)?;
    ensure!(
        out.status.success() && text(&out).contains(&format!("rendered for {NEW_NODE}")),
        "--check-config: {}",
        text(&out)
    );

    // A cloud node name with a domain becomes its first label; groups apply by name and label.
    let mut db = env.clone();
    db.insert(
        "NODE_NAME".into(),
        "db-77.eu-west-1.compute.internal".into(),
    );
    let out = agent(&["--render"], &template, &db)?;
    ensure!(out.status.success(), "{}", text(&out));
    let cfg: toml::Value = toml::from_str(&String::from_utf8(out.stdout)?)?;
    ensure!(cfg["host"].as_str() == Some("db-77"), "{}", cfg["host"]);
    ensure!(
        cfg["labels"]["role"].as_str() == Some("db"),
        "{}",
        cfg["labels"]
    );
    let mut edge = env.clone();
    edge.insert("OPS_POOL".into(), "edge".into());
    let out = agent(&["--render"], &template, &edge)?;
    let cfg: toml::Value = toml::from_str(&String::from_utf8(out.stdout)?)?;
    ensure!(
        cfg["modules"].as_array().map(Vec::len) == Some(1),
        "edge nodes keep only the heartbeat: {}",
        cfg["modules"]
    );
    // --host and --label stand in for the environment.
    let out = agent(
        &["--render", "--host", "web-9", "--label", "pool=edge"],
        &template,
        &BTreeMap::new(),
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let cfg: toml::Value = toml::from_str(&String::from_utf8(out.stdout)?)?;
    ensure!(cfg["host"].as_str() == Some("web-9"));
    ensure!(cfg["modules"].as_array().map(Vec::len) == Some(1));
    Ok(())
}

#[test]
fn without_a_host_source_the_agent_says_what_is_missing() -> Result<()> {
    let s = shipped()?;
    let dir = tempfile::tempdir()?;
    let template = write(dir.path(), "agent.toml", &s.template)?;
    let out = agent(&[], &template, &BTreeMap::new())?;
    ensure!(out.status.code() == Some(2), "exit {:?}", out.status);
    let err = text(&out);
    ensure!(
        err.lines().count() == 1
            && err.contains("host_from: environment variable NODE_NAME is not set"),
        "{err}"
    );
    ensure!(err.contains("agent.toml:2:"), "no line number: {err}");
    Ok(())
}

#[test]
fn check_config_reports_every_problem_of_every_group() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let template = write(
        dir.path(),
        "fleet.toml",
        r#"host_from = "env:NODE_NAME"
colour = "blue"

[[modules]]
type = "heartbeat"

[[modules]]
type = "disk"
paths = ["/"]

[[groups]]
name = "db"
hosts = ["db-*"]
[[groups.modules]]
name = "disk"
warn_percent = 150.0

[[groups]]
name = "edge"
match_labels = { pool = "edge" }
disable = ["dsk"]
[[groups.modules]]
type = "log"
name = "app"
paths = ["relative.log"]
"#,
    )?;
    let out = agent(&["--check-config"], &template, &BTreeMap::new())?;
    ensure!(out.status.code() == Some(2), "exit {:?}", out.status);
    let err = text(&out);
    for want in [
        "fleet.toml:2: colour: unknown key",
        "fleet.toml:16: groups[0].modules[0].warn_percent:",
        "fleet.toml:21: groups[1].disable[0]: no module named \"dsk\"",
        "fleet.toml:25: groups[1].modules[0].paths[0]:",
    ] {
        ensure!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    ensure!(
        err.lines().filter(|l| l.contains("colour")).count() == 1,
        "a problem of the shared part is reported once:\n{err}"
    );
    Ok(())
}

/// The shipped template, its NATS section pointed at the test server (no TLS, no nkey), run
/// as the real agent with the DaemonSet's environment: a real coordinator sees the new node
/// under its own name, with the disk module the template gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_from_the_template_reports_under_the_node_name() {
    Cluster::run("agent-template", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let s = shipped()?;
        let mut doc: toml::Table = toml::from_str(&s.template)?;
        let data = c.dir().join("agents");
        let mut nats = toml::Table::new();
        nats.insert("urls".into(), vec![toml::Value::from(c.nats_url())].into());
        nats.insert("inbox_prefix".into(), "_INBOX.{host}".into());
        doc.insert("nats".into(), nats.into());
        doc.insert(
            "data_dir".into(),
            format!("{}/{{host}}", data.display()).into(),
        );
        doc.remove("http");
        for m in doc
            .get_mut("modules")
            .and_then(|m| m.as_array_mut())
            .into_iter()
            .flatten()
        {
            if m.get("type").and_then(|t| t.as_str()) == Some("disk") {
                if let Some(t) = m.as_table_mut() {
                    t.insert(
                        "paths".into(),
                        vec![toml::Value::from(c.dir().display().to_string())].into(),
                    );
                    t.insert("interval".into(), "1s".into());
                }
            }
            if m.get("type").and_then(|t| t.as_str()) == Some("heartbeat") {
                if let Some(t) = m.as_table_mut() {
                    t.insert("interval".into(), "200ms".into());
                }
            }
        }
        let config = write(c.dir(), "agent-template.toml", &toml::to_string(&doc)?)?;
        let mut proc = Proc::new(
            "agent-template",
            bins::bin(bins::AGENT)?,
            ["--config".into(), config.display().to_string()],
            c.dir().join("agent-template.log"),
        );
        for (k, v) in &s.env {
            proc.env(k, v);
        }
        proc.env("NODE_NAME", NEW_NODE);
        proc.spawn()?;
        let min = BTreeMap::from([(NEW_NODE.to_owned(), 5)]);
        c.wait_hosts_at_least("blue", &min).await?;
        wait_until_default("a disk reading of the new node", async || {
            let reply = c.status(Some("blue")).await?;
            Ok(reply
                .hosts
                .iter()
                .any(|h| h.host == NEW_NODE && !h.disks.is_empty())
                .then_some(()))
        })
        .await?;
        ensure!(
            data.join(NEW_NODE).join("agent.sled").exists(),
            "data_dir {{host}} was not the node's name"
        );
        proc.stop_gracefully().await?;
        Ok(())
    })
    .await;
}
