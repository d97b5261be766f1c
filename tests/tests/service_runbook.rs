//! docs/runbooks/video-pipeline.md run as written against a real nats-server, a coordinator
//! and the runbook's two boxes (cam-01, cam-02) as agents, with tests/fixtures/testapp.py as
//! the pipeline. The runbook's ```toml block is each box's entry, its ```json blocks are the
//! files it names before them, and every `opsctl` line of its ```sh blocks runs in order and
//! must exit as the runbook says (`# exits N: why`, else 0). Beyond the exit statuses the test
//! looks at the apps themselves: a restart gives every box a new pid, an `app` action reaches
//! the app with its arguments (a refused one reaches nothing), an applied or rolled back config
//! is the one the app serves (a refused one changes nothing), a hand edit fires `config_drift`
//! and the rollback resolves it.
//!
//! The mapping from the runbook's world to the test's, all of it:
//! - toml: `"/usr/local/bin/vision-pipeline"` → `"python3", "<repo>/tests/fixtures/testapp.py"`
//!   (testapp has the pipeline's `--port`, `--config`, `--check-config`, SIGHUP reload and
//!   `POST /control`); `8080` → a free port per box; `/etc/vision/` and `/opt/vision/` →
//!   `<tmp>/<box>/etc/vision/`, `<tmp>/<box>/opt/vision/`; `ready_timeout = "90s"` → `"10s"`
//!   (step 7's roll waits it out).
//! - json blocks: an absolute file name is written on each box (mapped as above), a relative
//!   one on the "workstation", `<tmp>/<name>`; a command word equal to it becomes that path.
//! - `<start-fingerprint>` → the first 12 hex digits (as the table shows them) of the
//!   fingerprint of the `start` row of
//!   `opsctl -o json service config history vision --host <the command's --host>`.
//! - `/opt/vision/VERSION` is written by the test (`2.3.1`); step 7's hand edit too: before its
//!   first command the test copies `pipeline-bad.json` over cam-02's config and waits for the
//!   `drift` snapshot; before each `opsctl alerts` after it, it waits for cam-02's
//!   `config_drift` to be firing (until a rollback there completed) or resolved (after).
//! - opsctl runs through the harness's `Opsctl` (which adds `--nats URL --timeout 10s`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use opsfleet_proto::api::{
    AlertState, AlertsReply, ProbeStatus, ServiceConfigsReply, ServiceRunState, ServicesReply,
};
use opsfleet_tests::runbook::{blocks, steps, Block, Step};
use opsfleet_tests::secure::{free_port, repo_root};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use serde_json::Value;

const RUNBOOK: &str = "docs/runbooks/video-pipeline.md";
const SERVICE: &str = "vision";
const BOXES: [&str; 2] = ["cam-01", "cam-02"];
const FINGERPRINT: &str = "<start-fingerprint>";
/// Step 7: the heading after which the test does the hand edit, on this box, with this file.
const HAND_EDIT: (&str, &str, &str) = (
    "## 7. When the roll stops at a box",
    "cam-02",
    "pipeline-bad.json",
);
/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

/// One box of the test's world: its app's port and its root for the runbook's host paths.
struct CamBox {
    port: u16,
    root: PathBuf,
}

impl CamBox {
    /// A host path of the runbook on this box.
    fn map_path(&self, text: &str) -> String {
        let root = self.root.display();
        text.replace("/etc/vision/", &format!("{root}/etc/vision/"))
            .replace("/opt/vision/", &format!("{root}/opt/vision/"))
    }

    /// The runbook's entry for this box.
    fn map_toml(&self, toml: &str) -> String {
        let app = repo_root().join("tests/fixtures/testapp.py");
        let toml = toml.replace(
            "\"/usr/local/bin/vision-pipeline\"",
            &format!("\"python3\", \"{}\"", app.display()),
        );
        self.map_path(&toml)
            .replace("8080", &self.port.to_string())
            .replace("ready_timeout = \"90s\"", "ready_timeout = \"10s\"")
    }

    /// `GET <path>` from the app (HTTP/1.0 on loopback), the body as JSON.
    fn get(&self, path: &str) -> Result<Value> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).with_context(|| format!("GET {path}: {text}"))
    }

    /// The config the app serves, without testapp's own fields.
    fn served_config(&self) -> Result<Value> {
        let mut cfg = self.get("/config")?;
        if let Some(map) = cfg.as_object_mut() {
            map.remove("loaded_at");
            map.remove("reloads");
        }
        Ok(cfg)
    }

    /// The control requests the app received, oldest first.
    fn control_log(&self) -> Result<Vec<Value>> {
        Ok(self
            .get("/control/log")?
            .as_array()
            .context("control log")?
            .clone())
    }
}

