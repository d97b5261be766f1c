//! The body of a request a coordinator forwards for a login of its web console
//! (`ops.api.console.<verb>`): who asks, in which role, and the verb's own request.

use serde::{Deserialize, Serialize};

use super::Role;

/// `ops.api.console.<verb>`: served like `ops.api.as.<operator>.<role>.<verb>` with `request`
/// as its body. Only coordinators may publish it; the reply goes to `_INBOX.<via>.`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleRequest {
    /// The coordinator whose console the operator logged in to (its inbox gets the reply).
    pub via: String,
    /// The login's operator name (a subject token).
    pub operator: String,
    /// The login's role.
    pub role: Role,
    /// The verb's request, as `opsctl` would send it.
    pub request: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_request_json() {
        let r = ConsoleRequest {
            via: "blue".into(),
            operator: "alice".into(),
            role: Role::Operator,
            request: serde_json::json!({"action": "noop"}),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"via":"blue","operator":"alice","role":"operator","request":{"action":"noop"}}"#
        );
        assert_eq!(serde_json::from_str::<ConsoleRequest>(&text).unwrap(), r);
    }
}
