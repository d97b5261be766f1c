//! Fuzz-style property tests of every decoder in the wire contract: events (`EventEnvelope`,
//! from bytes and from a raw `pb::Event`), commands (`pb::Command`) and the JSON requests of
//! the query API. Arbitrary input and structured mutations of valid messages must give either
//! a value or a typed error, never a panic; a validated event always satisfies its invariants.

use opsfleet_proto::api::{CommandRequest, CommandsRequest, FailoverRequest, StatusRequest};
use opsfleet_proto::{pb, subjects, EventEnvelope, WireError};
use proptest::prelude::*;
use prost::Message;
use uuid::Uuid;

const REASONS: [&str; 5] = [
    "decode",
    "missing_field",
    "bad_uuid",
    "bad_name",
    "zero_seq",
];

fn valid_event(seq: u64) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: "web-01".into(),
        seq,
        time_unix_ms: 1_790_000_000_000,
        module: "heartbeat".into(),
        incarnation: Uuid::now_v7(),
        body: pb::event::Body::Heartbeat(pb::Heartbeat {
            uptime_ms: 1_000,
            interval_ms: 100,
            ..Default::default()
        }),
    }
}

fn valid_command() -> pb::Command {
    pb::Command {
        id: Uuid::now_v7().to_string(),
        epoch: 3,
        issued_by: "ops@example".into(),
        target: "web-01".into(),
        deadline_unix_ms: 1_790_000_060_000,
        issued_unix_ms: 1_790_000_000_000,
        action: Some(pb::command::Action::ConfigApply(pb::ConfigApply {
            module: "disk".into(),
            config_toml: "type = \"disk\"\ninterval = \"10s\"\n".into(),
            fingerprint: "ab".repeat(32),
        })),
    }
}

/// One structural change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, n: usize },
    Duplicate { from: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Remove { at, n }),
        (any::<usize>(), 1usize..32).prop_map(|(from, len)| Mutation::Duplicate { from, len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match m {
        Mutation::Flip { at, mask } => bytes[at % n] ^= mask,
        Mutation::Truncate { len } => bytes.truncate(len % n),
        Mutation::Insert { at, bytes: b } => {
            let at = at % (n + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Remove { at, n: k } => {
            let at = at % n;
            let end = (at + k).min(n);
            bytes.drain(at..end);
        }
        Mutation::Duplicate { from, len } => {
            let from = from % n;
            let end = (from + len).min(n);
            let copy: Vec<u8> = bytes[from..end].to_vec();
            bytes.extend(copy);
        }
    }
}

/// What a validated event must satisfy, whatever bytes it came from.
fn check_valid(ev: &EventEnvelope) -> Result<(), TestCaseError> {
    prop_assert!(ev.seq >= 1);
    prop_assert!(
        subjects::validate_token(&ev.host).is_ok(),
        "host {:?}",
        ev.host
    );
    prop_assert!(
        subjects::validate_token(&ev.module).is_ok(),
        "module {:?}",
        ev.module
    );
    // It re-encodes and decodes to itself.
    prop_assert_eq!(&EventEnvelope::decode(&ev.encode_to_vec()).unwrap(), ev);
    Ok(())
}

fn check_error(e: &WireError) -> Result<(), TestCaseError> {
    prop_assert!(REASONS.contains(&e.reason()), "reason {}", e.reason());
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

/// Strings that are sometimes valid names or UUIDs and sometimes nearly so.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web-01".to_owned()),
        Just(String::new()),
        Just("a".repeat(65)),
        Just("db.01".to_owned()),
        Just(Uuid::now_v7().to_string()),
        "[A-Za-z0-9_.*> -]{0,70}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_events_decode_or_fail_typed(
        seq in 1u64..1_000_000,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = valid_event(seq).encode_to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        match EventEnvelope::decode(&bytes) {
            Ok(ev) => check_valid(&ev)?,
            Err(e) => check_error(&e)?,
        }
    }

    #[test]
    fn raw_events_with_arbitrary_fields_validate_or_fail_typed(
        id in name_like(),
        host in name_like(),
        seq in prop_oneof![Just(0u64), any::<u64>()],
        module in name_like(),
        incarnation in name_like(),
        has_body in any::<bool>(),
    ) {
        let raw = pb::Event {
            id,
            host,
            seq,
            time_unix_ms: 0,
            module,
            incarnation,
            body: has_body.then(|| pb::event::Body::Heartbeat(pb::Heartbeat::default())),
        };
        // Through bytes, as on the wire, and directly.
        let from_bytes = EventEnvelope::decode(&raw.encode_to_vec());
        let direct = EventEnvelope::try_from(raw);
        match (&from_bytes, &direct) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a, b);
                check_valid(a)?;
            }
            (Err(a), Err(b)) => {
                prop_assert_eq!(a.reason(), b.reason());
                check_error(a)?;
            }
            _ => prop_assert!(false, "bytes and direct disagree: {from_bytes:?} / {direct:?}"),
        }
    }

    #[test]
    fn arbitrary_and_mutated_commands_never_panic(
        garbage in proptest::collection::vec(any::<u8>(), 0..512),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        // A decode error is prost's typed error; a decoded command may carry anything.
        if let Ok(cmd) = pb::Command::decode(garbage.as_slice()) {
            let _ = cmd.encode_to_vec();
        }
        let mut bytes = valid_command().encode_to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        match pb::Command::decode(bytes.as_slice()) {
            Ok(cmd) => prop_assert_eq!(pb::Command::decode(cmd.encode_to_vec().as_slice()).unwrap(), cmd),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn api_requests_from_arbitrary_bytes_never_panic(
        garbage in proptest::collection::vec(any::<u8>(), 0..256),
        text in any::<String>(),
    ) {
        for input in [garbage.as_slice(), text.as_bytes()] {
            let _ = serde_json::from_slice::<StatusRequest>(input);
            let _ = serde_json::from_slice::<FailoverRequest>(input);
            let _ = serde_json::from_slice::<CommandRequest>(input);
            let _ = serde_json::from_slice::<CommandsRequest>(input);
        }
    }

    #[test]
    fn mutated_api_requests_parse_or_fail_typed(
        host in name_like(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let valid = serde_json::to_vec(&StatusRequest { host: Some(host), ..Default::default() }).unwrap();
        prop_assert!(serde_json::from_slice::<StatusRequest>(&valid).is_ok());
        let mut bytes = valid;
        for m in &mutations {
            apply(&mut bytes, m);
        }
        match serde_json::from_slice::<StatusRequest>(&bytes) {
            Ok(req) => {
                let again = serde_json::to_vec(&req).unwrap();
                prop_assert_eq!(serde_json::from_slice::<StatusRequest>(&again).unwrap(), req);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
