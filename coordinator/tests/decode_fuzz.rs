//! Fuzz-style property tests of the coordinator's decoders: its config file
//! (`CoordinatorConfig::load`, every problem collected) and messages from the event stream
//! (`ingest::decode_checked`: bytes and subject). Arbitrary input and structured mutations of
//! valid input give a value or a typed error, never a panic.

use std::path::Path;

use opsfleet_configcheck::testing::{edit, mutate};
use opsfleet_coordinator::config::CoordinatorConfig;
use opsfleet_coordinator::ingest::{decode_checked, Malformed};
use opsfleet_proto::{pb, subjects, EventEnvelope};
use proptest::prelude::*;
use uuid::Uuid;

const GOOD: &str = r#"name = "blue"
color = "blue"
data_dir = "/var/lib/opsfleet/blue"

[nats]
urls = ["nats://127.0.0.1:4222"]

[topology]
replicas = 1
events_max_age = "7d"
duplicate_window = "2m"
commands_max_age = "1d"
lease_ttl = "3s"

[ingest]
batch_max = 1000
ack_wait = "30s"

[http]
listen = "127.0.0.1:9465"
"#;

fn load(dir: &Path, text: &str) -> Result<(), TestCaseError> {
    let path = dir.join("coordinator.toml");
    std::fs::write(&path, text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if let Err(errors) = CoordinatorConfig::load(&path) {
        prop_assert!(
            !errors.problems.is_empty(),
            "an error without problems:\n{text}"
        );
        prop_assert_eq!(&errors.file, &path);
        for p in &errors.problems {
            prop_assert!(!p.key.is_empty() && !p.reason.is_empty(), "{p:?}");
        }
    }
    Ok(())
}

#[test]
fn the_seed_config_is_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("coordinator.toml");
    std::fs::write(&path, GOOD).expect("write");
    let cfg = CoordinatorConfig::load(&path).unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(cfg.name, "blue");
}

fn event(host: &str) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq: 1,
        time_unix_ms: 0,
        module: "heartbeat".to_owned(),
        incarnation: Uuid::now_v7(),
        body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_files_load_or_list_problems(
        edits in proptest::collection::vec(edit(), 1..6),
        garbage in any::<String>(),
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        load(dir.path(), &mutate(GOOD, &edits))?;
        load(dir.path(), &garbage)?;
    }

    #[test]
    fn stream_messages_decode_or_are_malformed(
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        subject in prop_oneof![
            Just("ops.evt.web-01.heartbeat".to_owned()),
            Just("ops.coord.web-01.heartbeat".to_owned()),
            "ops\\.(evt|coord)\\.[a-z0-9.*>-]{0,20}",
            any::<String>(),
        ],
        host in prop_oneof![Just("web-01".to_owned()), Just("db-01".to_owned())],
        use_valid in any::<bool>(),
    ) {
        let bytes = if use_valid { event(&host).encode_to_vec() } else { payload };
        match decode_checked(&subject, &bytes) {
            Ok(ev) => {
                // Accepted only when the subject names the event's own host and kind, in
                // either space (who may say what is `admit`'s business).
                let agent = subjects::event_subject(&ev.host, ev.kind());
                let coordinator = subjects::coordinator_event_subject(&ev.host, ev.kind());
                prop_assert!(subject == agent || subject == coordinator, "{}", subject);
            }
            Err(Malformed::Wire(e)) => prop_assert!(!e.reason().is_empty()),
            Err(Malformed::SubjectMismatch { host: h, .. }) => prop_assert!(!h.is_empty()),
        }
    }
}

#[test]
fn a_key_without_a_value_is_a_problem_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("coordinator.toml");
    std::fs::write(&path, "name = \"blue\"\ndata_dir =\n").expect("write");
    let errors = CoordinatorConfig::load(&path).expect_err("invalid");
    let report = errors.report();
    assert!(
        errors.problems.len() == 1 && !errors.problems[0].reason.is_empty(),
        "{report}"
    );
    println!("{report}");
}
