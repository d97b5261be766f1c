//! Notifier config tests: validation of `[notify]` alone and inside a coordinator config file,
//! secrets from the environment and their redaction, and the demo config's sample.

use std::time::Duration;

use super::*;

#[test]
fn secrets_come_from_the_environment_and_a_missing_one_is_an_error() {
    let mut r = RouteConfig::new("tg", RouteKind::Telegram);
    r.bot_token_env = Some("OPS_TEST_TG_TOKEN".into());
    r.chat_id = Some("-1".into());
    let cfg = NotifyConfig { routes: vec![r] };
    let found = |_: &str| Ok("999:from-env".to_owned());
    let n = Notifier::from_config_with(&cfg, &found).unwrap();
    assert_eq!(n.routes(), ["tg"]);
    let missing = |_: &str| Err(std::env::VarError::NotPresent);
    let err = Notifier::from_config_with(&cfg, &missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        "notify route tg: environment variable OPS_TEST_TG_TOKEN is not set or not unicode"
    );
}

#[test]
fn secrets_are_neither_printed_nor_serialised() {
    let mut r = RouteConfig::new("chat", RouteKind::Slack);
    r.url = Some(Secret(
        "https://hooks.example.invalid/T0/B0/very-secret".into(),
    ));
    let cfg = NotifyConfig { routes: vec![r] };
    let json = serde_json::to_string(&cfg).unwrap();
    let debug = format!("{cfg:?} {:?}", Notifier::from_config(&cfg).unwrap());
    for text in [json, debug] {
        assert!(!text.contains("very-secret"), "{text}");
    }
}

#[test]
fn every_config_problem_is_reported() {
    let mut dup = RouteConfig::new("a", RouteKind::Webhook);
    dup.url = Some(Secret("ftp://x".into()));
    let mut a2 = RouteConfig::new("a", RouteKind::Slack);
    a2.url = Some(Secret("https://x".into()));
    a2.url_env = Some("X".into());
    let mut tg = RouteConfig::new("tg.1", RouteKind::Telegram);
    tg.url = Some(Secret("https://x".into()));
    tg.max_attempts = 0;
    tg.rate_limit.burst = 0;
    tg.min_severity = Some("urgent".into());
    tg.retry_max_delay = Duration::from_millis(1);
    let cfg = NotifyConfig {
        routes: vec![dup, a2, tg],
    };
    let keys: Vec<String> = cfg.problems().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "routes[0].url",
            "routes[1].name",
            "routes[1].url",
            "routes[2].name",
            "routes[2].bot_token",
            "routes[2].chat_id",
            "routes[2].url",
            "routes[2].max_attempts",
            "routes[2].retry_max_delay",
            "routes[2].rate_limit.burst",
            "routes[2].min_severity",
        ]
    );
    let err = Notifier::from_config(&cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "notify route a: url: must start with http:// or https://"
    );
}

/// The commented-out sample in the demo config stays valid when uncommented.
#[test]
fn the_deploy_sample_parses_when_uncommented() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/local/coordinator-blue.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The demo's console users file, as scripts/cluster.sh writes it.
    std::fs::write(
        dir.path().join("console-users.toml"),
        format!(
            "[[user]]\nname = \"demo\"\nrole = \"operator\"\ntoken_sha256 = \"{}\"\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let cluster_dir = dir.path().display().to_string();
    let mut out = String::new();
    for line in text.lines() {
        let line = line
            .replace("@CLUSTER_DIR@", &cluster_dir)
            .replace("@NATS_URL@", "nats://127.0.0.1:4222");
        // `# key = ...` / `# [[notify.routes]]` lines of the sample, not prose comments.
        let uncommented = line
            .strip_prefix("# ")
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .filter(|l| !l.starts_with("# "));
        out.push_str(uncommented.unwrap_or(&line));
        out.push('\n');
    }
    let file = dir.path().join("coordinator.toml");
    std::fs::write(&file, &out).unwrap();
    let cfg = crate::config::CoordinatorConfig::load(&file)
        .map_err(|e| e.report())
        .unwrap();
    let names: Vec<&str> = cfg.notify.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ops-webhook",
            "ops-slack",
            "oncall-telegram",
            "alertmanager",
            "oncall-pagerduty"
        ],
        "{out}"
    );
    // Long enough for a PagerDuty routing key (32 letters and digits).
    let env = |_: &str| Ok("secretfromenv0123456789abcdefghi".to_owned());
    let n = Notifier::from_config_with(&cfg.notify, &env).unwrap();
    assert_eq!(n.routes(), names);
}

/// Problems of `[notify]` are reported with the rest of the file's, each with its key.
#[test]
fn a_bad_notify_section_is_refused_with_every_problem() {
    let text = "\
name = \"blue\"
data_dir = \"/x\"

[notify]

[[notify.routes]]
name = \"chat\"
kind = \"slack\"

[[notify.routes]]
name = \"chat\"
kind = \"telegram\"
bot_token_env = \"OPS_TG\"
rate_limit = { per_minute = 0 }
";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coordinator.toml");
    std::fs::write(&file, text).unwrap();
    let err = crate::config::CoordinatorConfig::load(&file).unwrap_err();
    let got: Vec<(String, String)> = err
        .problems
        .iter()
        .map(|p| (p.key.clone(), p.reason.clone()))
        .collect();
    // In file order: a missing key is at its route's `[[notify.routes]]` line.
    let want = [
        ("notify.routes[0].url", "url or url_env is required"),
        ("notify.routes[1].chat_id", "is required for kind telegram"),
        ("notify.routes[1].name", "duplicate route name \"chat\""),
        (
            "notify.routes[1].rate_limit.per_minute",
            "must be at least 1",
        ),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect();
    assert_eq!(got, want, "{}", err.report());
    let lines: Vec<Option<usize>> = err.problems.iter().map(|p| p.line).collect();
    assert_eq!(
        lines,
        [Some(6), Some(10), Some(11), Some(14)],
        "{}",
        err.report()
    );

    // An unknown key inside a route is named too.
    std::fs::write(&file, "name = \"blue\"\ndata_dir = \"/x\"\n[notify]\n[[notify.routes]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://x\"\nretries = 3\n").unwrap();
    let err = crate::config::CoordinatorConfig::load(&file).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{}", err.report());
    assert!(
        err.problems[0].reason.contains("retries"),
        "{}",
        err.report()
    );
}

#[test]
fn mirror_silences_defaults_on_and_belongs_to_alertmanager_routes() {
    let am: RouteConfig =
        toml::from_str("name = \"am\"\nkind = \"alertmanager\"\nurl = \"http://x\"\n").unwrap();
    assert!(am.mirror_silences, "default true");
    let off: RouteConfig = toml::from_str(
        "name = \"am\"\nkind = \"alertmanager\"\nurl = \"http://x\"\nmirror_silences = false\n",
    )
    .unwrap();
    let cfg = NotifyConfig { routes: vec![off] };
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let hook: RouteConfig = toml::from_str(
        "name = \"h\"\nkind = \"webhook\"\nurl = \"http://x\"\nmirror_silences = false\n",
    )
    .unwrap();
    let cfg = NotifyConfig { routes: vec![hook] };
    assert_eq!(
        cfg.problems(),
        [(
            "routes[0].mirror_silences".to_owned(),
            "not used by kind webhook".to_owned()
        )]
    );
}