/// The runbook's pieces the test needs.
struct Runbook {
    toml: String,
    /// File name → content of each ```json block.
    files: BTreeMap<String, String>,
    steps: Vec<Step>,
    /// The line of step 7's heading.
    hand_edit_line: usize,
}

fn read_runbook() -> Result<Runbook> {
    let text = std::fs::read_to_string(repo_root().join(RUNBOOK))?;
    let all = blocks(&text);
    let tomls: Vec<&Block> = all.iter().filter(|b| b.lang == "toml").collect();
    ensure!(
        tomls.len() == 1,
        "{RUNBOOK}: one ```toml block, found {}",
        tomls.len()
    );
    let mut files = BTreeMap::new();
    for b in all.iter().filter(|b| b.lang == "json") {
        let name = b
            .label
            .clone()
            .with_context(|| format!("{RUNBOOK}:{}: a json block names no file", b.line))?;
        files.insert(name, b.body.clone());
    }
    let steps: Vec<Step> = steps(&text)
        .into_iter()
        .filter(|s| s.words[0] == "opsctl")
        .collect();
    ensure!(steps.len() > 10, "{RUNBOOK}: too few opsctl steps");
    let hand_edit_line = text
        .lines()
        .position(|l| l.trim() == HAND_EDIT.0)
        .with_context(|| format!("{RUNBOOK}: no heading {:?}", HAND_EDIT.0))?
        + 1;
    Ok(Runbook {
        toml: tomls[0].body.clone(),
        files,
        steps,
        hand_edit_line,
    })
}

/// The value of `--flag` in a command.
fn flag<'a>(words: &'a [String], name: &str) -> Option<&'a str> {
    let at = words.iter().position(|w| w == name)?;
    words.get(at + 1).map(String::as_str)
}

/// The boxes a command's `--host` names (a name or a `prefix*` glob).
fn targets<'a>(words: &[String], boxes: &'a BTreeMap<&str, CamBox>) -> Vec<(&'a str, &'a CamBox)> {
    let Some(host) = flag(words, "--host") else {
        return Vec::new();
    };
    boxes
        .iter()
        .filter(|(name, _)| match host.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => **name == host,
        })
        .map(|(name, b)| (*name, b))
        .collect()
}

/// The pid of `vision` on `host` once it runs (ready or not: step 7 leaves one unready).
async fn running_pid(opsctl: &Opsctl, host: &str) -> Result<u32> {
    let what = format!("{SERVICE} running on {host}");
    wait_until(&what, WAIT, POLL, async || {
        let r: ServicesReply = opsctl.json(&["services", "--host", host]).await?;
        Ok(r.services
            .iter()
            .find(|s| s.service == SERVICE && s.state == ServiceRunState::Running && s.pid > 0)
            .map(|s| s.pid))
    })
    .await
}

/// `vision` on every box running and ready, as step 1 expects.
async fn all_ready(opsctl: &Opsctl) -> Result<()> {
    wait_until(
        "vision running and ready on every box",
        WAIT,
        POLL,
        async || {
            let r: ServicesReply = opsctl.json(&["services"]).await?;
            let ready = r.services.iter().filter(|s| {
                s.service == SERVICE
                    && s.state == ServiceRunState::Running
                    && s.health == Some(ProbeStatus::Ready)
            });
            Ok((ready.count() == BOXES.len()).then_some(()))
        },
    )
    .await
}

/// The causes of `vision`'s config history on `host`.
async fn history_causes(opsctl: &Opsctl, host: &str) -> Result<Vec<String>> {
    let r: ServiceConfigsReply = opsctl
        .json(&["service", "config", "history", SERVICE, "--host", host])
        .await?;
    Ok(r.snapshots.into_iter().map(|s| s.cause).collect())
}

/// Step 7's hand edit: the bad content over the box's config, seen as a `drift`.
async fn hand_edit(opsctl: &Opsctl, b: &CamBox, files: &BTreeMap<String, String>) -> Result<()> {
    let (_, host, bad) = HAND_EDIT;
    let content = files
        .get(bad)
        .with_context(|| format!("no json block {bad}"))?;
    std::fs::write(b.map_path("/etc/vision/pipeline.json"), content)?;
    wait_until("the hand edit seen as drift", WAIT, POLL, async || {
        let causes = history_causes(opsctl, host).await?;
        Ok((causes.last().map(String::as_str) == Some("drift")).then_some(()))
    })
    .await
}

