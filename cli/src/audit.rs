//! `opsctl audit`: who issued which command, when, to which host, and how it ended — read from
//! the command ledger (`ops.api.commands`). Pure functions of the ledger's views.

use opsfleet_proto::api::{ActionName, CommandState, CommandView, Role};
use serde::Serialize;

use crate::table::Table;

/// One line of the audit trail: one command to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When the command was issued (unix ms; 0 if the ledger has no `issued` step).
    pub issued_unix_ms: i64,
    /// The operator identity the coordinator recorded (from the request's subject; a name
    /// ending in " (unverified)" came from an unidentified request's body).
    pub issued_by: String,
    /// The role the operator acted in; empty for an unverified request.
    #[serde(with = "opsfleet_proto::api::empty_is_none")]
    pub issued_role: Option<Role>,
    #[serde(with = "opsfleet_proto::api::empty_is_none")]
    pub action: Option<ActionName>,
    pub module: String,
    pub target: String,
    pub epoch: u64,
    pub outcome: CommandState,
    /// When the latest step happened (unix ms).
    pub updated_unix_ms: i64,
    pub detail: String,
    pub command_id: String,
}

/// Which entries `opsctl audit` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only commands issued by this operator (also its annotated names: `alice (drill)`,
    /// `alice (unverified)`).
    pub by: Option<String>,
}

/// Is `issued_by` the operator `by`, possibly annotated (`alice (drill)`)?
pub fn issued_by_matches(issued_by: &str, by: &str) -> bool {
    issued_by
        .strip_prefix(by)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(" ("))
}

/// The audit trail of `views`, newest first.
pub fn entries(views: &[CommandView], filter: &AuditFilter) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = views
        .iter()
        .filter(|v| {
            filter
                .by
                .as_deref()
                .is_none_or(|by| issued_by_matches(&v.issued_by, by))
        })
        .map(|v| AuditEntry {
            issued_unix_ms: v
                .history
                .iter()
                .find(|h| h.state == CommandState::Issued)
                .or(v.history.first())
                .map_or(0, |h| h.at_unix_ms),
            issued_by: v.issued_by.clone(),
            issued_role: v.issued_role,
            action: v.action,
            module: v.module.clone(),
            target: v.target.clone(),
            epoch: v.epoch,
            outcome: v.state,
            updated_unix_ms: v.history.last().map_or(0, |h| h.at_unix_ms),
            detail: v.detail.clone(),
            command_id: v.id.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.issued_unix_ms
            .cmp(&a.issued_unix_ms)
            .then_with(|| a.target.cmp(&b.target))
            .then_with(|| a.command_id.cmp(&b.command_id))
    });
    out
}

/// UTC timestamp to the second, e.g. `2026-12-02T00:41:07Z`; `-` for 0.
pub fn timestamp(unix_ms: i64) -> String {
    if unix_ms == 0 {
        return "-".to_owned();
    }
    let secs = unix_ms.div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| unix_ms.to_string()),
        Err(_) => unix_ms.to_string(),
    }
}

/// A role for tables: `-` when none was recorded (an unverified request).
pub fn role_cell(role: Option<Role>) -> String {
    role.map_or_else(|| "-".to_owned(), |r| r.to_string())
}

/// An action with its module, if any: `pause log`, `noop`.
pub fn action_cell(action: Option<ActionName>, module: &str) -> String {
    let action = action.map_or("", ActionName::as_str);
    if module.is_empty() {
        action.to_owned()
    } else {
        format!("{action} {module}")
    }
}

/// The audit table: WHEN, BY, ROLE, ACTION, TARGET, EPOCH, OUTCOME, AT, COMMAND, DETAIL.
pub fn render(entries: &[AuditEntry]) -> String {
    let mut table = Table::new(&[
        "WHEN", "BY", "ROLE", "ACTION", "TARGET", "EPOCH", "OUTCOME", "AT", "COMMAND", "DETAIL",
    ]);
    for e in entries {
        table.row([
            timestamp(e.issued_unix_ms),
            e.issued_by.clone(),
            role_cell(e.issued_role),
            action_cell(e.action, &e.module),
            e.target.clone(),
            e.epoch.to_string(),
            e.outcome.to_string(),
            timestamp(e.updated_unix_ms),
            e.command_id.clone(),
            e.detail.clone(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::api::CommandStepView;

    fn view(id: &str, target: &str, by: &str, issued: i64, state: &str) -> CommandView {
        CommandView {
            id: id.into(),
            target: target.into(),
            epoch: 7,
            issued_by: by.into(),
            issued_role: Some(Role::Operator),
            action: Some(ActionName::Pause),
            module: "log".into(),
            deadline_unix_ms: issued + 60_000,
            state: state.parse().unwrap(),
            detail: String::new(),
            accepted_count: 1,
            history: vec![
                CommandStepView {
                    state: CommandState::Issued,
                    at_unix_ms: issued,
                    by: "blue".into(),
                    detail: String::new(),
                },
                CommandStepView {
                    state: state.parse().unwrap(),
                    at_unix_ms: issued + 40,
                    by: target.into(),
                    detail: String::new(),
                },
            ],
        }
    }

    #[test]
    fn newest_first_and_filtered_by_operator() {
        let t = 1_764_636_000_000; // 2025-12-02T00:40:00Z
        let views = [
            view("c1", "web-01", "alice", t, "completed"),
            view("c2", "db-01", "bob", t + 5_000, "rejected"),
            view("c3", "web-02", "alice", t + 9_000, "expired"),
        ];
        let all = entries(&views, &AuditFilter::default());
        let ids: Vec<&str> = all.iter().map(|e| e.command_id.as_str()).collect();
        assert_eq!(ids, ["c3", "c2", "c1"]);
        let alice = entries(
            &views,
            &AuditFilter {
                by: Some("alice".into()),
            },
        );
        assert_eq!(alice.len(), 2);
        assert!(alice.iter().all(|e| e.issued_by == "alice"));
        assert_eq!(alice[1].outcome, CommandState::Completed);
        assert_eq!(alice[1].updated_unix_ms, t + 40);
    }

    #[test]
    fn by_matches_annotated_names_of_the_same_operator_only() {
        assert!(issued_by_matches("alice", "alice"));
        assert!(issued_by_matches("alice (drill)", "alice"));
        assert!(issued_by_matches("alice (unverified)", "alice"));
        assert!(!issued_by_matches("alicex", "alice"));
        assert!(!issued_by_matches("bob (drill)", "alice"));
        assert!(!issued_by_matches("ali", "alice"));
    }

    #[test]
    fn table_names_who_what_when_whom_and_outcome() {
        let t = 1_764_636_000_000;
        let text = render(&entries(
            &[view("c1", "web-01", "alice", t, "completed")],
            &AuditFilter::default(),
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for want in [
            "2025-12-02T00:40:00Z",
            "alice",
            "pause log",
            "web-01",
            "completed",
            "c1",
        ] {
            assert!(lines[1].contains(want), "{want} missing in {text}");
        }
        assert_eq!(timestamp(0), "-");
    }

    #[test]
    fn host_text_in_the_table_is_inert() {
        let mut v = view("c1", "web-01", "alice", 1_764_636_000_000, "failed");
        v.detail = "restore failed: \x1b[2J\rall good".into();
        v.module = "backup\x1b[1A".into();
        let text = render(&entries(&[v], &AuditFilter::default()));
        assert!(
            text.lines().all(|l| !l.chars().any(char::is_control)),
            "{text:?}"
        );
        assert!(text.contains("restore failed: ␛[2J␍all good"), "{text}");
        assert!(text.contains("pause backup␛[1A"), "{text}");
    }
}
