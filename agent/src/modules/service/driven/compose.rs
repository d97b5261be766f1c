//! The `compose` manager: one service of a compose project. Operations are compose commands
//! (`up -d --no-deps`, `stop -t`, `restart -t`, `kill -s SIGHUP`); observation finds the
//! service's container (`ps --all --format json`, both the JSON-array and JSON-lines output of
//! compose v2; `ps --all -q` with docker-compose v1, which has no `--format`) and reads its
//! state, start time, restart count and image tag with `docker inspect`. The compose program
//! is `command` when configured, else `docker compose` when it answers, else `docker-compose`.
//! A service with `[modules.deploy]` gets the deploy's override file (the image tag) as a
//! second `-f` on every command once it exists.

use std::time::Duration;

use opsfleet_proto::pb;
use serde::Deserialize;

use super::runner::{argv, check, DrivenError, Runner};
use super::{Driven, Observed};
use crate::config::ComposeSection;

/// How long `up -d` may take (container creation; images are never pulled by the agent's
/// choice, but compose may).
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Added to the stop grace for `stop` / `restart`.
const MARGIN: Duration = Duration::from_secs(60);
/// How long `ps`, `inspect`, `kill` and `version` may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(30);
/// A known container is inspected directly; `ps` finds it again after an operation, when it
/// is gone, and at least every this many observations.
const PS_EVERY: u32 = 10;

/// The compose program found, and whether it is docker-compose v1 (no `ps --format`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Program {
    argv: Vec<String>,
    v1: bool,
}

/// One compose service driven through the compose program.
pub struct Compose {
    runner: Box<dyn Runner>,
    section: ComposeSection,
    program: Option<Program>,
    /// The container last found and how many observations ago `ps` found it.
    container: Option<String>,
    since_ps: u32,
    /// The deploy's override file (`[modules.deploy]`), passed once it exists.
    override_file: Option<std::path::PathBuf>,
}

impl Compose {
    pub fn new(section: &ComposeSection, runner: Box<dyn Runner>) -> Self {
        Compose {
            runner,
            section: section.clone(),
            program: None,
            container: None,
            since_ps: 0,
            override_file: None,
        }
    }

    /// Passes `file` (the deploy's override) as an extra `-f` whenever it exists.
    pub fn with_override(mut self, file: std::path::PathBuf) -> Self {
        self.override_file = Some(file);
        self
    }

    /// Whether `program version --short` answers, and with a 1.x version.
    fn probe(&self, program: &[String]) -> Option<bool> {
        let mut argv = program.to_vec();
        argv.extend(["version".to_owned(), "--short".to_owned()]);
        let out = self.runner.run(&argv, QUICK_TIMEOUT).ok()?;
        out.success()
            .then(|| out.stdout.trim().trim_start_matches('v').starts_with("1."))
    }

    /// The compose program (found once).
    fn program(&mut self) -> Result<Program, DrivenError> {
        if let Some(p) = &self.program {
            return Ok(p.clone());
        }
        let found = match &self.section.command {
            Some(c) => Program {
                argv: c.clone(),
                v1: self.probe(c).unwrap_or(false),
            },
            None => [argv(&["docker", "compose"]), argv(&["docker-compose"])]
                .into_iter()
                .find_map(|c| self.probe(&c).map(|v1| Program { argv: c, v1 }))
                .ok_or(DrivenError::NoCompose)?,
        };
        self.program = Some(found.clone());
        Ok(found)
    }

    /// `<compose> [-p P] -f F <args...> <service>`.
    fn argv(&mut self, args: &[&str]) -> Result<Vec<String>, DrivenError> {
        let mut out = self.program()?.argv;
        if let Some(p) = &self.section.project {
            out.extend(["-p".to_owned(), p.clone()]);
        }
        out.push("-f".to_owned());
        out.push(self.section.resolved_file().to_string_lossy().into_owned());
        if let Some(file) = self.override_file.as_ref().filter(|f| f.is_file()) {
            out.push("-f".to_owned());
            out.push(file.to_string_lossy().into_owned());
        }
        out.extend(args.iter().map(|a| (*a).to_owned()));
        out.push(self.section.service.clone());
        Ok(out)
    }

    fn op(&mut self, args: &[&str], timeout: Duration) -> Result<(), DrivenError> {
        self.container = None;
        let argv = self.argv(args)?;
        check(self.runner.as_ref(), &argv, timeout).map(|_| ())
    }

    /// The service's containers (ids), as compose lists them.
    fn containers(&mut self) -> Result<Vec<String>, DrivenError> {
        if !self.program()?.v1 {
            let argv = self.argv(&["ps", "--all", "--format", "json"])?;
            let out = check(self.runner.as_ref(), &argv, QUICK_TIMEOUT)?;
            if let Some(ids) = parse_ps_json(&out.stdout) {
                return Ok(ids);
            }
        }
        let argv = self.argv(&["ps", "--all", "-q"])?;
        let out = check(self.runner.as_ref(), &argv, QUICK_TIMEOUT)?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// `docker inspect` of `ids`; `None` when one of them is gone.
    fn inspect(&self, ids: &[String]) -> Result<Option<Vec<Inspect>>, DrivenError> {
        let mut argv = argv(&["docker", "inspect"]);
        argv.extend(ids.iter().cloned());
        let out = self.runner.run(&argv, QUICK_TIMEOUT)?;
        if !out.success() {
            return Ok(None);
        }
        serde_json::from_str(&out.stdout)
            .map(Some)
            .map_err(|e| DrivenError::Parse {
                argv: argv.join(" "),
                detail: e.to_string(),
            })
    }
}

impl Driven for Compose {
    fn start(&mut self) -> Result<(), DrivenError> {
        self.op(&["up", "-d", "--no-deps"], UP_TIMEOUT)
    }