/// `config_drift` of the hand-edited box in `state`.
async fn drift_alert(opsctl: &Opsctl, state: AlertState) -> Result<()> {
    let host = HAND_EDIT.1;
    let what = format!("config_drift of {host} {state:?}");
    wait_until(&what, WAIT, POLL, async || {
        let r: AlertsReply = opsctl.json(&["alerts", "--host", host]).await?;
        Ok(r.alerts
            .iter()
            .any(|a| a.rule == "config_drift" && a.state == state)
            .then_some(()))
    })
    .await
}

/// The fingerprint of the `start` row of `vision`'s config history on `host`.
async fn start_fingerprint(opsctl: &Opsctl, host: &str) -> Result<String> {
    let r: ServiceConfigsReply = opsctl
        .json(&["service", "config", "history", SERVICE, "--host", host])
        .await?;
    r.snapshots
        .iter()
        .find(|s| s.cause == "start")
        .map(|s| s.fingerprint.clone())
        .with_context(|| format!("no start snapshot on {host}: {:?}", r.snapshots))
}

/// What the apps look like before a step, to compare after it.
struct Before {
    pids: BTreeMap<String, u32>,
    logs: BTreeMap<String, usize>,
    configs: BTreeMap<String, Value>,
}

async fn look(opsctl: &Opsctl, boxes: &BTreeMap<&str, CamBox>) -> Result<Before> {
    let mut before = Before {
        pids: BTreeMap::new(),
        logs: BTreeMap::new(),
        configs: BTreeMap::new(),
    };
    for (host, b) in boxes {
        before
            .pids
            .insert(host.to_string(), running_pid(opsctl, host).await?);
        before.logs.insert(host.to_string(), b.control_log()?.len());
        before.configs.insert(host.to_string(), b.served_config()?);
    }
    Ok(before)
}

/// The step's words in the test's world.
async fn map_step(
    step: &Step,
    opsctl: &Opsctl,
    workstation: &Path,
    files: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for w in &step.words[1..] {
        out.push(if w == FINGERPRINT {
            let host = flag(&step.words, "--host").context("a fingerprint without --host")?;
            // What the history's table shows, and the operator copies: 12 hex digits.
            let fp = start_fingerprint(opsctl, host).await?;
            fp.get(..12).unwrap_or(&fp).to_owned()
        } else if files.contains_key(w) && !w.starts_with('/') {
            workstation.join(w).display().to_string()
        } else {
            w.clone()
        });
    }
    Ok(out)
}

/// A JSON block's content as a value (the config the app must serve).
fn parsed(files: &BTreeMap<String, String>, name: &str) -> Result<Value> {
    let text = files
        .get(name)
        .with_context(|| format!("no json block {name}"))?;
    Ok(serde_json::from_str(text)?)
}

