//! Human renderings of API replies. Pure: the same reply and `now` give the same text.

use opsfleet_proto::api::{CommandView, DiskView, HostView, SeqRange, StatusReply};

use crate::audit::{action_cell, role_cell};
use crate::sanitize::inert;
use crate::table::Table;

/// "3s ago", "5m ago", "2h ago", "4d ago"; "never" for 0; "in the future" for clock skew.
pub fn ago(now_unix_ms: i64, then_unix_ms: i64) -> String {
    if then_unix_ms <= 0 {
        return "never".to_owned();
    }
    let d = now_unix_ms - then_unix_ms;
    if d < -1000 {
        return "in the future".to_owned();
    }
    let s = d.max(0) / 1000;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        7200..=172_799 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// `path used% level`, as a disk shows in a table cell.
pub fn disk_cell(d: &DiskView) -> String {
    format!("{} {:.1}% {}", d.path, d.used_percent, d.level)
}

/// How many seqs the gap ranges leave out.
pub fn missing_seqs(gaps: &[SeqRange]) -> u64 {
    gaps.iter().map(|g| g.last - g.first + 1).sum()
}

fn disks(h: &HostView) -> String {
    if h.disks.is_empty() {
        return "-".to_owned();
    }
    h.disks.iter().map(disk_cell).collect::<Vec<_>>().join(", ")
}

fn modules(h: &HostView) -> String {
    if h.modules.is_empty() {
        return "-".to_owned();
    }
    h.modules
        .iter()
        .map(|m| format!("{}:{}", m.name, m.state))
        .collect::<Vec<_>>()
        .join(" ")
}

fn gaps(h: &HostView) -> String {
    if h.gaps.is_empty() {
        return "-".to_owned();
    }
    let missing = missing_seqs(&h.gaps);
    format!("{missing} missing in {} range(s)", h.gaps.len())
}

/// A coordinator's epoch as shown: `-` while it acts under none (a standby, or before the
/// election), not a misleading 0.
pub fn epoch_cell(epoch: u64) -> String {
    if epoch == 0 {
        "-".to_owned()
    } else {
        epoch.to_string()
    }
}

/// `opsctl status` as a header line plus a table of hosts.
pub fn status(reply: &StatusReply, now_unix_ms: i64) -> String {
    let r = &reply.responder;
    let mut out = format!(
        "coordinator {} ({}, {}, epoch {}): stream seq {}, {} behind, {} events in log, {} hosts\n",
        inert(&r.name),
        inert(&r.color),
        inert(r.role.as_str()),
        epoch_cell(r.epoch),
        r.applied_stream_seq,
        r.behind,
        reply.log_events,
        reply.hosts.len()
    );
    if reply.hosts.is_empty() {
        out.push_str("no hosts have reported yet\n");
        return out;
    }
    let mut table = Table::new(&["HOST", "LAST SEEN", "SEQ", "DISK", "MODULES", "GAPS"]);
    for h in &reply.hosts {
        table.row([
            h.host.clone(),
            ago(now_unix_ms, h.last_seen_unix_ms),
            h.last_seq.to_string(),
            disks(h),
            modules(h),
            gaps(h),
        ]);
    }
    table.write_to(&mut out);
    for h in reply.hosts.iter().filter(|h| h.maintenance) {
        out.push_str(&format!(
            "{}: in maintenance (drained; alerts do not page; `opsctl undrain --host {}` ends it)\n",
            h.host, h.host
        ));
    }
    for h in reply.hosts.iter().filter(|h| !h.truncated.is_empty()) {
        out.push_str(&format!(
            "{}: truncated over its caps: {}\n",
            inert(&h.host),
            h.truncated.describe()
        ));
    }
    out
}

/// Command results or the ledger: one row per command.
pub fn commands(views: &[CommandView], now_unix_ms: i64) -> String {
    if views.is_empty() {
        return "no commands\n".to_owned();
    }
    let mut table = Table::new(&[
        "HOST", "ACTION", "STATE", "EPOCH", "BY", "ROLE", "UPDATED", "COMMAND", "DETAIL",
    ]);
    for c in views {
        let updated = c.history.last().map_or(0, |h| h.at_unix_ms);
        table.row([
            c.target.clone(),
            action_cell(c.action, &c.module),
            c.state.to_string(),
            c.epoch.to_string(),
            c.issued_by.clone(),
            role_cell(c.issued_role),
            ago(now_unix_ms, updated),
            c.id.clone(),
            if c.accepted_count > 1 {
                format!("RAN {} TIMES; {}", c.accepted_count, c.detail)
            } else {
                c.detail.clone()
            },
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::{ago, status};
    use opsfleet_proto::api::StatusReply;

    #[test]
    fn host_names_under_the_status_table_are_inert() {
        let reply: StatusReply = serde_json::from_value(serde_json::json!({
            "responder": {"name": "blue", "color": "blue", "role": "active", "epoch": 1,
                "applied_stream_seq": 1, "behind": 0},
            "digest": "", "log_events": 1, "duplicates_dropped": 0, "malformed_parked": 0,
            "hosts": [{
                "host": "web-01\x1b[2J\r", "last_seen_unix_ms": 1, "last_seq": 1,
                "incarnation": "", "events": 1, "gaps": [], "disks": [], "modules": [],
                "truncated": {"disks": 3}
            }]
        }))
        .expect("a status reply");
        let text = status(&reply, 2);
        for line in text.lines() {
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
        assert!(text.contains("web-01␛[2J␍: truncated"), "{text}");
    }

    #[test]
    fn ago_picks_a_readable_unit() {
        let now = 1_000_000_000;
        assert_eq!(ago(now, 0), "never");
        assert_eq!(ago(now, now - 3_400), "3s ago");
        assert_eq!(ago(now, now - 600_000), "10m ago");
        assert_eq!(ago(now, now - 3 * 3_600_000), "3h ago");
        assert_eq!(ago(now, now - 3 * 86_400_000), "3d ago");
        assert_eq!(ago(now, now + 500), "0s ago");
        assert_eq!(ago(now, now + 5_000), "in the future");
    }
}
