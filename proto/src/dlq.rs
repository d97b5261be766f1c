//! The headers a coordinator puts on a message it parks on the dead-letter subject
//! (`OPS_DLQ`): why, what kind of problem, the decode or admission error, and where the
//! message came from.

/// Short reason code (`decode`, `missing_field`, `refused`, ...).
pub const REASON: &str = "Ops-Reason";
/// Malformed (the bytes) or refused (a valid event its sender may not send).
pub const CLASS: &str = "Ops-Class";
/// The error, with every cause.
pub const ERROR: &str = "Ops-Error";
/// The subject the message was published on.
pub const ORIGINAL_SUBJECT: &str = "Ops-Original-Subject";
/// Its sequence in `OPS_EVENTS`.
pub const STREAM_SEQ: &str = "Ops-Stream-Seq";
/// The coordinator that parked it.
pub const PARKED_BY: &str = "Ops-Parked-By";