/// What the step did to the apps, beyond its exit status.
fn check_effect(
    step: &Step,
    boxes: &BTreeMap<&str, CamBox>,
    before: &Before,
    after: &Before,
    files: &BTreeMap<String, String>,
) -> Result<()> {
    let w = &step.words;
    let ok = step.exits == 0;
    let verb: Vec<&str> = w.iter().skip(1).take(3).map(String::as_str).collect();
    for (host, b) in targets(w, boxes) {
        let (pid0, pid1) = (before.pids[host], after.pids[host]);
        let cfg0 = &before.configs[host];
        let cfg1 = &after.configs[host];
        match verb.as_slice() {
            ["service", "restart", ..] => {
                ensure!(pid0 != pid1, "{host}: the restart left pid {pid0}");
            }
            ["app", _, action] => {
                let log = b.control_log()?;
                if ok {
                    let last = log.last().context("nothing received")?;
                    ensure!(
                        log.len() == before.logs[host] + 1 && last["action"] == *action,
                        "{host}: the app received {log:?}"
                    );
                    let args = w.windows(2).filter(|p| p[0] == "--arg").map(|p| &p[1]);
                    for arg in args {
                        let (k, v) = arg.split_once('=').context("--arg k=v")?;
                        ensure!(last["args"][k] == v, "{host}: {k}={v} not in {last}");
                    }
                } else {
                    ensure!(
                        log.len() == before.logs[host],
                        "{host}: a refused action reached the app: {log:?}"
                    );
                }
            }
            ["service", "config", "apply"] if ok => {
                let file = flag(w, "--file").context("--file")?;
                let want = parsed(files, file)?;
                ensure!(*cfg1 == want, "{host}: the app serves {cfg1}, not {want}");
            }
            ["service", "config", "rollback"] => {
                let want = parsed(files, "/etc/vision/pipeline.json")?;
                ensure!(
                    *cfg1 == want,
                    "{host}: the app serves {cfg1} after the rollback"
                );
            }
            ["service", "config", "apply"] => {
                ensure!(
                    cfg0 == cfg1,
                    "{host}: a refused config changed the app: {cfg1}"
                );
                ensure!(pid0 == pid1, "{host}: a refused config restarted the app");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Each box's files and agent, as the runbook's step 0 sets them up.
fn add_boxes(c: &mut Cluster, book: &Runbook) -> Result<BTreeMap<&'static str, CamBox>> {
    let mut boxes = BTreeMap::new();
    for host in BOXES {
        let b = CamBox {
            port: free_port()?,
            root: c.dir().join(host),
        };
        for (name, content) in book.files.iter().filter(|(n, _)| n.starts_with('/')) {
            let path = PathBuf::from(b.map_path(name));
            std::fs::create_dir_all(path.parent().context("a file in a directory")?)?;
            std::fs::write(&path, content)?;
        }
        let version = b.root.join("opt/vision/VERSION");
        std::fs::create_dir_all(version.parent().context("opt/vision")?)?;
        std::fs::write(&version, "2.3.1\n")?;
        c.add_agent(
            AgentSpec::new(host)
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&b.map_toml(&book.toml)),
        )?;
        boxes.insert(host, b);
    }
    Ok(boxes)
}

/// Runs one step as the runbook has it (mapped), printing what it printed; fails unless it
/// exits as the runbook says.
async fn run_step(
    opsctl: &Opsctl,
    step: &Step,
    workstation: &Path,
    files: &BTreeMap<String, String>,
) -> Result<()> {
    let args = map_step(step, opsctl, workstation, files).await?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let out = opsctl.run(&args).await?;
    let code = out.status.code().unwrap_or(-1);
    eprintln!(
        "--- {RUNBOOK}:{} `{}` exited {code} in {:.1?}\n{}{}",
        step.line,
        step.words.join(" "),
        started.elapsed(),
        out.stdout,
        out.stderr
    );
    if code != step.exits {
        bail!(
            "{RUNBOOK}:{}: `{}` exited {code}, the runbook says {}:\n{}\n{}",
            step.line,
            step.words.join(" "),
            step.exits,
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_pipeline_runbook_runs_as_written() {
    Cluster::run("service-runbook", async |c: &mut Cluster| {
        let book = read_runbook()?;
        let workstation = c.dir().join("workstation");
        std::fs::create_dir_all(&workstation)?;
        for (name, content) in book.files.iter().filter(|(n, _)| !n.starts_with('/')) {
            std::fs::write(workstation.join(name), content)?;
        }
        c.add_coordinator(
            CoordinatorSpec::new("blue").config_toml("[alerts]\ninterval = \"500ms\"\n"),
        )?;
        let boxes = add_boxes(c, &book)?;
        let opsctl = c.opsctl.clone();
        all_ready(&opsctl).await?;
        let mut before = look(&opsctl, &boxes).await?;
        // Step 7's hand edit: (done, repaired by a rollback).
        let mut edit = (false, false);
        for step in &book.steps {
            if !edit.0 && step.line > book.hand_edit_line {
                hand_edit(&opsctl, &boxes[HAND_EDIT.1], &book.files).await?;
                before = look(&opsctl, &boxes).await?;
                edit.0 = true;
            }
            if edit.0 && step.words.get(1).is_some_and(|w| w == "alerts") {
                let state = if edit.1 {
                    AlertState::Resolved
                } else {
                    AlertState::Firing
                };
                drift_alert(&opsctl, state).await?;
            }
            run_step(&opsctl, step, &workstation, &book.files).await?;
            let after = look(&opsctl, &boxes).await?;
            check_effect(step, &boxes, &before, &after, &book.files)
                .with_context(|| format!("{RUNBOOK}:{}", step.line))?;
            let rollback = step.words.iter().any(|w| w == "rollback");
            edit.1 |= edit.0 && rollback && flag(&step.words, "--host") == Some(HAND_EDIT.1);
            before = after;
        }
        Ok(())
    })
    .await;
}
