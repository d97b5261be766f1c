//! The health module's config: parsing, defaults and every problem reported with its key.

use crate::config::{parse_str, ModuleConfig, ProbeType};

const OK: &str = r#"
host = "web-01"
[http]
listen = "127.0.0.1:0"
[[modules]]
type = "health"
interval = "5s"
[[modules.probes]]
name = "api"
type = "http"
url = "http://127.0.0.1:8080/healthz"
body_contains = "ok"
[[modules.probes]]
name = "db"
type = "tcp"
address = "127.0.0.1:5432"
failed_after = 5
degraded_after = 2
[[modules.probes]]
name = "queue"
type = "command"
argv = ["sh", "-c", "exit 0"]
timeout = "1s"
start_period = "30s"
"#;

#[test]
fn a_full_health_section_parses_with_defaults() {
    let cfg = parse_str(OK).expect("valid");
    let http = cfg.http.expect("http section");
    assert_eq!(http.listen.port(), 0);
    assert!(!http.admin_tcp && http.admin.is_none());
    let ModuleConfig::Health(h) = &cfg.modules[0] else {
        panic!("{:?}", cfg.modules[0])
    };
    assert_eq!(h.probes.len(), 3);
    assert_eq!(h.probes[0].probe, ProbeType::Http);
    assert_eq!(h.probes[0].timeout, std::time::Duration::from_secs(2));
    assert_eq!(
        (
            h.probes[0].ready_after,
            h.probes[0].degraded_after,
            h.probes[0].failed_after
        ),
        (1, 1, 3)
    );
    assert_eq!(h.probes[2].start_period, std::time::Duration::from_secs(30));
    assert_eq!(cfg.modules[0].name(), "health");
}

#[test]
fn no_http_section_means_no_listener() {
    assert!(parse_str("host = \"web-01\"\n")
        .expect("valid")
        .http
        .is_none());
}

#[test]
fn every_probe_problem_is_reported_with_its_key() {
    let text = r#"
host = "web-01"
[http]
listen = "nonsense"
[[modules]]
type = "health"
interval = "1s"
[[modules.probes]]
name = "bad name"
type = "http"
url = "ftp://example.invalid/"
address = "x:1"
timeout = "5s"
[[modules.probes]]
name = "t"
type = "tcp"
address = "no-port"
degraded_after = 3
failed_after = 2
[[modules.probes]]
name = "t"
type = "command"
argv = []
ready_after = 0
"#;
    let problems = parse_str(text).expect_err("invalid");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "http.listen",
        "modules[0].probes[0].name",
        "modules[0].probes[0].url",
        "modules[0].probes[0].address",
        "modules[0].probes[0].timeout",
        "modules[0].probes[1].address",
        "modules[0].probes[1].failed_after",
        "modules[0].probes[2].name",
        "modules[0].probes[2].argv",
        "modules[0].probes[2].ready_after",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    // Lines point into the file.
    let url = problems
        .iter()
        .find(|p| p.key == "modules[0].probes[0].url")
        .expect("url problem");
    assert_eq!(url.line, Some(11));
}

#[test]
fn unknown_probe_keys_are_refused() {
    let text = "host = \"w\"\n[[modules]]\ntype = \"health\"\n[[modules.probes]]\nname = \"a\"\ntype = \"tcp\"\naddress = \"h:1\"\nport = 5\n";
    let problems = parse_str(text).expect_err("invalid");
    assert!(
        problems.iter().any(|p| p.key.contains("port")),
        "{problems:?}"
    );
}

