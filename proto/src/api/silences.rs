//! JSON of the silence and acknowledgement verbs: `ops.api.silence` (add or expire a silence,
//! identified as `ops.api.as.<operator>.<role>.silence`, role operator), `ops.api.alert_ack`
//! (acknowledge an alert, identified likewise, role operator) and `ops.api.silences` (the
//! paged list, any role).

use serde::{Deserialize, Serialize};

use super::{AlertView, PageRequest, Responder, Role};

/// Longest silence: 30 days.
pub const SILENCE_MAX_MS: i64 = 30 * 24 * 3600 * 1000;
/// Longest reason and ack comment, in bytes.
pub const SILENCE_TEXT_MAX: usize = 512;
/// Most label and rule matchers of one silence (each).
pub const SILENCE_MATCHERS_MAX: usize = 16;
/// The role the silence and ack verbs need.
pub const SILENCE_ROLE: Role = Role::Operator;

/// Request of `ops.api.silence`: `{"action":"add", ...}` or `{"action":"expire","id":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SilenceRequest {
    Add(SilenceAdd),
    Expire(SilenceExpire),
}

impl SilenceRequest {
    /// `silence add` / `silence expire`, as refusals name it.
    pub fn what(&self) -> &'static str {
        match self {
            SilenceRequest::Add(_) => "silence add",
            SilenceRequest::Expire(_) => "silence expire",
        }
    }
}

/// A new silence. At least one matcher (`host`, `labels`, `rules`); all given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceAdd {
    /// Host name or glob (`web-*`, `db-0?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Host labels as `key=value`; the host must have all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Rule names (`disk_crit`, `host_lost`, ...); the alert's rule must be one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// How long from now, in milliseconds (1 ms ..= 30 days).
    pub duration_ms: i64,
    /// Why (required, at most 512 bytes).
    pub reason: String,
}

/// Ends a silence now. `id` may be a unique prefix of at least 8 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceExpire {
    pub id: String,
}

/// Reply of `ops.api.silence`: the silence as recorded (folded back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceReply {
    pub responder: Responder,
    pub silence: SilenceView,
}

/// Request of `ops.api.alert_ack`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertAckRequest {
    /// The alert's key (`<rule>/<host>/<subject>`, as `opsctl alerts -o json` shows it).
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Reply of `ops.api.alert_ack`: the alert with its ack (folded back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertAckReply {
    pub responder: Responder,
    pub alert: AlertView,
}

/// Request of `ops.api.silences`, paged by id (UUIDv7: creation order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilencesRequest {
    /// Ended silences too (expired, or past their end); active and upcoming ones otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(flatten)]
    pub page: PageRequest,
}

/// Reply of `ops.api.silences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilencesReply {
    pub responder: Responder,
    /// The answering coordinator's clock when it judged which are active.
    pub now_unix_ms: i64,
    pub silences: Vec<SilenceView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceView {
    pub id: String,
    /// `active`, `pending` (starts later), `expired` (ended by an operator) or `ended`.
    pub state: String,
    /// Host glob; empty = any host.
    pub host: String,
    pub labels: Vec<String>,
    pub rules: Vec<String>,
    pub starts_unix_ms: i64,
    pub ends_unix_ms: i64,
    pub reason: String,
    pub created_by: String,
    pub created_role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_unix_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_bodies_are_as_documented() {
        let add: SilenceRequest = serde_json::from_str(
            r#"{"action":"add","host":"web-*","labels":["env=prod"],"rules":["disk_crit"],"duration_ms":7200000,"reason":"disk swap"}"#,
        )
        .unwrap();
        let SilenceRequest::Add(a) = &add else {
            panic!("{add:?}")
        };
        assert_eq!(
            (a.host.as_deref(), a.duration_ms),
            (Some("web-*"), 7_200_000)
        );
        let expire: SilenceRequest =
            serde_json::from_str(r#"{"action":"expire","id":"0193a4c2"}"#).unwrap();
        assert_eq!(
            expire,
            SilenceRequest::Expire(SilenceExpire {
                id: "0193a4c2".into()
            })
        );
        assert_eq!(
            serde_json::to_string(&expire).unwrap(),
            r#"{"action":"expire","id":"0193a4c2"}"#
        );
        assert!(serde_json::from_str::<SilenceRequest>(r#"{"action":"mute"}"#).is_err());
        let ack: AlertAckRequest =
            serde_json::from_str(r#"{"id":"disk_crit/web-01//data","comment":"on it"}"#).unwrap();
        assert_eq!(ack.comment.as_deref(), Some("on it"));
        assert_eq!(
            serde_json::to_string(&SilencesRequest::default()).unwrap(),
            "{}"
        );
    }
}
