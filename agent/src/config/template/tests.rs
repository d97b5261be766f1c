//! Unit tests of template rendering: host sources, labels, groups, `{host}`, problem keys and
//! lines, and that per-host files render to themselves.

use std::collections::BTreeMap;

use super::*;
use crate::config::tests::find;
use crate::config::{parse_str, parse_str_for, AgentConfig, ModuleConfig};

const FLEET: &str = r#"host_from = "env:NODE_NAME"
labels_from_env = { role = "OPS_ROLE", zone = "NODE_ZONE" }
labels = { site = "fra1" }
data_dir = "/var/lib/opsfleet"

[nats]
urls = ["tls://nats-0.nats:4222"]
nkey = "/etc/opsfleet/node-key/{host}.nk"
inbox_prefix = "_INBOX.{host}"

[[modules]]
type = "heartbeat"

[[modules]]
type = "disk"
interval = "30s"
paths = ["/"]

[[groups]]
name = "db"
hosts = ["db-*"]
labels = { tier = "data" }
[[groups.modules]]
name = "disk"
interval = "10s"
[[groups.modules]]
type = "log"
name = "pg"
paths = ["/var/log/postgresql/{host}.log"]

[[groups]]
name = "edge"
match_labels = { role = "edge" }
disable = ["disk"]
"#;

fn facts(env: &[(&str, &str)]) -> Facts {
    Facts {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Facts::default()
    }
}

fn names(cfg: &AgentConfig) -> Vec<&str> {
    cfg.modules.iter().map(ModuleConfig::name).collect()
}

#[test]
fn host_comes_from_the_environment_and_fills_host_placeholders() {
    let cfg = parse_str_for(FLEET, &facts(&[("NODE_NAME", "node-zq-4471")])).expect("valid");
    assert_eq!(cfg.host, "node-zq-4471");
    assert_eq!(
        cfg.nats.nkey.as_deref(),
        Some(std::path::Path::new(
            "/etc/opsfleet/node-key/node-zq-4471.nk"
        ))
    );
    assert_eq!(
        cfg.nats.inbox_prefix.as_deref(),
        Some("_INBOX.node-zq-4471")
    );
    assert_eq!(names(&cfg), ["heartbeat", "disk"]);
    assert_eq!(cfg.labels, BTreeMap::from([("site".into(), "fra1".into())]));
}

#[test]
fn hostname_source_takes_the_short_name() {
    let text = "host_from = \"hostname\"\n";
    let f = Facts {
        hostname: Some("web-17.fra1.example".into()),
        ..Facts::default()
    };
    assert_eq!(parse_str_for(text, &f).expect("valid").host, "web-17");
    let fqdn = facts(&[("NODE_NAME", "ip-10-0-1-7.ec2.internal")]);
    let cfg = parse_str_for(FLEET, &fqdn).expect("valid");
    assert_eq!(cfg.host, "ip-10-0-1-7");
}

#[test]
fn a_missing_host_source_is_one_problem_at_its_line() {
    let problems = parse_str_for(FLEET, &facts(&[])).expect_err("no host");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let p = find(&problems, "host_from");
    assert_eq!(p.line, Some(1));
    assert!(p.reason.contains("NODE_NAME is not set"), "{}", p.reason);
    // --host stands in for the source.
    let f = Facts {
        host: Some("db-01".into()),
        ..Facts::default()
    };
    assert_eq!(parse_str_for(FLEET, &f).expect("valid").host, "db-01");
}

#[test]
fn host_and_host_from_together_and_bad_sources_are_reported() {
    let text = "host = \"a\"\nhost_from = \"dns\"\n";
    let problems = parse_str(text).expect_err("invalid");
    assert!(problems
        .iter()
        .any(|p| p.key == "host_from" && p.reason.contains("not both")));
    assert!(problems
        .iter()
        .any(|p| p.key == "host_from" && p.reason.contains("\"hostname\" or \"env:VAR\"")));
}

#[test]
fn labels_come_from_file_environment_groups_and_flags_in_that_order() {
    let mut f = facts(&[("NODE_NAME", "db-3"), ("OPS_ROLE", "primary")]);
    f.labels.insert("site".into(), "ams1".into());
    let cfg = parse_str_for(FLEET, &f).expect("valid");
    assert_eq!(
        cfg.labels,
        BTreeMap::from([
            ("role".into(), "primary".into()),
            ("site".into(), "ams1".into()),
            ("tier".into(), "data".into()),
        ])
    );
}

