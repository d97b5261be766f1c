//! Unit tests of the outbox on temp dirs: seqs, incarnation, overflow, removal, locking.

use opsfleet_proto::EventEnvelope;

use super::*;

fn hb(module: &str) -> NewEvent {
    NewEvent {
        module: module.to_owned(),
        time_unix_ms: 1_790_000_000_000,
        body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
    }
}

fn open(dir: &Path, max: u64) -> Outbox {
    Outbox::open(&dir.join("agent.sled"), "web-01", max).expect("open")
}

#[tokio::test]
async fn seqs_are_gap_free_across_reopen_and_incarnation_is_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inc, first) = {
        let ob = open(dir.path(), 100);
        let out = ob
            .append(vec![hb("heartbeat"), hb("disk")])
            .await
            .expect("append");
        assert_eq!(out.seqs, [1, 2]);
        (ob.incarnation(), out)
    };
    assert_eq!(first.dropped, 0);
    let ob = open(dir.path(), 100);
    assert_eq!(ob.incarnation(), inc);
    assert_eq!(ob.last_seq(), 2);
    assert_eq!(ob.pending(), 2);
    let out = ob.append(vec![hb("heartbeat")]).await.expect("append");
    assert_eq!(out.seqs, [3]);
    let evs = ob.pending_events().expect("events");
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(evs
        .iter()
        .all(|e| e.incarnation == inc && e.host == "web-01"));
    assert_eq!(evs[1].module, "disk");
}

#[tokio::test]
async fn seq_survives_emptying_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ob = open(dir.path(), 100);
        ob.append(vec![hb("a"), hb("b")]).await.expect("append");
        ob.remove(1).expect("remove");
        ob.remove(2).expect("remove");
        ob.flush().await.expect("flush");
    }
    let ob = open(dir.path(), 100);
    assert_eq!(ob.pending(), 0);
    assert_eq!(ob.append(vec![hb("a")]).await.expect("append").seqs, [3]);
}

#[tokio::test]
async fn remove_then_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ob = open(dir.path(), 100);
        ob.append(vec![hb("a"), hb("b"), hb("c")])
            .await
            .expect("append");
        let first = ob.first_pending().expect("read").expect("some");
        assert_eq!(first.seq, 1);
        assert_eq!(first.subject, "ops.evt.web-01.heartbeat");
        ob.remove(1).expect("remove");
        ob.remove(1).expect("second remove is a no-op");
        assert_eq!(ob.pending(), 2);
        ob.flush().await.expect("flush");
    }
    let ob = open(dir.path(), 100);
    assert_eq!(ob.pending(), 2);
    let first = ob.first_pending().expect("read").expect("some");
    assert_eq!(first.seq, 2);
    let env = EventEnvelope::decode(&first.bytes).expect("decodes");
    assert_eq!(env.id.to_string(), first.id);
    assert_eq!(env.module, "b");
}

#[tokio::test]
async fn overflow_is_reported_once_with_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ob = open(dir.path(), 3);
    let out = ob
        .append(vec![
            hb("heartbeat"),
            hb("disk"),
            hb("disk"),
            hb("disk"),
            hb("heartbeat"),
        ])
        .await
        .expect("append");
    assert_eq!(out.seqs, [1, 2, 3]);
    assert_eq!(out.dropped, 2);
    // Still full: dropped again, nothing written.
    let out = ob.append(vec![hb("disk")]).await.expect("append");
    assert!(out.seqs.is_empty());
    assert_eq!(ob.unreported_drops(), 3);
    // Room for two: the drop report first, then one new event.
    ob.remove(1).expect("remove");
    ob.remove(2).expect("remove");
    let out = ob.append(vec![hb("heartbeat")]).await.expect("append");
    assert_eq!(out.seqs, [4, 5]);
    assert!(out.reported_drops);
    // More room later: no second report.
    ob.remove(3).expect("remove");
    let out = ob.append(vec![]).await.expect("append");
    assert!(out.seqs.is_empty());

    let evs = ob.pending_events().expect("events");
    let reports: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.body {
            pb::event::Body::EventsDropped(d) => Some((e, d.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 1);
    let (env, d) = &reports[0];
    assert_eq!(env.module, "agent");
    assert_eq!(env.seq, 4);
    assert_eq!(d.count, 3);
    assert_eq!(d.by_module.get("disk"), Some(&2));
    assert_eq!(d.by_module.get("heartbeat"), Some(&1));
    assert_eq!(d.first_dropped_unix_ms, 1_790_000_000_000);
    assert_eq!(ob.unreported_drops(), 0);
}

#[tokio::test]
async fn unreported_drops_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ob = open(dir.path(), 1);
        ob.append(vec![hb("a"), hb("b")]).await.expect("append");
    }
    let ob = open(dir.path(), 1);
    assert_eq!(ob.unreported_drops(), 1);
    ob.remove(1).expect("remove");
    let out = ob.append(vec![]).await.expect("append");
    assert!(out.reported_drops);
    assert_eq!(out.seqs, [2]);
}

