//! `verify_restore` and `verify_check` parsing: named periods and durations, every problem
//! reported with its key, unknown keys refused, and the canonical form loads again.

use std::time::Duration;

use crate::config::{parse_module_toml, parse_str, BackupJobConfig, ModuleConfig};

const HEAD: &str = "host = \"db-01\"\n[[modules]]\ntype = \"backup\"\n";

fn job(name: &str, extra: &str) -> String {
    format!(
        "[[modules.jobs]]\nname = \"{name}\"\nsources = [\"/srv/data\"]\ndestination = \"/var/backups/app\"\n{extra}\n"
    )
}

fn jobs(text: &str) -> Vec<BackupJobConfig> {
    let cfg = parse_str(text).expect("valid");
    let ModuleConfig::Backup(b) = &cfg.modules[0] else {
        panic!("backup")
    };
    b.jobs.clone()
}

#[test]
fn named_periods_and_durations_parse_and_default_is_off() {
    let check = "[modules.jobs.verify_check]\ncommand = [\"/bin/true\"]";
    let text = format!(
        "{HEAD}{}{}{}{}{}",
        job("a", "verify_restore = \"weekly\""),
        job("b", "verify_restore = \"daily\""),
        job("c", "verify_restore = \"monthly\""),
        job("d", &format!("verify_restore = \"2s\"\n{check}")),
        job("e", ""),
    );
    let j = jobs(&text);
    let day = Duration::from_secs(86_400);
    assert_eq!(j[0].verify_restore, Some(7 * day));
    assert_eq!(j[1].verify_restore, Some(day));
    assert_eq!(j[2].verify_restore, Some(30 * day));
    assert_eq!(j[3].verify_restore, Some(Duration::from_secs(2)));
    let c = j[3].verify_check.as_ref().expect("check");
    assert_eq!(c.timeout, super::default_verify_check_timeout());
    assert_eq!(j[4].verify_restore, None);
    assert_eq!(j[4].verify_check, None);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text =
        format!(
        "{HEAD}{}{}",
        job(
            "b",
            "verify_restore = \"0s\"\n[modules.jobs.verify_check]\ncommand = []\ntimeout = \"0s\""
        ),
        job("c", "[modules.jobs.verify_check]\ncommand = [\"fsck-dump\"]"),
    );
    let problems = parse_str(&text).expect_err("invalid");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    let want = [
        "modules[0].jobs[0].verify_restore",
        "modules[0].jobs[0].verify_check.command",
        "modules[0].jobs[0].verify_check.timeout",
        "modules[0].jobs[1].verify_check.command[0]",
    ];
    assert_eq!(keys.len(), want.len(), "{problems:#?}");
    for k in want {
        assert!(keys.contains(&k), "{k} missing from {problems:#?}");
    }
    assert!(
        problems
            .iter()
            .any(|p| p.key == want[3] && p.reason.contains("absolute")),
        "{problems:#?}"
    );
    // A period that is neither named nor a duration is refused with the value.
    let text = format!("{HEAD}{}", job("a", "verify_restore = \"fortnightly\""));
    let problems = parse_str(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.key.ends_with("verify_restore") && p.reason.contains("fortnightly")),
        "{problems:#?}"
    );
    // Unknown keys in the check's table are refused.
    let text = format!(
        "{HEAD}{}",
        job(
            "a",
            "[modules.jobs.verify_check]\ncommand = [\"/bin/true\"]\nshell = true"
        )
    );
    let problems = parse_str(&text).expect_err("invalid");
    assert!(problems[0].key.ends_with("shell"), "{problems:#?}");
}

#[test]
fn the_canonical_form_loads_again() {
    let text = format!(
        "{HEAD}{}",
        job(
            "a",
            "verify_restore = \"weekly\"\n[modules.jobs.verify_check]\ncommand = [\"/bin/true\"]\ntimeout = \"5m\""
        )
    );
    let cfg = parse_str(&text).expect("valid");
    let toml = toml::to_string(&cfg.modules[0]).expect("toml");
    let again = parse_module_toml(&toml).expect("reloads");
    assert_eq!(again, cfg.modules[0]);
}
