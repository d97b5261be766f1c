//! `opsctl silence add|list|expire` and `opsctl alerts ack`: flags, the requests they make
//! (`ops.api.silence`, `ops.api.alert_ack` as the operator; `ops.api.silences` paged) and the
//! silences table.

use std::time::Duration;

use clap::{Args, Subcommand};
use opsfleet_proto::api::{
    AlertAckRequest, SilenceAdd, SilenceRequest, SilencesReply, SilencesRequest,
};

use crate::client::{Api, ClientError};
use crate::paging::fetch_all;
use crate::render::ago;
use crate::sanitize::inert;
use crate::table::Table;
use crate::views::render::{answered_by, one_line};

/// `opsctl silence ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum SilenceCommand {
    /// Silence alerts matching a host glob, labels and/or rules for a while: they still fire
    /// and show in `opsctl alerts` (SILENCED), but nothing is notified until the silence ends;
    /// a still-firing alert is notified then. Needs the operator role.
    #[command(after_help = ADD_HELP)]
    Add(AddArgs),
    /// Silences: active and upcoming ones, or every one kept with `--all`.
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// End a silence now (its id, or a unique prefix of at least 8 characters). Needs the
    /// operator role.
    #[command(after_help = EXPIRE_HELP)]
    Expire(ExpireArgs),
}

#[derive(Args, Debug, Clone)]
pub struct AddArgs {
    /// Hosts whose name matches this glob (`web-*`, `db-0?`, or one name).
    #[arg(long)]
    pub host: Option<String>,
    /// Hosts with this label (`key=value`, from their heartbeat); repeat: all must match.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Alerts of this rule (`disk_crit`, `host_lost`, ...); repeat for several.
    #[arg(long = "rule", value_name = "NAME")]
    pub rules: Vec<String>,
    /// How long, from now (`30m`, `2h`, `1d`; at most 30 days).
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Why (required; shown in `silence list` and the audit trail).
    #[arg(long)]
    pub reason: String,
}

impl AddArgs {
    /// The request, or why it cannot be one (a usage error).
    pub fn request(&self) -> Result<SilenceRequest, String> {
        if self.host.is_none() && self.labels.is_empty() && self.rules.is_empty() {
            return Err("give at least one matcher: --host, --label or --rule".into());
        }
        let duration_ms = i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX);
        Ok(SilenceRequest::Add(SilenceAdd {
            host: self.host.clone(),
            labels: self.labels.clone(),
            rules: self.rules.clone(),
            duration_ms,
            reason: self.reason.clone(),
        }))
    }
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Ended silences too (expired, or past their end).
    #[arg(long)]
    pub all: bool,
    /// Ask this coordinator (by name) instead of whichever answers first.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Show at most this many rows.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct ExpireArgs {
    /// The silence's id, or a unique prefix of at least 8 characters.
    pub id: String,
}

/// `opsctl alerts ack`.
#[derive(Args, Debug, Clone)]
pub struct AckArgs {
    /// The alert's key, `<rule>/<host>/<subject>` (`.alerts[].key` in `opsctl alerts -o
    /// json`), e.g. `disk_crit/web-01//data`.
    pub id: String,
    /// A note for the others (shown in `opsctl alerts -o json`).
    #[arg(long)]
    pub comment: Option<String>,
}

impl AckArgs {
    pub fn request(&self) -> AlertAckRequest {
        AlertAckRequest {
            id: self.id.clone(),
            comment: self.comment.clone(),
        }
    }
}

/// Examples shown by `opsctl silence add --help`.
pub const ADD_HELP: &str = "\
Examples:
  opsctl --operator alice silence add --host web-01 --for 2h --reason \"disk swap\"
  opsctl --operator alice silence add --label env=staging --rule disk_crit --for 30m --reason \"load test\"

Every matcher given must hold (a host glob, every --label, one of the --rule names). A silence
is an event in the log: a coordinator that becomes active honours it. It ends by itself at the
end of --for, or earlier with `opsctl silence expire ID`.";

/// Examples shown by `opsctl silence list --help`.
pub const LIST_HELP: &str = "\
Examples:
  opsctl silence list                   active and upcoming silences
  opsctl silence list --all             expired and ended ones too
  opsctl silence list -o json | jq -r '.silences[].id'";

/// Examples shown by `opsctl silence expire --help`.
pub const EXPIRE_HELP: &str = "\
Examples:
  opsctl --operator alice silence expire 0193a4c2

A still-firing alert the silence held is notified right after.";

/// Examples shown by `opsctl alerts ack --help`.
pub const ACK_HELP: &str = "\
Examples:
  opsctl --operator alice alerts ack disk_crit/web-01//data --comment \"swapping it\"

The ack belongs to the alert's current firing: its next transition (resolve, or firing again)
clears it. A resolve after an ack is still notified.";

/// `opsctl silence list`: every page.
pub async fn list(api: &Api, a: &ListArgs) -> Result<SilencesReply, ClientError> {
    let req = SilencesRequest {
        all: a.all,
        ..Default::default()
    };
    fetch_all(api, a.coordinator.as_deref(), req, a.limit).await
}

/// "in 45s", "in 12m", "in 2h", "in 3d".
fn until(now_unix_ms: i64, end_unix_ms: i64) -> String {
    let s = (end_unix_ms - now_unix_ms).max(0) / 1000;
    match s {
        0..=119 => format!("in {s}s"),
        120..=7199 => format!("in {}m", s / 60),
        7200..=172_799 => format!("in {}h", s / 3600),
        _ => format!("in {}d", s / 86_400),
    }
}

/// Silences as a table.
pub fn render(reply: &SilencesReply) -> String {
    let now = reply.now_unix_ms;
    let mut out = answered_by(&reply.responder);
    if reply.silences.is_empty() {
        out.push_str("no silences\n");
        return out;
    }
    let mut t = Table::new(&["ID", "STATE", "MATCHERS", "ENDS", "BY", "REASON"]);
    for s in &reply.silences {
        let mut matchers = Vec::new();
        if !s.host.is_empty() {
            matchers.push(format!("host={}", s.host));
        }
        matchers.extend(s.labels.iter().cloned());
        matchers.extend(s.rules.iter().map(|r| format!("rule={r}")));
        let end = s.expired_unix_ms.unwrap_or(s.ends_unix_ms);
        let ends = if end > now {
            until(now, end)
        } else {
            ago(now, end)
        };
        let by = match &s.expired_by {
            Some(x) => format!("{} (expired by {x})", s.created_by),
            None => s.created_by.clone(),
        };
        t.row([
            s.id.clone(),
            s.state.clone(),
            matchers.join(" "),
            ends,
            by,
            one_line(&s.reason, 60),
        ]);
    }
    t.write_to(&mut out);
    if let Some(next) = &reply.next {
        let next = inert(next);
        out.push_str(&format!("more rows follow after {next} (raise --limit)\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_needs_a_matcher() {
        let args = AddArgs {
            host: None,
            labels: vec![],
            rules: vec![],
            duration: Duration::from_secs(60),
            reason: "x".into(),
        };
        assert!(args.request().unwrap_err().contains("at least one matcher"));
        let args = AddArgs {
            rules: vec!["disk_crit".into()],
            ..args
        };
        let SilenceRequest::Add(a) = args.request().unwrap() else {
            panic!("add")
        };
        assert_eq!((a.duration_ms, a.rules.len()), (60_000, 1));
    }
}
