//! Unit tests of config parsing, problem collection and fingerprints.

use super::*;

const GOOD: &str = r#"
host = "web-01"
data_dir = "/tmp/ops-agent"
shutdown_grace = "5s"
[nats]
urls = ["nats://127.0.0.1:4222"]
[outbox]
max_events = 100000
[[modules]]
type = "heartbeat"
interval = "10s"
[[modules]]
type = "disk"
name = "disk"
interval = "60s"
paths = ["/"]
warn_percent = 85.0
crit_percent = 95.0
hysteresis_percent = 2.0
"#;

fn keys(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

/// The problem reported for `key` (shared with the template tests).
pub(crate) fn find<'a>(problems: &'a [Problem], key: &str) -> &'a Problem {
    problems
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no problem for {key}: {problems:#?}"))
}

#[test]
fn spec_example_parses() {
    let cfg = parse_str(GOOD).expect("valid");
    assert_eq!(cfg.host, "web-01");
    assert_eq!(cfg.modules.len(), 2);
    assert_eq!(cfg.modules[0].name(), "heartbeat");
    assert_eq!(cfg.modules[1].interval(), Duration::from_secs(60));
    assert_eq!(cfg.sled_path(), PathBuf::from("/tmp/ops-agent/agent.sled"));
    // The lenient loader and plain serde agree.
    let strict: AgentConfig = toml::from_str(GOOD).expect("strict parse");
    assert_eq!(strict, cfg);
}

#[test]
fn defaults_fill_in() {
    let cfg = parse_str("host = \"db-01\"\n[[modules]]\ntype = \"disk\"\n").expect("valid");
    assert_eq!(cfg.shutdown_grace, Duration::from_secs(5));
    assert_eq!(cfg.outbox.max_events, 100_000);
    let ModuleConfig::Disk(d) = &cfg.modules[0] else {
        panic!("disk")
    };
    assert_eq!(d.paths, vec![PathBuf::from("/")]);
    assert_eq!(d.warn_percent, 85.0);
}

#[test]
fn every_problem_is_reported_with_key_and_line() {
    let text = r#"host = "web.01"
shutdown_grace = "soon"
colour = "blue"
[nats]
urls = []
[outbox]
max_events = 0
[[modules]]
type = "heartbeat"
interval = "0s"
[[modules]]
type = "disk"
interval = "1m"
warn_percent = 96.0
pathz = ["/"]
[[modules]]
type = "disk"
warn_percent = 99.0
crit_percent = 90.0
[[modules]]
type = "heartbeat"
[[modules]]
type = "smtp"
"#;
    let problems = parse_str(text).unwrap_err();
    let k = keys(&problems);
    for want in [
        "host",
        "shutdown_grace",
        "colour",
        "nats.urls",
        "outbox.max_events",
        "modules[0].interval",
        "modules[1].pathz",
        "modules[2].warn_percent",
        "modules[3].name",
        "modules[4].type",
    ] {
        assert!(k.contains(&want), "missing {want} in {problems:#?}");
    }
    assert_eq!(find(&problems, "host").line, Some(1));
    assert_eq!(find(&problems, "shutdown_grace").line, Some(2));
    assert_eq!(find(&problems, "colour").line, Some(3));
    assert_eq!(find(&problems, "outbox.max_events").line, Some(7));
    assert_eq!(find(&problems, "modules[0].interval").line, Some(10));
    assert_eq!(find(&problems, "modules[1].pathz").line, Some(15));
    assert_eq!(find(&problems, "modules[2].warn_percent").line, Some(18));
    assert!(find(&problems, "modules[3].name")
        .reason
        .contains("duplicate"));
    assert!(find(&problems, "modules[4].type").reason.contains("smtp"));

    let shown = ConfigProblems {
        file: "agent.toml".into(),
        problems,
    }
    .to_string();
    assert!(
        shown.contains("agent.toml:10: modules[0].interval: must be greater than 0"),
        "{shown}"
    );
}

#[test]
fn nested_type_errors_keep_their_key() {
    let text = "host = \"web-01\"\n[nats]\nrequest_timeout = 5\n[[modules]]\ntype = \"disk\"\npaths = \"/\"\n";
    let problems = parse_str(text).unwrap_err();
    assert_eq!(find(&problems, "nats.request_timeout").line, Some(3));
    assert_eq!(find(&problems, "modules[0].paths").line, Some(6));
}

#[test]
fn missing_host_and_syntax_errors() {
    let problems = parse_str("[outbox]\nmax_events = 10\n").unwrap_err();
    assert_eq!(keys(&problems), ["host"]);
    assert_eq!(problems[0].line, None);

    let problems = parse_str("host = \"a\"\nmodules = [\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "(syntax)");
    assert!(problems[0].line.is_some());
}

#[test]
fn reserved_and_relative_paths() {
    let text =
        "host = \"web-01\"\n[[modules]]\ntype = \"disk\"\nname = \"agent\"\npaths = [\"var\"]\n";
    let problems = parse_str(text).unwrap_err();
    assert_eq!(keys(&problems), ["modules[0].name", "modules[0].paths[0]"]);
    // Events of module "coordinator" are folded as a coordinator's, not a host's.
    let text = "host = \"web-01\"\n[[modules]]\ntype = \"heartbeat\"\nname = \"coordinator\"\n";
    assert_eq!(keys(&parse_str(text).unwrap_err()), ["modules[0].name"]);
}

#[test]
fn fingerprints_are_stable_and_sensitive() {
    let a = parse_str(GOOD).expect("valid");
    let b = parse_str(GOOD).expect("valid");
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint().len(), 64);
    let changed = parse_str(&GOOD.replace("\"10s\"", "\"11s\"")).expect("valid");
    assert_ne!(a.fingerprint(), changed.fingerprint());
    assert_ne!(a.modules[0].fingerprint(), changed.modules[0].fingerprint());
    assert_eq!(a.modules[1].fingerprint(), changed.modules[1].fingerprint());
}

#[test]
fn http_tls_cert_and_key_go_together() {
    let problems =
        parse_str("host = \"web-01\"\n[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"\n")
            .unwrap_err();
    assert_eq!(keys(&problems), ["http.tls_key"]);
    let cfg = parse_str(
        "host = \"web-01\"\n[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
    )
    .expect("valid");
    let http = cfg.http.expect("http");
    assert_eq!(http.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
}

#[test]
fn labels_are_optional_tokens_and_bad_ones_are_named() {
    assert!(parse_str(GOOD).expect("valid").labels.is_empty());
    let text = GOOD.replace(
        "shutdown_grace = \"5s\"\n",
        "shutdown_grace = \"5s\"\nlabels = { role = \"web\", site = \"fra1\" }\n",
    );
    let cfg = parse_str(&text).expect("valid");
    assert_eq!(cfg.labels.get("role").map(String::as_str), Some("web"));
    let bad = GOOD.replace(
        "shutdown_grace = \"5s\"\n",
        "shutdown_grace = \"5s\"\nlabels = { role = \"web server\" }\n",
    );
    let problems = parse_str(&bad).unwrap_err();
    let p = find(&problems, "labels.role");
    assert!(p.reason.contains("web server"), "{p:?}");
}
