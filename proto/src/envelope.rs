//! Validated forms of the wire envelopes (`TryFrom<pb::Event>`) and typed decode errors.

use prost::Message;
use uuid::Uuid;

use crate::pb;
use crate::subjects::{validate_token, TokenError};

/// Why bytes from the bus are not a valid message. Each variant names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a protobuf {message}")]
    Decode {
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("field `{field}` is not a UUID: {value:?}")]
    BadUuid {
        field: &'static str,
        value: String,
        #[source]
        source: uuid::Error,
    },
    #[error("field `{field}` is not a valid name: {value:?}")]
    BadName {
        field: &'static str,
        value: String,
        #[source]
        source: TokenError,
    },
    #[error("field `seq` must be at least 1")]
    ZeroSeq,
}

impl WireError {
    /// Short stable label for metrics and dead-letter subjects.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::Decode { .. } => "decode",
            WireError::Missing { .. } => "missing_field",
            WireError::BadUuid { .. } => "bad_uuid",
            WireError::BadName { .. } => "bad_name",
            WireError::ZeroSeq => "zero_seq",
        }
    }
}

/// An event whose envelope has been checked: ids parse, names are subject tokens, seq >= 1
/// and a body is present.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    pub id: Uuid,
    pub host: String,
    pub seq: u64,
    pub time_unix_ms: i64,
    pub module: String,
    pub incarnation: Uuid,
    pub body: pb::event::Body,
}

impl EventEnvelope {
    /// Decodes and validates one event from its wire bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let raw = pb::Event::decode(bytes).map_err(|source| WireError::Decode {
            message: "opsfleet.v1.Event",
            source,
        })?;
        Self::try_from(raw)
    }

    /// The subject token naming this event's body kind (`ops.evt.<host>.<kind>`).
    pub fn kind(&self) -> &'static str {
        body_kind(&self.body)
    }

    /// Converts back to the wire form.
    pub fn to_pb(&self) -> pb::Event {
        pb::Event {
            id: self.id.to_string(),
            host: self.host.clone(),
            seq: self.seq,
            time_unix_ms: self.time_unix_ms,
            module: self.module.clone(),
            incarnation: self.incarnation.to_string(),
            body: Some(self.body.clone()),
        }
    }

    /// Encodes the wire form.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        self.to_pb().encode_to_vec()
    }
}

/// Module name of events a coordinator publishes about itself; agents may not use it.
pub const COORDINATOR_MODULE: &str = "coordinator";

/// Subject token of a body kind.
pub fn body_kind(body: &pb::event::Body) -> &'static str {
    use pb::event::Body;
    match body {
        Body::Heartbeat(_) => "heartbeat",
        Body::Disk(_) => "disk",
        Body::ModuleState(_) => "module_state",
        Body::EventsDropped(_) => "events_dropped",
        Body::LogMatch(_) => "log_match",
        Body::LogSuppressed(_) => "log_suppressed",
        Body::Sentinel(_) => "sentinel",
        Body::Health(_) => "health",
        Body::BackupStarted(_) => "backup_started",
        Body::BackupProgress(_) => "backup_progress",
        Body::BackupCompleted(_) => "backup_completed",
        Body::BackupFailed(_) => "backup_failed",
        Body::BackupPruned(_) => "backup_pruned",
        Body::BackupSynced(_) => "backup_synced",
        Body::BackupSyncFailed(_) => "backup_sync_failed",
        Body::BackupDiscrepancy(_) => "backup_discrepancy",
        Body::RestoreTested(_) => "restore_tested",
        Body::RestoreCompleted(_) => "restore_completed",
        Body::RestoreFailed(_) => "restore_failed",
        Body::Janitor(_) => "janitor",
        Body::ConfigRejected(_) => "config_rejected",
        Body::Service(_) => "service",
        Body::ServiceConfig(_) => "service_config",
        Body::ServiceRemediation(_) => "service_remediation",
        Body::ServiceDeployed(_) => "service_deployed",
        Body::Leadership(_) => "leadership",
        Body::CommandAccepted(_) => "command_accepted",
        Body::CommandCompleted(_) => "command_completed",
        Body::CommandFailed(_) => "command_failed",
        Body::CommandRejected(_) => "command_rejected",
        Body::CommandExpired(_) => "command_expired",
        Body::CommandIssued(_) => "command_issued",
        Body::HostLiveness(_) => "host_liveness",
        Body::AlertTransition(_) => "alert_transition",
        Body::NotificationSent(_) => "notification_sent",
        Body::SilenceAdded(_) => "silence_added",
        Body::SilenceExpired(_) => "silence_expired",
        Body::AlertAcked(_) => "alert_acked",
        Body::Rollout(_) => "rollout",
        Body::GroupFailover(_) => "group_failover",
        Body::DrillRun(_) => "drill_run",
    }
}

/// Who may say a body: the classes of the ingest admission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyClass {
    /// Leadership, command issued, liveness verdicts, alert transitions, notifications
    /// (field numbers 100..): only coordinators say these.
    Coordinator,
    /// An agent's answer about a command: only the command's target says it. `command_expired`
    /// may also come from a coordinator (it expires what was never answered).
    Lifecycle,
    /// Everything an agent reports about its own host.
    Agent,
}

