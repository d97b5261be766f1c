//! What a command verb says about its commands (pure): the hosts skipped and the ones not up,
//! said up front; the progress line counting outcomes by kind (`2 done, 1 rejected, 1 expired
//! of 4`); and the closing line stating what happened when not every host completed.

use std::time::{Duration, UNIX_EPOCH};

use opsfleet_proto::api::{CommandReply, CommandState, CommandView};

/// The progress word of a state: `done` for completed, `waiting` for issued, `running` for
/// accepted, else the state's name.
fn word(state: CommandState) -> &'static str {
    match state {
        CommandState::Completed => "done",
        CommandState::Issued => "waiting",
        CommandState::Accepted => "running",
        other => other.as_str(),
    }
}

/// The order the kinds are counted in.
const ORDER: [CommandState; 7] = [
    CommandState::Completed,
    CommandState::Failed,
    CommandState::Rejected,
    CommandState::Expired,
    CommandState::Accepted,
    CommandState::Issued,
    CommandState::Unknown,
];

/// `2 done, 1 rejected, 1 expired of 4`: each kind present, in a fixed order; commands the
/// ledger does not show yet count as waiting.
pub fn progress(views: &[CommandView], total: usize) -> String {
    let unseen = total.saturating_sub(views.len());
    let parts: Vec<String> = ORDER
        .iter()
        .filter_map(|&state| {
            let mut n = views.iter().filter(|v| v.state == state).count();
            if state == CommandState::Issued {
                n += unseen;
            }
            (n > 0).then(|| format!("{n} {}", word(state)))
        })
        .collect();
    format!("{} of {total}", parts.join(", "))
}

/// A Unix time in ms as `2026-12-05T18:40:12Z`.
pub fn utc(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// What the reply says before any agent answers: hosts skipped and why, hosts not up with the
/// deadline their command waits until. One line each.
pub fn up_front(reply: &CommandReply) -> Vec<String> {
    let mut lines = Vec::new();
    if !reply.skipped.is_empty() {
        let hosts: Vec<String> = reply
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.host, s.reason))
            .collect();
        lines.push(format!(
            "skipped {} host(s) that cannot take the command: {}",
            reply.skipped.len(),
            hosts.join(", ")
        ));
    }
    for c in &reply.commands {
        let Some(liveness) = c.liveness else { continue };
        let deadline = if reply.deadline_unix_ms > 0 {
            format!("until its deadline {}", utc(reply.deadline_unix_ms))
        } else {
            "until its deadline".to_owned()
        };
        lines.push(format!(
            "{} is {liveness} (last heard from {}): its command waits {deadline}, and expires \
             unless the agent returns by then",
            c.host,
            if c.last_seen_unix_ms > 0 {
                utc(c.last_seen_unix_ms)
            } else {
                "never".to_owned()
            }
        ));
    }
    lines
}

/// How one command ended (or where it stands), for the closing line.
fn host_result(v: &CommandView) -> String {
    let state = v.state.as_str();
    if v.detail.is_empty() {
        format!("{} {state}", v.target)
    } else {
        format!("{} {state}: {}", v.target, v.detail)
    }
}

