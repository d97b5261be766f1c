//! Alertmanager and PagerDuty routes against a real local receiver, per-route matching in
//! `routes_for`/`send`, Alertmanager re-sends, and the config refusals of the new keys.

use std::time::Duration;

use super::config::{PAGERDUTY_URL, ROUTING_KEY_LEN};
use super::tests::{notifier, route, sample, WAIT};
use super::*;
use opsfleet_proto::api::AlertState;
use opsfleet_tests::{Receiver, Reply};

const KEY: &str = "R0123456789abcdefghijklmnopqrstu";

fn pagerduty(name: &str, url: &str) -> RouteConfig {
    let mut r = route(name, RouteKind::Pagerduty, url);
    r.routing_key = Some(Secret(KEY.into()));
    r
}

#[tokio::test]
async fn pagerduty_triggers_and_resolves_and_a_400_is_not_retried() {
    let rx = Receiver::start().await.unwrap();
    let n = notifier(vec![pagerduty("pd", &rx.url("/v2/enqueue"))]);
    rx.answer_next(2, Reply::status(202));
    assert_eq!(
        n.send("pd", &sample()).await,
        Delivery::Sent { attempts: 1 }
    );
    let mut resolved = sample();
    resolved.state = AlertState::Resolved;
    assert_eq!(
        n.send("pd", &resolved).await,
        Delivery::Sent { attempts: 1 }
    );
    let got = rx.wait_for(2, WAIT).await.unwrap();
    assert_eq!(got[0].path, "/v2/enqueue");
    assert_eq!(got[0].body["event_action"], "trigger");
    assert_eq!(got[1].body["event_action"], "resolve");
    assert_eq!(got[0].body["dedup_key"], "a1");
    assert_eq!(got[1].body["dedup_key"], "a1");
    assert_eq!(got[0].body["routing_key"], KEY);

    rx.answer_next(1, Reply::status(429));
    rx.answer_next(1, Reply::status(202));
    assert_eq!(
        n.send("pd", &sample()).await,
        Delivery::Sent { attempts: 2 }
    );
    rx.answer_next(1, Reply::status(400));
    match n.send("pd", &sample()).await {
        Delivery::Failed {
            attempts: 1,
            reason,
        } => assert!(reason.starts_with("HTTP 400"), "{reason}"),
        other => panic!("a 400 is final: {other:?}"),
    }
}

#[tokio::test]
async fn alertmanager_posts_an_array_and_re_sends_firing_alerts() {
    let rx = Receiver::start().await.unwrap();
    let mut r = route("am", RouteKind::Alertmanager, &rx.url(""));
    r.resend_interval = Duration::from_millis(200);
    let n = notifier(vec![r]);
    assert_eq!(
        n.send("am", &sample()).await,
        Delivery::Sent { attempts: 1 }
    );
    let got = rx.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].path, "/api/v2/alerts");
    assert_eq!(got[0].body[0]["labels"]["alertname"], "disk_pressure");

    let firing = [Firing {
        notification: sample(),
        routes: vec!["am".into()],
    }];
    let elsewhere = [Firing {
        notification: sample(),
        routes: vec!["other".into()],
    }];
    assert_eq!(
        n.refresh(&elsewhere, &|| true).await,
        0,
        "not handled on this route"
    );
    assert_eq!(
        n.refresh(&firing, &|| true).await,
        0,
        "first sight: not due yet"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(n.refresh(&firing, &|| true).await, 1);
    assert_eq!(n.refresh(&firing, &|| true).await, 0, "once per interval");
    let got = rx.wait_for(2, WAIT).await.unwrap();
    assert_eq!(got[1].body[0]["labels"]["host"], "db-01");
    assert_eq!(
        n.refresh(&[], &|| true).await,
        0,
        "resolved: nothing to re-send"
    );
}

#[tokio::test]
async fn a_deposed_active_re_sends_nothing() {
    let rx = Receiver::start().await.unwrap();
    let mut r = route("am", RouteKind::Alertmanager, &rx.url(""));
    r.resend_interval = Duration::from_millis(200);
    let n = notifier(vec![r]);
    let firing = [Firing {
        notification: sample(),
        routes: vec!["am".into()],
    }];
    assert_eq!(
        n.refresh(&firing, &|| true).await,
        0,
        "first sight: not due yet"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        n.refresh(&firing, &|| false).await,
        0,
        "due, but no longer acting"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.requests().is_empty(), "nothing posted once acting ended");
}

#[tokio::test]
async fn routes_match_by_rule_host_glob_and_label() {
    let mut web = route("web", RouteKind::Webhook, "http://127.0.0.1:9/x");
    web.hosts = vec!["web-*".into()];
    let mut prod = route("prod", RouteKind::Webhook, "http://127.0.0.1:9/x");
    prod.labels = [("env".to_owned(), "prod".to_owned())].into();
    prod.rules = vec!["disk_pressure".into(), "host_lost".into()];
    let n = notifier(vec![web, prod]);
    let mut x = sample();
    assert!(n.routes_for(&x).is_empty(), "db-01 without labels");
    x.labels.insert("env".into(), "prod".into());
    assert_eq!(n.routes_for(&x), ["prod"]);
    x.host = "web-02".into();
    assert_eq!(n.routes_for(&x), ["web", "prod"]);
    x.rule = "log_errors".into();
    assert_eq!(n.routes_for(&x), ["web"]);
    x.host = "db-01".into();
    assert!(matches!(n.send("prod", &x).await, Delivery::Skipped { .. }));
}

