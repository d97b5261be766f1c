//! Unit tests of ingest's pure parts: the contiguous cursor and the subject check.

use super::*;
use opsfleet_proto::pb;
use uuid::Uuid;

fn event() -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: "web-01".into(),
        seq: 1,
        time_unix_ms: 0,
        module: "heartbeat".into(),
        incarnation: Uuid::now_v7(),
        body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
    }
}

#[test]
fn cursor_takes_contiguous_sequences_and_skips_redeliveries() {
    let mut c = Cursor {
        next: 5,
        fresh: false,
    };
    assert_eq!(c.step(3), Step::Skip);
    assert_eq!(c.step(5), Step::Take);
    assert_eq!(c.step(6), Step::Take);
    assert_eq!(c.step(6), Step::Skip);
    assert_eq!(c.next, 7);
}

#[test]
fn a_skip_in_flight_repositions_without_moving_the_cursor() {
    // The case of messages handed to a process that died: 5 and 6 are pending elsewhere,
    // 7 arrives first. Taking 7 (and acking it with AckAll) would lose 5 and 6.
    let mut c = Cursor {
        next: 5,
        fresh: false,
    };
    assert_eq!(c.step(7), Step::Reposition);
    assert_eq!(
        c,
        Cursor {
            next: 5,
            fresh: false
        }
    );
}

#[test]
fn a_skip_right_after_positioning_is_a_hole_in_the_stream() {
    let mut c = Cursor {
        next: 5,
        fresh: true,
    };
    assert_eq!(c.step(3), Step::Skip); // stale redelivery does not use up freshness
    assert_eq!(c.step(9), Step::TakeAfterHole { first: 5, last: 8 });
    assert_eq!(
        c,
        Cursor {
            next: 10,
            fresh: false
        }
    );
    assert_eq!(c.step(12), Step::Reposition);
}

#[test]
fn subject_must_name_the_events_host_and_kind() {
    let bytes = event().encode_to_vec();
    assert!(decode_checked("ops.evt.web-01.heartbeat", &bytes).is_ok());
    let err = decode_checked("ops.evt.db-01.heartbeat", &bytes).unwrap_err();
    assert_eq!(err.reason(), "subject_mismatch");
    let err = decode_checked("ops.evt.web-01.disk", &bytes).unwrap_err();
    assert_eq!(err.reason(), "subject_mismatch");
    let err = decode_checked("ops.evt.web-01.heartbeat", b"\xff\xff").unwrap_err();
    assert_eq!(err.reason(), "decode");
}
