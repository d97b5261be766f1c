//! Tests of the topology config and of what an existing stream or bucket is planned to become.

use super::*;

#[test]
fn stream_mismatch_names_the_field() {
    let cfg = TopologyConfig::default();
    let want = cfg.events_stream();
    let mut have = want.clone();
    have.num_replicas = 3;
    let err = plan_update("OPS_EVENTS", &want, &have).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("replicas = 3"), "{text}");
    assert!(text.contains("expects 1"), "{text}");
    let mut foreign = want.clone();
    foreign.subjects.push("other.>".into());
    let err = plan_update("OPS_EVENTS", &want, &foreign).unwrap_err();
    assert!(err.to_string().contains("subjects"), "{err}");
}

#[test]
fn an_older_events_stream_gains_the_coordinator_space_and_the_limits() {
    let want = TopologyConfig::default().events_stream();
    // What the server reports for a stream created before this deployment's limits.
    let mut old = want.clone();
    old.subjects = vec![subjects::EVENTS_ALL.to_owned()];
    old.max_bytes = -1;
    old.max_message_size = -1;
    old.max_messages_per_subject = -1;
    old.description = Some("kept".into());
    let update = plan_update("OPS_EVENTS", &want, &old)
        .expect("an update, not a mismatch")
        .expect("something to update");
    assert_eq!(
        update.subjects,
        [subjects::EVENTS_ALL, subjects::COORD_EVENTS_ALL]
    );
    assert_eq!(update.max_bytes, want.max_bytes);
    assert_eq!(update.max_message_size, want.max_message_size);
    assert_eq!(update.description.as_deref(), Some("kept"));
    // The server's spelling of "unlimited" matches ours: nothing to do.
    let mut current = want.clone();
    current.max_messages_per_subject = -1;
    assert!(plan_update("OPS_EVENTS", &want, &current)
        .expect("no mismatch")
        .is_none());
}

#[test]
fn the_events_stream_allows_direct_get_and_an_older_one_gains_it() {
    let want = TopologyConfig::default().events_stream();
    assert!(want.allow_direct, "programs read OPS_EVENTS by direct get");
    let mut old = want.clone();
    old.allow_direct = false;
    let update = plan_update("OPS_EVENTS", &want, &old)
        .expect("an update, not a mismatch")
        .expect("something to update");
    assert!(update.allow_direct);
    // The other streams are not read by direct get; they keep it off.
    assert!(!TopologyConfig::default().commands_stream().allow_direct);
    assert!(!TopologyConfig::default().dlq_stream().allow_direct);
}

#[test]
fn the_commands_stream_republishes_each_command_and_an_older_one_gains_it() {
    let want = TopologyConfig::default().commands_stream();
    let republish = want.republish.clone().expect("commands are republished");
    assert_eq!(republish.source, "ops.cmd.>");
    assert_eq!(republish.destination, "ops.fastcmd.>");
    assert!(!republish.headers_only, "agents need the command itself");
    let mut old = want.clone();
    old.republish = None;
    let update = plan_update("OPS_CMDS", &want, &old)
        .expect("an update, not a mismatch")
        .expect("something to update");
    assert_eq!(update.republish, Some(republish));
    // No other stream republishes.
    assert!(TopologyConfig::default()
        .events_stream()
        .republish
        .is_none());
    assert!(TopologyConfig::default().dlq_stream().republish.is_none());
}

#[test]
fn the_commands_stream_states_its_own_consumer_limit_and_an_older_one_gains_it() {
    let want = TopologyConfig::default().commands_stream();
    assert_eq!(want.max_consumers, COMMAND_CONSUMERS);
    // What nats-server 2.15 reports for a stream created without a limit (and caps at 1,000).
    let mut old = want.clone();
    old.max_consumers = -1;
    let update = plan_update("OPS_CMDS", &want, &old)
        .expect("an update, not a mismatch")
        .expect("something to update");
    assert_eq!(update.max_consumers, COMMAND_CONSUMERS);
    assert!(plan_update("OPS_CMDS", &want, &want)
        .expect("no mismatch")
        .is_none());
    // The other streams keep the server's default, and are not updated over it.
    let events = TopologyConfig::default().events_stream();
    let mut served = events.clone();
    served.max_consumers = -1;
    assert!(plan_update("OPS_EVENTS", &events, &served)
        .expect("no mismatch")
        .is_none());
}

#[test]
fn takeover_after_is_off_or_between_one_second_and_the_ttl() {
    let problems = |takeover_after: u64| {
        TopologyConfig {
            takeover_after: Duration::from_millis(takeover_after),
            ..Default::default()
        }
        .problems()
    };
    assert!(problems(0).is_empty());
    assert!(problems(1000).is_empty());
    assert!(problems(3000).is_empty());
    for bad in [150, 999, 3001] {
        let p = problems(bad);
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert_eq!(p[0].0, "takeover_after");
    }
}

#[test]
fn limits_are_validated() {
    let cfg = TopologyConfig {
        events_max_bytes: 100,
        events_max_msg_size: 10,
        events_max_msgs_per_subject: Some(0),
        ..Default::default()
    };
    let keys: Vec<String> = cfg.problems().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "events_max_bytes",
            "events_max_msg_size",
            "events_max_msgs_per_subject"
        ]
    );
}

#[test]
fn a_lease_bucket_is_raised_to_lease_ttl_never_lowered() {
    let ttl = Duration::from_secs(15);
    assert_eq!(plan_lease_age(ttl, ttl), LeaseAge::Same);
    assert_eq!(plan_lease_age(ttl, Duration::from_secs(3)), LeaseAge::Raise);
    assert_eq!(
        plan_lease_age(ttl, Duration::from_secs(30)),
        LeaseAge::Longer
    );
    // max_age 0 is "unlimited" on the server: longer than any TTL.
    assert_eq!(plan_lease_age(ttl, Duration::ZERO), LeaseAge::Longer);
}
