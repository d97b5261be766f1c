//! The fast path of commands, its pure rules: which messages of the plain subscription on
//! `ops.cmd.<host>` are commands at all, and when one may run (`FastGate`).
//!
//! The coordinator's JetStream publish on `ops.cmd.<host>` reaches a plain subscriber on that
//! subject the moment the server takes it, beside being stored in `OPS_CMDS`; the durable
//! consumer delivers (and the agent acks) the same message later, as a duplicate of the
//! ledger. Order: a fast-path command runs only while the gate is *live*, that is when a
//! reading of the durable consumer (taken with the subscription already in place, on the
//! same connection, with the loop waiting for the reply) showed nothing pending and nothing
//! unacked. Everything published before that reading was run by the durable consumer in
//! stream order; everything after arrives on the subscription in publish order (core NATS
//! keeps one publisher's order per subscriber). A reconnect may have dropped fast-path
//! messages, so it ends the session (and its liveness); until live, fast-path messages are
//! left to the durable consumer, which brings them in order.

use opsfleet_proto::subjects;

/// Prefix of every JetStream reply subject (a consumer's delivery carries `$JS.ACK.…`).
const JS_REPLY_PREFIX: &str = "$JS.";

/// Header a stream's republish (or a direct get) stamps on the copy it sends.
pub const STREAM_HEADER: &str = "Nats-Stream";

/// Whether a message of the fast-path subscription may be taken as a command: on this host's
/// command subject, published there by a client (only coordinators may, NATS permissions),
/// not a JetStream delivery routed onto the subject (a push consumer's deliver subject or a
/// stream's republish, which permissions do not check: their payload may come from any
/// stream, including events an agent wrote). Pure.
pub fn published_to_own_subject(
    host: &str,
    subject: &str,
    reply: Option<&str>,
    stream_header: bool,
) -> bool {
    subject == subjects::command_subject(host)
        && !reply.is_some_and(|r| r.starts_with(JS_REPLY_PREFIX))
        && !stream_header
}

/// What to do with a fast-path command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastStep {
    /// The durable consumer is caught up on this connection: decide and run it now.
    Run,
    /// Behind: an older command may still be on its way through the durable consumer, which
    /// brings this one too, in order. Ignore it.
    Leave,
    /// The connection was re-established since the session began: fast-path messages may have
    /// been lost meanwhile. End the session (and open a new one).
    Reopen,
}

/// Liveness of the fast path within one consumer session (one connection). Pure: the
/// connection count (`async_nats::Statistics::connects`) and the consumer's counts are
/// arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastGate {
    /// The connection count when the session (and its subscription) began.
    connection: u64,
    live: bool,
}

impl FastGate {
    /// A session begun on connection `connection`, behind until a reading says otherwise.
    pub fn new(connection: u64) -> Self {
        FastGate {
            connection,
            live: false,
        }
    }

    pub fn live(&self) -> bool {
        self.live
    }

    /// A reading of the durable consumer, asked for on connection `asked_on` and answered on
    /// `answered_on`, while no fast-path message was handled in between: live when it has
    /// nothing pending and nothing delivered but unacked, on the session's connection.
    /// Otherwise behind (an older command is still due).
    pub fn reading(
        &mut self,
        num_pending: u64,
        num_ack_pending: u64,
        asked_on: u64,
        answered_on: u64,
    ) {
        self.live = num_pending == 0
            && num_ack_pending == 0
            && asked_on == self.connection
            && answered_on == self.connection;
    }

    /// The durable consumer's stream failed (missed heartbeats, a reconnect): behind until
    /// the next reading.
    pub fn lost(&mut self) {
        self.live = false;
    }

    /// What a fast-path command arriving now (connection count `now_on`) gets.
    pub fn step(&self, now_on: u64) -> FastStep {
        if now_on != self.connection {
            FastStep::Reopen
        } else if self.live {
            FastStep::Run
        } else {
            FastStep::Leave
        }
    }
}

/// How a command reached the agent (logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The durable consumer `agent-<host>`.
    Durable,
    /// The plain subscription on `ops.cmd.<host>`.
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
#[path = "fastpath_tests.rs"]
mod tests;
