//! The command fast path, its pure rules: which messages are a coordinator's publication as
//! `OPS_CMDS` stored it (`relay_problem` for both paths, `fast_copy` for the copies the stream
//! republishes), and when a copy may run (`fast_step`).
//!
//! `OPS_CMDS` republishes every command it stores on `ops.fastcmd.<host>`, at once and in
//! stream order, with the stream's headers: `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and
//! `Nats-Last-Sequence` (the sequence of the previous message on the same subject, 0 when none
//! is left). The agent's durable consumer delivers the same messages later. Order: the agent
//! keeps the stream sequence of the last message of its command subject it handled, by either
//! path (its cursor); a copy runs only when its `Nats-Last-Sequence` is that cursor, so the
//! fast path takes exactly the durable consumer's sequence, only sooner. A copy after a gap (a
//! reconnect, a slow consumer, an agent that was away) is left to the durable consumer, which
//! brings it in order; the copies after it run again once the consumer has caught up.
//!
//! Trust: nobody may publish on `ops.fastcmd.>` (NATS permissions; the republish is the
//! server's own), and only this agent may subscribe to its own subject. What else the server
//! can put there: a relay copy (a direct get or a JetStream API answer sent to a chosen reply
//! subject: relay headers naming another stream, doubled stream headers when the stored
//! message carried its own, or no headers at all) and a JetStream delivery (it shows its stored
//! subject). A copy is taken only with exactly one of each stream header, naming `OPS_CMDS`
//! and this host's command subject, and with the `Nats-Msg-Id` every dispatch sets; a relay
//! copy that a stream stored on the command subject and republished carries the relay's
//! headers as well as the republish's, or no `Nats-Msg-Id`.

use async_nats::HeaderMap;
use opsfleet_proto::subjects;

/// Why a message is a server relay copy rather than a coordinator's publication, if it is: it
/// carries a relay header (`opsfleet_proto::relay`), or no `Nats-Msg-Id` at all, which every
/// dispatch sets and a direct get asked for with `no_hdr` strips (with the relay headers), and
/// which no JetStream API answer has. Pure.
pub fn relay_problem(headers: Option<&HeaderMap>) -> Option<&'static str> {
    let Some(headers) = headers else {
        return Some("no headers");
    };
    let names = headers.iter().map(|(name, _)| AsRef::<str>::as_ref(name));
    if let Some(header) = opsfleet_proto::relay::relay_header(names) {
        return Some(header);
    }
    headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .is_none()
        .then_some("no Nats-Msg-Id")
}

/// A republished command's place in `OPS_CMDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Its stream sequence.
    pub seq: u64,
    /// The sequence of the message before it on the same subject (0: none left).
    pub previous: u64,
}

/// The one value of header `name` (any case), or why there is not exactly one.
fn single<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, &'static str> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| AsRef::<str>::as_ref(*n).eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter());
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v.as_str()),
        (None, _) => Err("a stream header missing"),
        (Some(_), Some(_)) => Err("a stream header repeated"),
    }
}

/// A message of the fast-path subscription, checked to be `OPS_CMDS`'s republish of a
/// coordinator's command to `host` (see the module doc): its place in the stream, or why it
/// is not one. Pure.
pub fn fast_copy(
    host: &str,
    subject: &str,
    headers: Option<&HeaderMap>,
) -> Result<Placed, &'static str> {
    if subject != subjects::command_copy_subject(host) {
        return Err("another subject");
    }
    let Some(h) = headers else {
        return Err("no headers");
    };
    if single(h, "Nats-Stream")? != subjects::COMMANDS_STREAM {
        return Err("another stream");
    }
    if single(h, "Nats-Subject")? != subjects::command_subject(host) {
        return Err("another command subject");
    }
    let seq: u64 = single(h, "Nats-Sequence")?
        .parse()
        .map_err(|_| "an unreadable sequence")?;
    let previous: u64 = single(h, "Nats-Last-Sequence")?
        .parse()
        .map_err(|_| "an unreadable sequence")?;
    if previous >= seq {
        return Err("an impossible place");
    }
    if h.get(async_nats::header::NATS_MESSAGE_ID).is_none() {
        return Err("no Nats-Msg-Id");
    }
    Ok(Placed { seq, previous })
}

/// What to do with a fast copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastStep {
    /// It comes right after the last message handled: decide and run it now.
    Run,
    /// An earlier message may still be due: leave it to the durable consumer.
    Leave,
    /// Handled already (the durable consumer was first).
    Seen,
}

/// The step of a copy placed at `placed` when the agent handled its command subject up to
/// stream sequence `cursor` (0: nothing yet). Pure.
pub fn fast_step(placed: Placed, cursor: u64) -> FastStep {
    if placed.seq <= cursor {
        FastStep::Seen
    } else if placed.previous == cursor {
        FastStep::Run
    } else {
        FastStep::Leave
    }
}