#[tokio::test]
async fn a_second_open_is_refused_as_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(dir.path(), 10);
    let err = Outbox::open(&dir.path().join("agent.sled"), "web-01", 10)
        .err()
        .expect("locked");
    assert!(matches!(err, OutboxError::Locked { .. }), "{err}");
    let missing = Outbox::open_existing(&dir.path().join("nope.sled"), "web-01").err();
    assert!(matches!(missing, Some(OutboxError::NotFound { .. })));
}

#[tokio::test]
async fn module_state_commits_with_events_and_reads_back_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ob = open(dir.path(), 100);
        let out = ob
            .append_with_state(
                vec![hb("log")],
                vec![
                    StateWrite {
                        module: "log".into(),
                        key: "f/1.2".into(),
                        value: Some(b"cursor-1".to_vec()),
                    },
                    StateWrite {
                        module: "log".into(),
                        key: "init".into(),
                        value: Some(b"1".to_vec()),
                    },
                    StateWrite {
                        module: "log-b".into(),
                        key: "x".into(),
                        value: Some(b"other module".to_vec()),
                    },
                ],
            )
            .await
            .expect("append");
        assert_eq!(out.seqs, [1]);
        // State alone (no events) is written too, and a delete removes a key.
        let out = ob
            .append_with_state(
                Vec::new(),
                vec![
                    StateWrite {
                        module: "log".into(),
                        key: "f/1.2".into(),
                        value: Some(b"cursor-2".to_vec()),
                    },
                    StateWrite {
                        module: "log".into(),
                        key: "init".into(),
                        value: None,
                    },
                ],
            )
            .await
            .expect("append");
        assert!(out.seqs.is_empty());
    }
    let ob = open(dir.path(), 100);
    assert_eq!(ob.pending(), 1);
    assert_eq!(
        ob.module_state("log").expect("state"),
        [("f/1.2".to_owned(), b"cursor-2".to_vec())]
    );
    assert_eq!(
        ob.module_state("log-b").expect("state"),
        [("x".to_owned(), b"other module".to_vec())]
    );
    assert!(ob.module_state("lo").expect("state").is_empty());
    // State keys are not events.
    assert_eq!(ob.pending_events().expect("events").len(), 1);
}

#[tokio::test]
async fn module_state_is_kept_when_the_outbox_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ob = open(dir.path(), 1);
    ob.append(vec![hb("a")]).await.expect("append");
    let out = ob
        .append_with_state(
            vec![hb("log")],
            vec![StateWrite {
                module: "log".into(),
                key: "k".into(),
                value: Some(b"v".to_vec()),
            }],
        )
        .await
        .expect("append");
    // The event is counted as dropped (reported later), the state still moves on.
    assert_eq!(out.dropped, 1);
    assert_eq!(ob.unreported_drops(), 1);
    assert_eq!(
        ob.module_state("log").expect("state"),
        [("k".to_owned(), b"v".to_vec())]
    );
}
