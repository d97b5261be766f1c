//! Fuzz-style property tests of the agent's decoders: the config file (`parse_str`), one module
//! config handed in at run time (`parse_module_toml`, the payload of config-apply commands)
//! and commands from the bus (`pb::Command` bytes through `validate` and `decide`). Arbitrary
//! text and structured mutations of valid input give a value or every problem found, never a
//! panic; a problem always names a key and a reason.

use opsfleet_agent::commands::{decide, validate, Catalog, Outcome};
use opsfleet_agent::config::{parse_module_toml, parse_str};
use opsfleet_configcheck::testing::{edit, mutate};
use opsfleet_proto::pb;
use proptest::prelude::*;
use prost::Message;

const GOOD: &str = r#"host = "web-01"
data_dir = "/tmp/opsfleet-fuzz-agent"
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
[[modules]]
type = "log"
interval = "200ms"
paths = ["/var/log/app.log"]
[[modules]]
type = "sentinel"
interval = "300ms"
paths = ["/var/run/app.stamp"]
max_age = "1h"
[[modules]]
type = "health"
interval = "300ms"
[[modules.probes]]
name = "db"
type = "tcp"
address = "127.0.0.1:5432"
timeout = "300ms"
[[modules]]
type = "backup"
interval = "300ms"
[[modules.jobs]]
name = "shop"
sources = ["/srv/shop"]
destination = "/var/backups/shop"
schedule = "1h"
[[modules]]
type = "janitor"
interval = "300ms"
[[modules.roots]]
path = "/srv/runs"
older_than = "1d"
"#;

/// Module entries as a config-apply command carries them.
const MODULES: [&str; 4] = [
    "type = \"disk\"\nname = \"disk\"\ninterval = \"10s\"\npaths = [\"/\"]\n",
    "type = \"log\"\ninterval = \"1s\"\npaths = [\"/var/log/app.log\"]\n",
    "type = \"heartbeat\"\ninterval = \"10s\"\n",
    "type = \"health\"\ninterval = \"1s\"\n[[probes]]\nname = \"db\"\ntype = \"tcp\"\naddress = \"127.0.0.1:5432\"\ntimeout = \"300ms\"\n",
];

fn catalog() -> Catalog {
    Catalog::from_config(&parse_str(GOOD).expect("the seed config is valid"))
}

#[test]
fn seeds_are_valid() {
    let cfg = parse_str(GOOD).expect("valid");
    assert_eq!(cfg.modules.len(), 7);
    for m in MODULES {
        parse_module_toml(m).unwrap_or_else(|p| panic!("{m}: {p:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_text_parses_or_lists_problems(
        edits in proptest::collection::vec(edit(), 1..6),
        garbage in any::<String>(),
    ) {
        for text in [mutate(GOOD, &edits), garbage] {
            if let Err(problems) = parse_str(&text) {
                prop_assert!(!problems.is_empty(), "an error without problems for:\n{text}");
                for p in &problems {
                    prop_assert!(!p.key.is_empty() && !p.reason.is_empty(), "{p:?}");
                }
            }
        }
    }

    #[test]
    fn module_payloads_parse_or_list_problems(
        which in 0..MODULES.len(),
        edits in proptest::collection::vec(edit(), 1..5),
        garbage in any::<String>(),
    ) {
        for text in [mutate(MODULES[which], &edits), garbage] {
            if let Err(problems) = parse_module_toml(&text) {
                prop_assert!(!problems.is_empty(), "an error without problems for:\n{text}");
                for (key, reason) in &problems {
                    prop_assert!(!key.is_empty() && !reason.is_empty(), "{key:?}: {reason:?}");
                }
            }
        }
    }

    #[test]
    fn commands_from_arbitrary_bytes_are_decided_without_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        highest in any::<u64>(),
        seen in any::<bool>(),
        now in any::<i64>(),
    ) {
        let catalog = catalog();
        if let Ok(cmd) = pb::Command::decode(bytes.as_slice()) {
            let valid = validate(cmd.action.as_ref(), &catalog);
            let v = decide("web-01", &cmd, highest, seen, now, valid);
            prop_assert!(v.highest_epoch >= highest, "the stored epoch went down");
            if v.outcome == Outcome::Accept {
                prop_assert_eq!(cmd.target.as_str(), "web-01");
                prop_assert!(cmd.action.is_some());
            }
        }
    }

    #[test]
    fn config_apply_commands_with_mutated_payloads_are_decided(
        which in 0..MODULES.len(),
        edits in proptest::collection::vec(edit(), 0..5),
        module in prop_oneof![Just("disk".to_owned()), Just("log".to_owned()), "[a-z]{0,8}"],
    ) {
        let cmd = pb::Command {
            id: "01a2343a-0000-7000-8000-000000000001".into(),
            epoch: 2,
            issued_by: "ops@example".into(),
            target: "web-01".into(),
            deadline_unix_ms: 0,
            issued_unix_ms: 0,
            action: Some(pb::command::Action::ConfigApply(pb::ConfigApply {
                module,
                config_toml: mutate(MODULES[which], &edits),
                fingerprint: String::new(),
            })),
        };
        // Through the wire and back, then the agent's checks, then the payload's own parser.
        let cmd = pb::Command::decode(cmd.encode_to_vec().as_slice()).expect("round trip");
        let valid = validate(cmd.action.as_ref(), &catalog());
        let v = decide("web-01", &cmd, 1, false, 0, valid);
        prop_assert!(v.highest_epoch == 2);
        if let Some(pb::command::Action::ConfigApply(c)) = &cmd.action {
            let _ = parse_module_toml(&c.config_toml);
        }
    }
}

#[test]
fn a_key_without_a_value_is_a_problem_with_a_reason() {
    for text in ["A=", "host =", "[nats]\nurls ="] {
        let problems = parse_str(text).expect_err("invalid");
        assert!(
            problems.iter().all(|p| !p.reason.is_empty()),
            "{text:?}: {problems:?}"
        );
        let problems = parse_module_toml(text).expect_err("invalid");
        assert!(
            problems.iter().all(|(_, r)| !r.is_empty()),
            "{text:?}: {problems:?}"
        );
    }
}