/// The closing line when not every host completed: what happened on each host that did not
/// (`pause log did not complete on 2 of 3 hosts: web-01 rejected: unknown module "log"; ...`),
/// and for commands still open, that they still are after `waited` (queued commands for hosts
/// not up are named as such). `None` when every host completed.
pub fn summary(
    action: &str,
    views: &[CommandView],
    reply: &CommandReply,
    waited: Duration,
) -> Option<String> {
    let total = reply.commands.len();
    let not_done: Vec<&CommandView> = views
        .iter()
        .filter(|v| v.state != CommandState::Completed)
        .collect();
    if not_done.is_empty() && views.len() == total {
        return None;
    }
    let not_up = |host: &str| {
        reply
            .commands
            .iter()
            .any(|c| c.host == host && c.liveness.is_some())
    };
    let (ended, open): (Vec<&CommandView>, Vec<&CommandView>) =
        not_done.into_iter().partition(|v| v.is_final());
    let mut parts: Vec<String> = ended.iter().map(|v| host_result(v)).collect();
    let (queued, running): (Vec<&CommandView>, Vec<&CommandView>) =
        open.into_iter().partition(|v| not_up(&v.target));
    if !queued.is_empty() {
        let hosts: Vec<&str> = queued.iter().map(|v| v.target.as_str()).collect();
        parts.push(format!(
            "{} not up: queued until {}",
            hosts.join(", "),
            utc(reply.deadline_unix_ms)
        ));
    }
    if !running.is_empty() {
        let hosts: Vec<String> = running.iter().map(|v| host_result(v)).collect();
        parts.push(format!(
            "no final answer after {} from {}",
            humantime::format_duration(waited),
            hosts.join(", ")
        ));
    }
    let failed = total
        - views
            .iter()
            .filter(|v| v.state == CommandState::Completed)
            .count();
    Some(format!(
        "{action} did not complete on {failed} of {total} host(s): {}",
        parts.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::api::{IssuedCommand, Liveness, Responder};

    fn view(host: &str, state: CommandState, detail: &str) -> CommandView {
        CommandView {
            id: format!("id-{host}"),
            target: host.into(),
            epoch: 3,
            issued_by: "alice".into(),
            issued_role: None,
            action: None,
            module: String::new(),
            deadline_unix_ms: 0,
            state,
            detail: detail.into(),
            accepted_count: 0,
            history: vec![],
        }
    }

    fn reply(hosts: &[(&str, Option<Liveness>)]) -> CommandReply {
        CommandReply {
            responder: Responder {
                name: "blue".into(),
                color: "blue".into(),
                role: opsfleet_proto::api::LeaderRole::Active,
                epoch: 3,
                applied_stream_seq: 0,
                behind: 0,
            },
            epoch: 3,
            commands: hosts
                .iter()
                .map(|(h, l)| IssuedCommand {
                    host: (*h).into(),
                    command_id: format!("id-{h}"),
                    liveness: *l,
                    last_seen_unix_ms: if l.is_some() { 1_790_000_000_000 } else { 0 },
                })
                .collect(),
            deadline_unix_ms: 1_790_000_060_000,
            skipped: vec![],
        }
    }

    #[test]
    fn progress_counts_outcomes_by_kind() {
        let views = [
            view("a", CommandState::Completed, ""),
            view("b", CommandState::Completed, ""),
            view("c", CommandState::Rejected, "x"),
            view("d", CommandState::Expired, ""),
        ];
        assert_eq!(progress(&views, 4), "2 done, 1 rejected, 1 expired of 4");
        assert_eq!(progress(&views[..1], 2), "1 done, 1 waiting of 2");
    }

    #[test]
    fn the_summary_states_what_happened() {
        let r = reply(&[("web-01", None), ("web-02", Some(Liveness::Lost))]);
        let views = [
            view("web-01", CommandState::Rejected, "unknown module \"x\""),
            view("web-02", CommandState::Issued, ""),
        ];
        assert_eq!(
            summary("pause", &views, &r, Duration::from_secs(30)).unwrap(),
            "pause did not complete on 2 of 2 host(s): web-01 rejected: unknown module \"x\"; \
             web-02 not up: queued until 2026-09-21T14:14:20Z"
        );
        let done = [view("web-01", CommandState::Completed, "ok")];
        assert_eq!(
            summary("noop", &done, &reply(&[("web-01", None)]), Duration::ZERO),
            None
        );
        let lines = up_front(&r);
        assert_eq!(
            lines,
            [
                "web-02 is lost (last heard from 2026-09-21T14:13:20Z): its command waits until \
              its deadline 2026-09-21T14:14:20Z, and expires unless the agent returns by then"
            ]
        );
    }
}