#[test]
fn groups_override_add_and_disable_modules() {
    let db = parse_str_for(FLEET, &facts(&[("NODE_NAME", "db-3")])).expect("valid");
    assert_eq!(names(&db), ["heartbeat", "disk", "pg"]);
    assert_eq!(db.modules[1].interval(), std::time::Duration::from_secs(10));
    let ModuleConfig::Log(pg) = &db.modules[2] else {
        panic!("log")
    };
    assert_eq!(pg.paths, ["/var/log/postgresql/db-3.log"]);
    let edge = parse_str_for(
        FLEET,
        &facts(&[("NODE_NAME", "web-1"), ("OPS_ROLE", "edge")]),
    )
    .expect("valid");
    assert_eq!(names(&edge), ["heartbeat"]);
    // Both groups: db's override, then edge removes disk.
    let both = parse_str_for(
        FLEET,
        &facts(&[("NODE_NAME", "db-1"), ("OPS_ROLE", "edge")]),
    )
    .expect("valid");
    assert_eq!(names(&both), ["heartbeat", "pg"]);
}

#[test]
fn problems_in_group_entries_point_at_the_group_lines() {
    let text = FLEET.replace("interval = \"10s\"", "interval = \"0s\"");
    let problems = parse_str_for(&text, &facts(&[("NODE_NAME", "db-9")])).expect_err("bad");
    let p = find(&problems, "groups[0].modules[0].interval");
    assert_eq!(p.line, Some(25), "{p:?}");
    // Keys the group does not set stay at the shared entry.
    let text = FLEET.replace("paths = [\"/\"]", "paths = [\"relative\"]");
    let problems = parse_str_for(&text, &facts(&[("NODE_NAME", "db-9")])).expect_err("bad");
    assert_eq!(find(&problems, "modules[1].paths[0]").line, Some(17));
}

#[test]
fn every_group_problem_is_collected() {
    let text = r#"host = "h"
[[modules]]
type = "heartbeat"
[[groups]]
name = "a.b"
hosts = ["[x"]
[[groups]]
name = "all"
[[groups]]
name = "c"
hosts = ["*"]
colour = "red"
[[groups]]
name = "d"
hosts = ["h"]
disable = ["nope"]
[[groups.modules]]
name = "heartbeat"
type = "disk"
[[groups.modules]]
interval = "1s"
"#;
    let problems = parse_str(text).expect_err("invalid");
    for key in [
        "groups[0].name",
        "groups[0].hosts[0]",
        "groups[1]",
        "groups[2].colour",
        "groups[3].disable[0]",
        "groups[3].modules[0].type",
        "groups[3].modules[1]",
    ] {
        find(&problems, key);
    }
}

#[test]
fn per_host_files_render_to_themselves() {
    for (file, text) in [
        (
            "compose/agent-web-01.toml",
            include_str!("../../../../deploy/compose/agent-web-01.toml"),
        ),
        (
            "compose/agent-db-01.toml",
            include_str!("../../../../deploy/compose/agent-db-01.toml"),
        ),
    ] {
        let plain = parse_str(text).unwrap_or_else(|p| panic!("{file}: {p:#?}"));
        let strict: AgentConfig = toml::from_str(text).expect("strict parse");
        assert_eq!(plain, strict, "{file}");
        let with_env = parse_str_for(text, &facts(&[("NODE_NAME", "other")])).expect("valid");
        assert_eq!(with_env.fingerprint(), strict.fingerprint(), "{file}");
    }
}

#[test]
fn the_systemd_template_takes_the_machines_host_name() {
    let text = include_str!("../../../../deploy/systemd/agent.toml");
    let facts = Facts {
        hostname: Some("app-03.example.internal".to_owned()),
        ..Facts::default()
    };
    let cfg = parse_str_for(text, &facts).expect("valid");
    assert_eq!(cfg.host, "app-03");
    assert_eq!(
        cfg.nats.nkey.as_deref(),
        Some(std::path::Path::new(
            "/etc/opsfleet/secrets/nkeys/app-03.nk"
        ))
    );
    assert_eq!(cfg.nats.inbox_prefix.as_deref(), Some("_INBOX.app-03"));
}

#[test]
fn the_rendered_toml_loads_back_to_the_same_config() {
    let cfg = parse_str_for(FLEET, &facts(&[("NODE_NAME", "db-2")])).expect("valid");
    let text = toml::to_string(&cfg).expect("toml");
    let again = parse_str(&text).expect("rendered config is valid");
    assert_eq!(again.fingerprint(), cfg.fingerprint());
}

#[test]
fn one_template_serves_three_thousand_hosts() {
    let mut prefixes = std::collections::BTreeSet::new();
    for i in 0..3000 {
        let node = format!("{}-{i}", ["web", "db", "cache"][i % 3]);
        let cfg = parse_str_for(FLEET, &facts(&[("NODE_NAME", &node)])).expect("valid");
        assert_eq!(cfg.host, node);
        assert_eq!(cfg.modules.len(), if i % 3 == 1 { 3 } else { 2 });
        prefixes.insert(cfg.nats.inbox_prefix);
    }
    assert_eq!(prefixes.len(), 3000);
}