    fn stop(&mut self, grace: Duration) -> Result<(), DrivenError> {
        let secs = grace_secs(grace);
        self.op(&["stop", "-t", &secs], grace + MARGIN)
    }

    fn restart(&mut self, grace: Duration) -> Result<(), DrivenError> {
        let secs = grace_secs(grace);
        self.op(&["restart", "-t", &secs], grace + MARGIN)
    }

    fn reload(&mut self) -> Result<(), DrivenError> {
        self.op(&["kill", "-s", "SIGHUP"], QUICK_TIMEOUT)
    }

    fn observe(&mut self) -> Result<Observed, DrivenError> {
        self.since_ps += 1;
        if let Some(id) = self.container.clone().filter(|_| self.since_ps < PS_EVERY) {
            if let Some(found) = self.inspect(&[id])? {
                if let Some(o) = pick(&found) {
                    return Ok(o);
                }
            }
        }
        self.container = None;
        self.since_ps = 0;
        let ids = self.containers()?;
        if ids.is_empty() {
            return Ok(no_container());
        }
        let found = self.inspect(&ids)?.unwrap_or_default();
        let picked = pick(&found);
        self.container = picked.as_ref().map(|o| o.instance.clone());
        Ok(picked.unwrap_or_else(no_container))
    }
}

/// The override file a deploy writes for the compose service `section` names
/// (`<project_dir>/opsfleet.<service>.override.yml`; see `deploy::compose`).
pub fn override_file(section: &ComposeSection) -> std::path::PathBuf {
    section
        .project_dir
        .join(format!("opsfleet.{}.override.yml", section.service))
}

/// Whole seconds of the grace for `-t`, at least 1.
fn grace_secs(grace: Duration) -> String {
    grace.as_secs().max(1).to_string()
}

fn no_container() -> Observed {
    Observed {
        state: pb::ServiceRunState::Stopped,
        detail: "no container".to_owned(),
        ..Observed::default()
    }
}

/// The container ids of `ps --format json` output: one JSON array (compose v2 before 2.21) or
/// one object per line (later); `None` when it is neither (docker-compose v1 prints its usage).
pub fn parse_ps_json(text: &str) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "ID")]
        id: String,
    }
    let text = text.trim();
    if text.is_empty() {
        return Some(Vec::new());
    }
    let entries: Vec<Entry> = if text.starts_with('[') {
        serde_json::from_str(text).ok()?
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .ok()?
    };
    Some(entries.into_iter().map(|e| e.id).collect())
}

/// The parts of `docker inspect` the manager reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    pub id: String,
    pub state: InspectState,
    #[serde(default)]
    pub restart_count: u64,
    pub config: InspectConfig,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectState {
    pub status: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub health: Option<InspectHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectHealth {
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectConfig {
    pub image: String,
}

/// The observation of the service from its containers' inspection: a running one first
/// (scaled services), else the one that started last.
pub fn pick(found: &[Inspect]) -> Option<Observed> {
    let chosen = found
        .iter()
        .find(|c| c.state.status == "running")
        .or_else(|| {
            found
                .iter()
                .max_by(|a, b| a.state.started_at.cmp(&b.state.started_at))
        })?;
    Some(observed(chosen))
}

/// One container's state as the service's.
pub fn observed(c: &Inspect) -> Observed {
    use pb::ServiceRunState as S;
    let s = &c.state;
    let health = s.health.as_ref().map(|h| h.status.as_str());
    let (state, mut detail) = match s.status.as_str() {
        "running" if health == Some("starting") => (S::Starting, "health: starting".to_owned()),
        "running" => (S::Running, String::new()),
        "restarting" => (S::Starting, "restarting".to_owned()),
        "removing" => (S::Stopping, "removing".to_owned()),
        "created" => (S::Stopped, "created, not started".to_owned()),
        "paused" => (S::Stopped, "paused".to_owned()),
        "exited" if s.exit_code == 0 => (S::Stopped, "exited with status 0".to_owned()),
        "exited" => (S::Failed, format!("exited with status {}", s.exit_code)),
        other => (S::Failed, other.to_owned()),
    };
    if !s.error.is_empty() {
        detail = format!("{detail}: {}", s.error);
    }
    let at = if state == S::Running || state == S::Starting {
        &s.started_at
    } else {
        &s.finished_at
    };
    Observed {
        state,
        pid: if s.status == "running" { s.pid } else { 0 },
        instance: c.id.chars().take(12).collect(),
        since_unix_ms: unix_ms(at),
        restarts: c.restart_count,
        version: image_tag(&c.config.image),
        detail,
    }
}

/// Milliseconds since the epoch of an RFC 3339 time docker prints; 0 for its zero time
/// (`0001-01-01T00:00:00Z`) or anything unreadable.
fn unix_ms(at: &str) -> i64 {
    humantime::parse_rfc3339(at)
        .ok()
        .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// The tag of an image reference (`registry:5000/app:1.4` → `1.4`); `latest` without one; the
/// digest when pinned by digest only.
pub fn image_tag(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match (last.split_once(':'), digest) {
        (Some((_, tag)), _) => tag.to_owned(),
        (None, Some(d)) => d.to_owned(),
        (None, None) => "latest".to_owned(),
    }
}

#[cfg(test)]
mod tests;
