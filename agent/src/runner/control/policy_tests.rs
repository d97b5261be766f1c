//! The host policy on the real runner: remote reconfigurations that break a rule (a path, a
//! kind change, a claimed fingerprint) are refused with `config_rejected` naming the rule and
//! the old config stays; an override the policy no longer allows is dropped at start.

use std::path::Path;

use opsfleet_proto::pb;

use super::tests::{start, states};
use super::*;
use crate::config::parse_str;

fn file(dir: &Path, policy: &str) -> String {
    format!(
        "host = \"web-01\"\n[[modules]]\ntype = \"log\"\nname = \"applog\"\ninterval = \"50ms\"\n\
         paths = [\"{}\"]\n[policy]\n{policy}\n",
        dir.join("logs/app.log").display()
    )
}

fn log_entry(paths: &str) -> String {
    format!("type = \"log\"\nname = \"applog\"\ninterval = \"50ms\"\npaths = [{paths}]\n")
}

fn rejected_rules(e: ControlError) -> (Vec<String>, Vec<(String, String)>) {
    match e {
        ControlError::Rejected {
            rules, problems, ..
        } => (rules, problems),
        other => panic!("not a rejection: {other}"),
    }
}

#[tokio::test]
async fn remote_configs_that_break_a_host_rule_are_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("allowed");
    let text = file(
        dir.path(),
        &format!("log_paths = [\"{}\"]", allowed.display()),
    );
    let file_fp = parse_str(&text).expect("config").modules[0].fingerprint();
    let a = start(dir.path(), &text).await;
    let cmd = || Origin::command("");

    let err = a
        .control
        .reconfigure_toml("applog", &log_entry("\"/etc/shadow\""), cmd())
        .await
        .expect_err("outside the allowlist");
    let (rules, problems) = rejected_rules(err);
    assert_eq!(rules, ["policy.log_paths"]);
    assert_eq!(problems[0].0, "paths[0]");
    assert!(
        problems[0]
            .1
            .starts_with("refused by policy.log_paths: \"/etc/shadow\""),
        "{problems:?}"
    );

    let sentinel =
        "type = \"sentinel\"\nname = \"applog\"\npaths = [\"/tmp/x\"]\nmax_age = \"1h\"\n";
    let (rules, _) = rejected_rules(
        a.control
            .reconfigure_toml("applog", sentinel, cmd())
            .await
            .expect_err("kind change"),
    );
    assert_eq!(rules, ["policy.allow_kind_change"]);

    // The agent recomputes the fingerprint a command claims.
    let inside = log_entry(&format!("\"{}\"", allowed.join("x.log").display()));
    let real_fp = crate::config::parse_module_toml(&inside)
        .expect("valid")
        .fingerprint();
    let (rules, problems) = rejected_rules(
        a.control
            .reconfigure_toml("applog", &inside, Origin::command(&"0".repeat(64)))
            .await
            .expect_err("forged fingerprint"),
    );
    assert_eq!(rules, ["fingerprint"]);
    assert!(problems[0].1.contains(&real_fp), "{problems:?}");
    assert_eq!(a.slot("applog").fingerprint, file_fp, "old config kept");

    let reply = a
        .control
        .reconfigure_toml("applog", &inside, Origin::command(&real_fp))
        .await
        .expect("under the allowlist, honest fingerprint");
    assert_eq!(reply.fingerprint, real_fp);

    let evs = a.stop().await;
    let rejected: Vec<&pb::ConfigRejected> = evs
        .iter()
        .filter_map(|e| match &e.body {
            pb::event::Body::ConfigRejected(r) => Some(r),
            _ => None,
        })
        .collect();
    let rules: Vec<Vec<String>> = rejected.iter().map(|r| r.rules.clone()).collect();
    assert_eq!(
        rules,
        [
            vec!["policy.log_paths".to_owned()],
            vec!["policy.allow_kind_change".to_owned()],
            vec!["fingerprint".to_owned()]
        ]
    );
    assert!(rejected.iter().all(|r| r.kept_fingerprint == file_fp));
    assert!(rejected[0].reason.contains("refused by policy.log_paths"));
}

#[tokio::test]
async fn an_override_the_policy_no_longer_allows_is_dropped_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("allowed");
    let open = file(
        dir.path(),
        &format!("log_paths = [\"{}\"]", allowed.display()),
    );
    let a = start(dir.path(), &open).await;
    let inside = log_entry(&format!("\"{}\"", allowed.join("x.log").display()));
    let reply = a
        .control
        .reconfigure_toml("applog", &inside, Origin::command(""))
        .await
        .expect("allowed");
    a.stop().await;

    // Same module entry, same override record; only [policy] got stricter.
    let strict = file(dir.path(), "");
    let file_fp = parse_str(&strict).expect("config").modules[0].fingerprint();
    let b = start(dir.path(), &strict).await;
    assert_eq!(b.slot("applog").fingerprint, file_fp, "the file wins");
    assert_ne!(file_fp, reply.fingerprint);
    let evs = b.stop().await;
    let log = states(&evs, "applog");
    assert!(
        log.last().is_some_and(|s| s
            .1
            .contains("run-time config dropped (refused by policy.log_paths)")),
        "{log:?}"
    );
}
