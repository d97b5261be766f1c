//! Reading the coordinator's config file with the config-problem engine
//! (`opsfleet-configcheck`): every top-level section is deserialized on its own, the semantic
//! checks run on what parsed, and every problem is reported as `FILE:LINE: key: reason`.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use opsfleet_bus::{NatsConfig, TopologyConfig};
use opsfleet_configcheck::{ConfigProblems, Document, Sections};
use opsfleet_proto::subjects::validate_token;

pub use opsfleet_configcheck::Problem;

use super::{ApiConfig, CoordinatorConfig, IngestConfig};
use crate::alerts::AlertsConfig;
use crate::console::ConsoleConfig;
use crate::drills::DrillConfig;
use crate::groups::GroupsConfig;
use crate::http::HttpConfig;
use crate::notify::NotifyConfig;

/// Every problem of the coordinator's config file. `Display` is the one-line summary
/// (`N problem(s) in FILE`); `report()` (of [`ConfigProblems`]) prints the problems.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.summary())]
pub struct ConfigErrors(pub ConfigProblems);

impl Deref for ConfigErrors {
    type Target = ConfigProblems;

    fn deref(&self) -> &ConfigProblems {
        &self.0
    }
}

/// Reads and validates `file`, collecting every problem.
pub(super) fn load(file: &Path) -> Result<CoordinatorConfig, ConfigErrors> {
    let invalid = |problems| {
        ConfigErrors(ConfigProblems {
            file: file.to_path_buf(),
            problems,
        })
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        invalid(vec![Problem {
            line: None,
            key: "(file)".to_owned(),
            reason: format!("cannot read: {e}"),
        }])
    })?;
    let Document { table, spans } = Document::parse(&text).map_err(|p| invalid(vec![p]))?;
    let mut sections = Sections::new(table);
    let parts = Parts::take(&mut sections);
    parts.check(&mut sections);
    let problems = spans.locate(sections.finish("unknown key"));
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    // Nothing was reported, so every section parsed.
    parts.build().ok_or_else(|| invalid(Vec::new()))
}

/// The file's sections, each None when it did not parse (or a required one is missing).
struct Parts {
    name: Option<String>,
    color: Option<String>,
    data_dir: Option<PathBuf>,
    nats: Option<NatsConfig>,
    topology: Option<TopologyConfig>,
    ingest: Option<IngestConfig>,
    http: Option<Option<HttpConfig>>,
    notify: Option<NotifyConfig>,
    alerts: Option<AlertsConfig>,
    api: Option<ApiConfig>,
    groups: Option<GroupsConfig>,
    console: Option<Option<ConsoleConfig>>,
    drills: Option<Vec<DrillConfig>>,
}

impl Parts {
    fn take(s: &mut Sections) -> Parts {
        Parts {
            name: s.take("name", || None),
            color: s.take("color", || Some(String::new())),
            data_dir: s.take("data_dir", || None),
            nats: s.take("nats", || Some(NatsConfig::default())),
            topology: s.take("topology", || Some(TopologyConfig::default())),
            ingest: s.take("ingest", || Some(IngestConfig::default())),
            http: s.take("http", || Some(None)),
            notify: s.take("notify", || Some(NotifyConfig::default())),
            alerts: s.take("alerts", || Some(AlertsConfig::default())),
            api: s.take("api", || Some(ApiConfig::default())),
            groups: s.take("groups", || Some(GroupsConfig::default())),
            console: s.take("console", || Some(None)),
            drills: s.take("drills", || Some(Vec::new())),
        }
    }

    /// The semantic checks of the sections that parsed.
    fn check(&self, s: &mut Sections) {
        if let (Some(a), Some(t)) = (&self.api, &self.topology) {
            s.extend("api", a.problems(t.commands_max_age));
        }
        if let Some(a) = &self.alerts {
            s.extend("alerts", a.problems());
        }
        if let (Some(g), Some(a)) = (&self.groups, &self.api) {
            s.extend("groups", g.problems(a.max_deadline));
        }
        if let Some(n) = &self.notify {
            s.extend("notify", n.problems());
        }
        if let Some(name) = &self.name {
            if let Err(e) = validate_token(name) {
                s.problem("name", e.to_string());
            }
        }
        if let Some(n) = &self.nats {
            s.extend("nats", n.problems());
        }
        if let Some(t) = &self.topology {
            s.extend("topology", t.problems());
        }
        if let Some(Some(h)) = &self.http {
            s.extend("http", h.problems());
        }
        if let (Some(Some(c)), Some(h)) = (&self.console, &self.http) {
            s.extend("console", c.problems(h.as_ref()));
        }
        if let Some(d) = &self.drills {
            for (key, reason) in crate::drills::config::problems(d) {
                s.problem(key, reason);
            }
        }
        if let Some(i) = &self.ingest {
            s.extend("ingest", i.problems());
        }
    }

    fn build(self) -> Option<CoordinatorConfig> {
        let name = self.name?;
        let color = self.color?;
        Some(CoordinatorConfig {
            color: if color.is_empty() {
                name.clone()
            } else {
                color
            },
            name,
            data_dir: self.data_dir?,
            nats: self.nats?,
            topology: self.topology?,
            ingest: self.ingest?,
            http: self.http?,
            notify: self.notify?,
            alerts: self.alerts?,
            api: self.api?,
            groups: self.groups?,
            console: self.console?,
            drills: self.drills?,
        })
    }
}