/// A resolve goes where the firing went even if the host's labels changed in between.
#[test]
fn a_resolve_follows_the_firing_whatever_the_labels_say_now() {
    let mut prod = route("prod", RouteKind::Webhook, "http://127.0.0.1:9/x");
    prod.labels = [("env".to_owned(), "prod".to_owned())].into();
    let n = notifier(vec![prod]);
    let mut x = sample();
    x.routes_before = vec!["prod".into()];
    assert!(
        n.routes_for(&x).is_empty(),
        "a new firing still has to match"
    );
    x.state = AlertState::Resolved;
    assert_eq!(n.routes_for(&x), ["prod"]);
    x.routes_before.clear();
    assert!(n.routes_for(&x).is_empty());
}

#[test]
fn new_kinds_refuse_what_they_cannot_use() {
    let mut no_key = RouteConfig::new("pd", RouteKind::Pagerduty);
    no_key.hosts = vec!["web-*".into(), "web/[0]".into()];
    let mut short = RouteConfig::new("pd2", RouteKind::Pagerduty);
    short.routing_key = Some(Secret("abc".into()));
    short.chat_id = Some("-1".into());
    short.url = Some(Secret("ftp://x".into()));
    let mut am = RouteConfig::new("am", RouteKind::Alertmanager);
    am.routing_key_env = Some("PD".into());
    am.resend_interval = Duration::from_millis(1);
    am.rules = vec!["".into()];
    am.labels = [(String::new(), "x".to_owned())].into();
    let mut hook = RouteConfig::new("hook", RouteKind::Webhook);
    hook.url = Some(Secret("http://x".into()));
    hook.resend_interval = Duration::from_secs(5);
    let cfg = NotifyConfig {
        routes: vec![no_key, short, am, hook],
    };
    let keys: Vec<String> = cfg.problems().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "routes[0].routing_key",
            "routes[0].hosts[1]",
            "routes[1].routing_key",
            "routes[1].url",
            "routes[1].chat_id",
            "routes[2].url",
            "routes[2].routing_key_env",
            "routes[2].resend_interval",
            "routes[2].rules[0]",
            "routes[2].labels.",
            "routes[3].resend_interval",
        ]
    );
}

#[test]
fn pagerduty_defaults_its_url_and_checks_a_key_from_the_environment() {
    let mut r = RouteConfig::new("pd", RouteKind::Pagerduty);
    r.routing_key_env = Some("OPS_PD".into());
    let cfg = NotifyConfig { routes: vec![r] };
    assert!(cfg.problems().is_empty());
    let good = |_: &str| Ok("k".repeat(ROUTING_KEY_LEN));
    let n = Notifier::from_config_with(&cfg, &good).unwrap();
    assert_eq!(n.routes(), ["pd"]);
    let bad = |_: &str| Ok("too-short".to_owned());
    let err = Notifier::from_config_with(&cfg, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "notify route pd: routing_key_env: a PagerDuty routing key is 32 letters and digits"
    );
    assert!(PAGERDUTY_URL.starts_with("https://events.pagerduty.com/"));
}

/// Unknown keys in a new kind's route are refused by name, with the file's other problems.
#[test]
fn a_coordinator_file_with_bad_new_routes_is_refused() {
    let text = "\
name = \"blue\"
data_dir = \"/x\"

[[notify.routes]]
name = \"pd\"
kind = \"pagerduty\"
routing_key = \"R0123456789abcdefghijklmnopqrstu\"
severity_map = { critical = \"error\" }
";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coordinator.toml");
    std::fs::write(&file, text).unwrap();
    let err = crate::config::CoordinatorConfig::load(&file).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{}", err.report());
    assert!(
        err.problems[0].reason.contains("severity_map"),
        "{}",
        err.report()
    );

    let text = "\
name = \"blue\"
data_dir = \"/x\"

[[notify.routes]]
name = \"am\"
kind = \"alertmanager\"
hosts = [\"web-*\", \"\"]

[[notify.routes]]
name = \"pd\"
kind = \"pagerduty\"
labels = { env = \"prod\" }
";
    std::fs::write(&file, text).unwrap();
    let err = crate::config::CoordinatorConfig::load(&file).unwrap_err();
    let got: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        got,
        [
            "notify.routes[0].url",
            "notify.routes[0].hosts[1]",
            "notify.routes[1].routing_key"
        ],
        "{}",
        err.report()
    );
}

/// Every ```toml block of docs/notifiers.md loads as a coordinator config.
#[test]
fn the_docs_examples_load() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/notifiers.md");
    let text = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(toml, _)| toml))
        .collect();
    assert_eq!(blocks.len(), 3, "one example per kind section");
    let dir = tempfile::tempdir().unwrap();
    let mut kinds = Vec::new();
    for (i, toml) in blocks.iter().enumerate() {
        let file = dir.path().join(format!("example-{i}.toml"));
        std::fs::write(&file, toml).unwrap();
        let cfg = crate::config::CoordinatorConfig::load(&file)
            .map_err(|e| e.report())
            .unwrap_or_else(|e| panic!("example {i}:\n{toml}\n{e}"));
        let env = |_: &str| Ok("R0123456789abcdefghijklmnopqrstu".to_owned());
        Notifier::from_config_with(&cfg.notify, &env).unwrap();
        kinds.extend(cfg.notify.routes.iter().map(|r| r.kind));
    }
    for kind in [RouteKind::Alertmanager, RouteKind::Pagerduty] {
        assert!(kinds.contains(&kind), "{kind:?} has an example");
    }
}