/// The class of a body (the coordinator's ingest admission check and `opsctl events` use it).
pub fn body_class(body: &pb::event::Body) -> BodyClass {
    use pb::event::Body;
    match body {
        Body::Leadership(_)
        | Body::CommandIssued(_)
        | Body::HostLiveness(_)
        | Body::AlertTransition(_)
        | Body::NotificationSent(_)
        | Body::SilenceAdded(_)
        | Body::SilenceExpired(_)
        | Body::AlertAcked(_)
        | Body::Rollout(_)
        | Body::GroupFailover(_)
        | Body::DrillRun(_) => BodyClass::Coordinator,
        Body::CommandAccepted(_)
        | Body::CommandCompleted(_)
        | Body::CommandFailed(_)
        | Body::CommandRejected(_)
        | Body::CommandExpired(_) => BodyClass::Lifecycle,
        Body::Heartbeat(_)
        | Body::Disk(_)
        | Body::ModuleState(_)
        | Body::EventsDropped(_)
        | Body::LogMatch(_)
        | Body::LogSuppressed(_)
        | Body::Sentinel(_)
        | Body::Health(_)
        | Body::BackupStarted(_)
        | Body::BackupProgress(_)
        | Body::BackupCompleted(_)
        | Body::BackupFailed(_)
        | Body::BackupPruned(_)
        | Body::BackupSynced(_)
        | Body::BackupSyncFailed(_)
        | Body::BackupDiscrepancy(_)
        | Body::RestoreTested(_)
        | Body::RestoreCompleted(_)
        | Body::RestoreFailed(_)
        | Body::Janitor(_)
        | Body::ConfigRejected(_)
        | Body::Service(_)
        | Body::ServiceConfig(_)
        | Body::ServiceRemediation(_)
        | Body::ServiceDeployed(_) => BodyClass::Agent,
    }
}

fn parse_uuid(field: &'static str, value: String) -> Result<Uuid, WireError> {
    if value.is_empty() {
        return Err(WireError::Missing { field });
    }
    Uuid::parse_str(&value).map_err(|source| WireError::BadUuid {
        field,
        value,
        source,
    })
}

fn check_name(field: &'static str, value: String) -> Result<String, WireError> {
    if value.is_empty() {
        return Err(WireError::Missing { field });
    }
    match validate_token(&value) {
        Ok(()) => Ok(value),
        Err(source) => Err(WireError::BadName {
            field,
            value,
            source,
        }),
    }
}

impl TryFrom<pb::Event> for EventEnvelope {
    type Error = WireError;

    fn try_from(raw: pb::Event) -> Result<Self, Self::Error> {
        let id = parse_uuid("id", raw.id)?;
        let host = check_name("host", raw.host)?;
        if raw.seq == 0 {
            return Err(WireError::ZeroSeq);
        }
        let module = check_name("module", raw.module)?;
        let incarnation = parse_uuid("incarnation", raw.incarnation)?;
        let body = raw.body.ok_or(WireError::Missing { field: "body" })?;
        Ok(EventEnvelope {
            id,
            host,
            seq: raw.seq,
            time_unix_ms: raw.time_unix_ms,
            module,
            incarnation,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> EventEnvelope {
        EventEnvelope {
            id: Uuid::now_v7(),
            host: "web-01".into(),
            seq: 7,
            time_unix_ms: 1_790_000_000_000,
            module: "disk".into(),
            incarnation: Uuid::now_v7(),
            body: pb::event::Body::Disk(pb::DiskUsage {
                path: "/".into(),
                total_bytes: 100,
                used_bytes: 42,
                avail_bytes: 58,
                level: pb::DiskLevel::Ok as i32,
                used_basis_points: 4200,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn event_round_trips_through_bytes() {
        let ev = sample();
        let back = EventEnvelope::decode(&ev.encode_to_vec()).expect("decodes");
        assert_eq!(back, ev);
        assert_eq!(back.kind(), "disk");
    }

    #[test]
    fn unknown_fields_from_a_newer_writer_are_skipped() {
        // A newer writer adds field 99 (varint) and 98 (length-delimited), numbers no body
        // uses yet: an old reader must still decode the envelope.
        let mut bytes = sample().encode_to_vec();
        bytes.extend_from_slice(&[0x98, 0x06, 0x2a]); // field 99, varint 42
        bytes.extend_from_slice(&[0x92, 0x06, 0x03, b'a', b'b', b'c']); // field 98, "abc"
        let back = EventEnvelope::decode(&bytes).expect("unknown fields are ignored");
        assert_eq!(back.seq, 7);
    }

    #[test]
    fn missing_body_is_a_typed_error() {
        let mut raw = sample().to_pb();
        raw.body = None;
        let err = EventEnvelope::try_from(raw).unwrap_err();
        assert!(matches!(err, WireError::Missing { field: "body" }), "{err}");
    }

    #[test]
    fn bad_fields_name_the_field() {
        let mut raw = sample().to_pb();
        raw.id = "not-a-uuid".into();
        assert_eq!(
            EventEnvelope::try_from(raw).unwrap_err().reason(),
            "bad_uuid"
        );

        let mut raw = sample().to_pb();
        raw.host = "a.b".into();
        let err = EventEnvelope::try_from(raw).unwrap_err();
        assert!(err.to_string().contains("`host`"), "{err}");

        let mut raw = sample().to_pb();
        raw.seq = 0;
        assert!(matches!(
            EventEnvelope::try_from(raw),
            Err(WireError::ZeroSeq)
        ));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = EventEnvelope::decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.reason(), "decode");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = EventEnvelope::decode(&bytes);
        }

        #[test]
        fn valid_events_round_trip(seq in 1u64.., t in any::<i64>(), used in any::<u64>()) {
            let mut ev = sample();
            ev.seq = seq;
            ev.time_unix_ms = t;
            if let pb::event::Body::Disk(d) = &mut ev.body { d.used_bytes = used; }
            prop_assert_eq!(EventEnvelope::decode(&ev.encode_to_vec()).unwrap(), ev);
        }
    }
}