/// How a command reached the agent (logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The durable consumer `agent-<host>`.
    Durable,
    /// The subscription on `ops.fastcmd.<host>` (the stream's republish).
    Fast,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Durable => "durable",
            Via::Fast => "fast",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, *v);
        }
        h
    }

    /// What `OPS_CMDS` republishes for a command to web-01 stored at `seq`.
    fn republished(seq: &str, previous: &str) -> Vec<(&'static str, String)> {
        vec![
            ("Nats-Msg-Id", "0190-a".to_owned()),
            ("Nats-Stream", "OPS_CMDS".to_owned()),
            ("Nats-Subject", "ops.cmd.web-01".to_owned()),
            ("Nats-Sequence", seq.to_owned()),
            ("Nats-Last-Sequence", previous.to_owned()),
            ("Nats-Time-Stamp", "2026-12-06T18:00:00Z".to_owned()),
        ]
    }

    fn map(pairs: &[(&'static str, String)]) -> HeaderMap {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers(&pairs)
    }

    #[test]
    fn the_streams_republish_is_taken_with_its_place() {
        let h = map(&republished("42", "17"));
        assert_eq!(
            fast_copy("web-01", "ops.fastcmd.web-01", Some(&h)),
            Ok(Placed {
                seq: 42,
                previous: 17
            })
        );
    }

    #[test]
    fn relay_copies_deliveries_and_other_subjects_are_refused() {
        let good = republished("42", "17");
        let refused = |pairs: &[(&'static str, String)], subject: &str| {
            fast_copy("web-01", subject, Some(&map(pairs))).unwrap_err()
        };
        // Another host's copies, the command subject itself (a delivery shows it), a prefix.
        assert_eq!(refused(&good, "ops.fastcmd.web-02"), "another subject");
        assert_eq!(refused(&good, "ops.cmd.web-01"), "another subject");
        assert_eq!(refused(&good, "ops.fastcmd.web-01x"), "another subject");
        // A direct get of an event answered here: the relay's own stream and subject.
        let mut relay = good.clone();
        relay[1].1 = "OPS_EVENTS".to_owned();
        assert_eq!(refused(&relay, "ops.fastcmd.web-01"), "another stream");
        relay[1].1 = "OPS_CMDS".to_owned();
        relay[2].1 = "ops.cmd.web-02".to_owned();
        assert_eq!(
            refused(&relay, "ops.fastcmd.web-01"),
            "another command subject"
        );
        // A relay copy stored on the command subject, then republished: both sets of headers
        // (a stored message cannot hide the relay's), in any case.
        let mut stored_relay = good.clone();
        stored_relay.push(("Nats-Stream", "OPS_EVENTS".to_owned()));
        assert_eq!(
            refused(&stored_relay, "ops.fastcmd.web-01"),
            "a stream header repeated"
        );
        let mut cased = good.clone();
        cased.push(("nats-sequence", "9".to_owned()));
        assert_eq!(
            refused(&cased, "ops.fastcmd.web-01"),
            "a stream header repeated"
        );
        // no_hdr: a stored copy without headers is republished with the stream's alone.
        let no_id: Vec<_> = good[1..].to_vec();
        assert_eq!(refused(&no_id, "ops.fastcmd.web-01"), "no Nats-Msg-Id");
        // A JetStream API answer: no headers at all.
        assert_eq!(
            fast_copy("web-01", "ops.fastcmd.web-01", None),
            Err("no headers")
        );
        // Missing or nonsensical places.
        let no_last: Vec<_> = good
            .iter()
            .filter(|(k, _)| *k != "Nats-Last-Sequence")
            .cloned()
            .collect();
        assert_eq!(
            refused(&no_last, "ops.fastcmd.web-01"),
            "a stream header missing"
        );
        assert_eq!(
            refused(&republished("17", "17"), "ops.fastcmd.web-01"),
            "an impossible place"
        );
        assert_eq!(
            refused(&republished("x", "1"), "ops.fastcmd.web-01"),
            "an unreadable sequence"
        );
    }

    #[test]
    fn a_copy_runs_only_right_after_the_last_message_handled() {
        let at = |seq, previous| Placed { seq, previous };
        assert_eq!(fast_step(at(42, 17), 17), FastStep::Run);
        assert_eq!(fast_step(at(3, 0), 0), FastStep::Run);
        // Something between 17 and 42 is still due on the durable consumer.
        assert_eq!(fast_step(at(42, 30), 17), FastStep::Leave);
        assert_eq!(fast_step(at(42, 17), 0), FastStep::Leave);
        // The durable consumer was first.
        assert_eq!(fast_step(at(42, 17), 42), FastStep::Seen);
        assert_eq!(fast_step(at(42, 17), 50), FastStep::Seen);
    }
}