#[test]
fn https_json_latency_cert_and_websocket_probes_parse() {
    let text = r#"
host = "web-01"
[[modules]]
type = "health"
interval = "2s"
[[modules.probes]]
name = "router"
type = "http"
url = "https://localhost:8443/health"
ca_file = "/etc/opsfleet/dev-ca.pem"
json = [{ pointer = "/telegram/status", equals = "ready" }, { pointer = "/queue/depth", lt = 100 }]
latency_p95 = "250ms"
latency_window = 10
warn_days = 20
crit_days = 5
[[modules.probes]]
name = "dev"
type = "http"
url = "https://127.0.0.1:8443/"
insecure = true
latency_p95 = "300ms"
latency_window = "10s"
[[modules.probes]]
name = "tls"
type = "cert"
path = "/etc/ssl/app.pem"
[[modules.probes]]
name = "dash"
type = "websocket"
url = "ws://127.0.0.1:9000/ws"
send_text = "ping"
expect_text = "pong"
"#;
    let cfg = parse_str(text).expect("valid");
    let ModuleConfig::Health(h) = &cfg.modules[0] else {
        panic!("{:?}", cfg.modules[0])
    };
    let p = &h.probes;
    assert_eq!(p[0].json.len(), 2);
    assert_eq!(
        p[0].json[1].comparisons(),
        [crate::config::Comparison::Lt(100.0)]
    );
    assert_eq!(
        p[0].latency_window,
        Some(crate::config::LatencyWindow::Probes(10))
    );
    assert_eq!(p[0].cert_days(), Some((20, 5)));
    assert!(p[1].insecure && p[1].cert_days().is_none());
    assert_eq!(
        p[1].latency_window,
        Some(crate::config::LatencyWindow::Duration(
            std::time::Duration::from_secs(10)
        ))
    );
    assert_eq!(p[2].probe, ProbeType::Cert);
    assert_eq!(p[2].cert_days(), Some((30, 7)), "defaults of a cert probe");
    assert_eq!(p[3].probe, ProbeType::Websocket);
}

#[test]
fn every_problem_of_the_new_probe_keys_is_reported() {
    let text = r#"
host = "web-01"
[[modules]]
type = "health"
interval = "1s"
[[modules.probes]]
name = "a"
type = "http"
url = "http://127.0.0.1:1/"
ca_file = "/ca.pem"
insecure = true
warn_days = 3
json = [{ pointer = "status", equals = "ok" }, { pointer = "/x~2", lt = 1, gt = 0 }, { pointer = "/y" }]
latency_p95 = "5s"
[[modules.probes]]
name = "b"
type = "tcp"
address = "127.0.0.1:1"
latency_window = 5
path = "/x.pem"
send_text = "hi"
[[modules.probes]]
name = "c"
type = "cert"
path = "relative.pem"
warn_days = 3
crit_days = 9
latency_p95 = "10ms"
[[modules.probes]]
name = "d"
type = "websocket"
url = "http://127.0.0.1:1/"
expect_text = "pong"
latency_p95 = "10ms"
latency_window = "2s"
[[modules.probes]]
name = "e"
type = "http"
url = "https://user:pw@127.0.0.1/"
ca_file = "rel.pem"
insecure = true
"#;
    let problems = parse_str(text).expect_err("invalid");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "modules[0].probes[0].ca_file",
        "modules[0].probes[0].insecure",
        "modules[0].probes[0].warn_days",
        "modules[0].probes[0].json[0].pointer",
        "modules[0].probes[0].json[1].pointer",
        "modules[0].probes[0].json[1]",
        "modules[0].probes[0].json[2]",
        "modules[0].probes[0].latency_p95",
        "modules[0].probes[1].latency_window",
        "modules[0].probes[1].path",
        "modules[0].probes[1].send_text",
        "modules[0].probes[2].path",
        "modules[0].probes[2].crit_days",
        "modules[0].probes[2].latency_p95",
        "modules[0].probes[3].url",
        "modules[0].probes[3].expect_text",
        "modules[0].probes[3].latency_window",
        "modules[0].probes[4].url",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:#?}");
    }
    let reason = |key: &str| {
        problems
            .iter()
            .filter(|p| p.key == key)
            .map(|p| p.reason.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    assert!(
        reason("modules[0].probes[0].json[1]").contains("exactly one comparison"),
        "{problems:?}"
    );
    assert!(reason("modules[0].probes[0].json[2]").contains("needs one comparison"));
    assert!(reason("modules[0].probes[0].latency_p95").contains("below the timeout"));
    assert!(reason("modules[0].probes[1].latency_window").contains("needs latency_p95"));
    assert!(reason("modules[0].probes[2].crit_days").contains("must not exceed warn_days"));
    assert!(reason("modules[0].probes[3].url").contains("ws:// or wss://"));
    assert!(reason("modules[0].probes[4].url").contains("credentials"));
}

#[test]
fn json_pointers_follow_rfc_6901() {
    use crate::config::health::json::pointer_problem;
    for ok in ["", "/", "/a", "/a/0/b", "/a~1b", "/m~0n", "/ "] {
        assert!(pointer_problem(ok).is_ok(), "{ok:?}");
    }
    for bad in ["a", "a/b", "/a~", "/a~2", "#/a"] {
        assert!(pointer_problem(bad).is_err(), "{bad:?}");
    }
}
