//! Server relay copies: how a receiver tells a message the NATS server itself published on a
//! subject (a JetStream direct-get answer sent to a reply subject the requester chose) from
//! one a principal published there.
//!
//! NATS permissions never check reply subjects, so anyone who may send
//! `$JS.API.DIRECT.GET.<stream>` can have the server publish a stored message (its body and
//! its stored headers) on any subject, where a stream listening on that subject stores it.
//! The server adds the relay headers below to every direct-get answer, single or batched
//! (`Nats-Stream`, `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`; a batch adds
//! `Nats-Num-Pending` / `Nats-Last-Sequence`), after the stored ones, so a stored message
//! cannot hide them. No opsfleet publisher sets any of them (agents and coordinators set only
//! `Nats-Msg-Id`; the dead-letter headers are `Ops-*`), and a stream republish, which would
//! set some of them too, is configured on no opsfleet stream. So a message carrying one of
//! them was not published on its subject by a principal: receivers refuse it. A direct get
//! asked for with `no_hdr` strips every header, relay and stored alike: a receiver whose
//! publishers always set `Nats-Msg-Id` (the agent's command inbox) refuses a message without
//! it too.

/// Headers the server sets on a direct-get answer (and on a republished copy); none is ever
/// set by an opsfleet publisher.
pub const RELAY_HEADERS: [&str; 4] = [
    "Nats-Stream",
    "Nats-Subject",
    "Nats-Sequence",
    "Nats-Time-Stamp",
];

/// The first header among `names` that marks a server relay copy (compared without regard
/// to case), or `None` for a message a principal published. Pure.
pub fn relay_header<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    names.into_iter().find_map(|name| {
        RELAY_HEADERS
            .iter()
            .find(|relay| relay.eq_ignore_ascii_case(name))
            .copied()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_get_headers_mark_a_relay_copy() {
        for name in RELAY_HEADERS {
            assert_eq!(relay_header([name]), Some(name));
        }
        assert_eq!(relay_header(["nats-sequence"]), Some("Nats-Sequence"));
        assert_eq!(
            relay_header(["X-Mine", "Nats-Time-Stamp"]),
            Some("Nats-Time-Stamp")
        );
    }

    #[test]
    fn our_own_headers_are_not_a_relay_copy() {
        assert_eq!(relay_header([]), None);
        assert_eq!(relay_header(["Nats-Msg-Id"]), None);
        assert_eq!(relay_header(["Ops-Reason", "Ops-Original-Subject"]), None);
        assert_eq!(relay_header(["Nats-Stream-Source"]), None);
    }
}
