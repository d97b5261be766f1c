//! `opsctl events`: filters over the event stream and one-line renderings of events. Pure
//! functions; the stream reading lives in opsctl's `follow.rs`.

use opsfleet_proto::api::{
    AlertState, CertLevel, DiskLevel, LeaderRole, ModuleState, NotifyOutcome, ProbeStatus,
    ServiceRunState,
};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::{body_class, BodyClass, EventEnvelope};
use serde::Serialize;
use serde_json::Value;

mod payload;
pub use payload::payload;

use crate::sanitize::inert;

/// What to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub host: Option<String>,
    pub module: Option<String>,
    /// A kind, or a pattern with `*` (`backup_*`, `*`).
    pub kind: Option<String>,
}

impl Filter {
    /// The narrowest server-side subject filter: `ops.*.<host|*>.<kind|*>`, covering agents'
    /// `ops.evt.` and coordinators' `ops.coord.` spaces (the only two in `OPS_EVENTS`); partial
    /// kind patterns are matched here, client-side.
    pub fn subject(&self) -> String {
        let host = self.host.as_deref().unwrap_or("*");
        let kind = match self.kind.as_deref() {
            Some(k) if !k.contains('*') => k,
            _ => "*",
        };
        format!("ops.*.{host}.{kind}")
    }

    pub fn matches(&self, ev: &EventEnvelope) -> bool {
        self.host.as_deref().is_none_or(|h| h == ev.host)
            && self.module.as_deref().is_none_or(|m| m == ev.module)
            && self.kind.as_deref().is_none_or(|k| wildcard(k, ev.kind()))
    }
}

/// Whether the coordinators refuse this event for where it was published (pure): a
/// coordinator-only body or the coordinators' module on an agent's subject, or an agent body
/// on a coordinator's subject. Such an event is in the stream but never in any log, so
/// `opsctl events` does not show it as if it had happened. (Lifecycle events for another
/// host's command are refused too; that needs the ledger, which only coordinators hold.)
pub fn refused_by_subject(subject: &str, ev: &EventEnvelope) -> bool {
    use opsfleet_proto::subjects::{parse_any_event_subject, Publisher};
    use opsfleet_proto::COORDINATOR_MODULE;
    let class = body_class(&ev.body);
    match parse_any_event_subject(subject) {
        Some(Publisher::Agent { .. }) => {
            class == BodyClass::Coordinator || ev.module == COORDINATOR_MODULE
        }
        Some(Publisher::Coordinator { .. }) => {
            ev.module != COORDINATOR_MODULE
                || !(class == BodyClass::Coordinator || matches!(ev.body, Body::CommandExpired(_)))
        }
        None => true,
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A short human summary of an event's body.
pub fn summary(body: &Body) -> String {
    match body_class(body) {
        BodyClass::Agent => agent(body),
        BodyClass::Lifecycle => lifecycle(body),
        BodyClass::Coordinator => coordinator(body),
    }
}

/// What an agent reports about its own host (`BodyClass::Agent`; any other body is named
/// by its kind).
fn agent(body: &Body) -> String {
    match body {
        Body::Heartbeat(h) => format!(
            "uptime {}s, {} modules, outbox {}",
            h.uptime_ms / 1000,
            h.modules.len(),
            h.outbox_pending
        ),
        Body::Disk(d) => disk(d),
        Body::ModuleState(m) => format!(
            "{} {} {}{}",
            m.module,
            m.kind,
            ModuleState::from_wire(m.state),
            note(": ", &m.reason, "")
        ),
        Body::EventsDropped(d) => format!("{} events dropped (outbox full)", d.count),
        Body::LogMatch(m) => format!(
            "{} [{}] {} line(s): {}",
            m.path,
            m.pattern,
            m.lines,
            first_line(&m.excerpt)
        ),
        Body::LogSuppressed(s) => format!("{}: {} matching lines suppressed", s.path, s.count),
        Body::Sentinel(s) => format!(
            "{} age {}s (max {}s)",
            s.path,
            s.age_ms / 1000,
            s.max_age_ms / 1000
        ),
        Body::Health(h) => format!(
            "{} ({}) {}{}{}: {}",
            h.check,
            h.probe,
            ProbeStatus::from_wire(h.status),
            if h.slow {
                format!(", slow (p95 {}ms)", h.latency_p95_ms)
            } else {
                String::new()
            },
            match CertLevel::from_wire(h.cert_level) {
                CertLevel::Warn | CertLevel::Crit => {
                    format!(", cert {}", CertLevel::from_wire(h.cert_level))
                }
                _ => String::new(),
            },
            h.detail
        ),
        Body::BackupStarted(b) => format!("{} run {} started", b.job, b.run_id),
        Body::BackupProgress(b) => format!(
            "{} run {}: {} files, {} bytes",
            b.job, b.run_id, b.files, b.bytes
        ),
        Body::BackupCompleted(b) => format!(
            "{} run {} completed: {} ({} files, {} bytes, {} ms)",
            b.job, b.run_id, b.archive, b.files, b.size_bytes, b.duration_ms
        ),
        Body::BackupFailed(b) => format!("{} run {} failed: {}", b.job, b.run_id, b.reason),
        Body::BackupPruned(b) => format!(
            "{} pruned {} archive(s), {} bytes",
            b.job,
            b.archives.len(),
            b.bytes_freed
        ),
        Body::BackupSynced(b) => format!(
            "{} synced {} to {} ({} bytes, {} ms{})",
            b.job,
            b.archive,
            b.destination,
            b.bytes,
            b.duration_ms,
            if b.remote_pruned.is_empty() {
                String::new()
            } else {
                format!(", {} remote archive(s) pruned", b.remote_pruned.len())
            }
        ),
        Body::BackupSyncFailed(b) => format!(
            "{} sync of {} to {} failed: {}",
            b.job,
            if b.archive.is_empty() {
                "-"
            } else {
                &b.archive
            },
            b.destination,
            b.reason
        ),
        Body::BackupDiscrepancy(b) => format!(
            "{} reconciled with {}: {} missing, {} extra, {} mismatched ({} remote archives)",
            b.job,
            b.destination,
            b.missing.len(),
            b.extra.len(),
            b.mismatched.len(),
            b.remote_archives
        ),
        Body::RestoreTested(t) => format!(
            "{} restore test of {} from {} {} ({} files, {} bytes, {} ms{}){}{}",
            t.job,
            if t.archive.is_empty() {
                "-"
            } else {
                &t.archive
            },
            if t.source.is_empty() { "-" } else { &t.source },
            if t.passed { "passed" } else { "FAILED" },
            t.files,
            t.bytes,
            t.duration_ms,
            if t.check.is_empty() {
                String::new()
            } else {
                format!(", check {}", t.check)
            },
            if t.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", t.reason)
            },
            if t.requested_by == "schedule" || t.requested_by.is_empty() {
                String::new()
            } else {
                format!(" [command {}]", t.requested_by)
            }
        ),
        Body::RestoreCompleted(r) => format!(
            "{} restored {} to {} ({} files)",
            r.job, r.archive, r.target, r.files
        ),
        Body::RestoreFailed(r) => {
            format!("{} restore of {} failed: {}", r.job, r.archive, r.reason)
        }
        Body::Janitor(j) => format!(
            "{}{}: removed {} files, {} dirs, {} bytes",
            j.root,
            if j.dry_run { " (dry run)" } else { "" },
            j.removed_files,
            j.removed_dirs,
            j.bytes
        ),
        Body::ConfigRejected(c) => format!("{} config rejected: {}", c.module, c.reason),
        Body::Service(s) => format!(
            "{} {} pid {}, {} restart(s){}",
            s.service,
            ServiceRunState::from_wire(s.state),
            s.pid,
            s.restarts,
            note(": ", &s.exit_detail, "")
        ),
        Body::ServiceRemediation(r) => format!(
            "{} {}{} ({} automatic in the last hour): {}",
            r.service,
            r.action,
            if r.capped { " capped" } else { "" },
            r.in_last_hour,
            r.reason
        ),
        Body::ServiceDeployed(d) => format!(
            "{} deployed {} (was {}) from {}{} in {} ms{}",
            d.service,
            d.version,
            if d.previous.is_empty() {
                "none"
            } else {
                &d.previous
            },
            d.location,
            if d.fetched { ", fetched" } else { "" },
            d.duration_ms,
            note(" (rollout ", &d.rollout_id, ")")
        ),
        Body::DrillRun(d) => format!(
            "drill {} ({}) {}{} (epoch {}, {}){}",
            d.drill,
            d.kind,
            d.phase,
            if d.phase == "started" {
                String::new()
            } else {
                format!(" in {} ms", d.took_ms)
            },
            d.epoch,
            d.requested_by,
            note(": ", &d.detail, "")
        ),
        other => opsfleet_proto::body_kind(other).to_owned(),
    }
}

/// An agent's answer about a command (`BodyClass::Lifecycle`; any other body is named by
/// its kind).
fn lifecycle(body: &Body) -> String {
    match body {
        Body::CommandAccepted(c) => {
            format!("command {} accepted (epoch {})", c.command_id, c.epoch)
        }
        Body::CommandCompleted(c) => format!("command {} completed: {}", c.command_id, c.detail),
        Body::CommandFailed(c) => format!("command {} failed: {}", c.command_id, c.reason),
        // The epochs explain only a fencing refusal (as in the ledger).
        Body::CommandRejected(c) if c.epoch < c.highest_epoch_seen => format!(
            "command {} rejected: {} (epoch {}, highest seen {})",
            c.command_id, c.reason, c.epoch, c.highest_epoch_seen
        ),
        Body::CommandRejected(c) => format!("command {} rejected: {}", c.command_id, c.reason),
        Body::CommandExpired(c) => format!("command {} expired", c.command_id),
        other => opsfleet_proto::body_kind(other).to_owned(),
    }
}

/// What only coordinators say (`BodyClass::Coordinator`; any other body is named by its
/// kind).
fn coordinator(body: &Body) -> String {
    match body {
        Body::Leadership(l) => format!(
            "{} {} at epoch {}{}",
            l.coordinator,
            LeaderRole::from_wire(l.role),
            l.epoch,
            note(" (", &l.reason, ")")
        ),
        Body::CommandIssued(c) => format!(
            "command {} {} {} to {} (epoch {}, by {})",
            c.command_id, c.action, c.module, c.target, c.epoch, c.issued_by
        ),
        Body::HostLiveness(l) => format!(
            "host {} {} (last seen {}, interval {}s, epoch {})",
            l.target_host,
            if l.lost { "lost" } else { "returned" },
            l.last_seen_unix_ms,
            l.interval_ms / 1000,
            l.epoch
        ),
        Body::AlertTransition(a) => format!(
            "alert {} {} [{}] {} (epoch {})",
            a.alert_id,
            AlertState::from_wire(a.state),
            a.severity,
            a.summary,
            a.epoch
        ),
        Body::NotificationSent(n) => format!(
            "notification {} via {}: {} after {} attempt(s){}",
            n.alert_id,
            n.route,
            NotifyOutcome::from_wire(n.outcome),
            n.attempts,
            note(" (", &n.detail, ")")
        ),
        Body::SilenceAdded(a) => {
            let mut matchers = Vec::new();
            if !a.host_glob.is_empty() {
                matchers.push(format!("host={}", a.host_glob));
            }
            matchers.extend(a.labels.iter().cloned());
            matchers.extend(a.rules.iter().map(|r| format!("rule={r}")));
            let secs = a.ends_unix_ms.saturating_sub(a.starts_unix_ms).max(0) / 1000;
            format!(
                "silence {} added by {}{} for {}s ({}): {}",
                a.silence_id,
                a.created_by,
                note(" as ", &a.created_role, ""),
                secs,
                matchers.join(" "),
                a.reason
            )
        }
        Body::SilenceExpired(x) => format!(
            "silence {} expired by {}{}",
            x.silence_id,
            x.by,
            note(" as ", &x.role, "")
        ),
        Body::AlertAcked(k) => format!(
            "alert {} acknowledged by {}{}{}",
            k.alert_id,
            k.by,
            note(" as ", &k.role, ""),
            note(": ", &k.comment, "")
        ),
        Body::Rollout(r) => format!(
            "rollout {} {} (epoch {})",
            r.rollout_id,
            rollout_step(r.step.as_ref()),
            r.epoch
        ),
        Body::GroupFailover(g) => format!(
            "group {} failover {} -> {} {}{}{} (epoch {}){}",
            g.group,
            if g.from_host.is_empty() {
                "-"
            } else {
                &g.from_host
            },
            g.to_host,
            g.phase,
            if g.drill { " (drill)" } else { "" },
            if g.phase == "completed" {
                format!(" in {} ms", g.took_ms)
            } else {
                String::new()
            },
            g.epoch,
            note(
                ": ",
                if g.detail.is_empty() {
                    &g.reason
                } else {
                    &g.detail
                },
                ""
            )
        ),
        other => opsfleet_proto::body_kind(other).to_owned(),
    }
}

/// One rollout step as a line.
fn rollout_step(step: Option<&pb::rollout_step::Step>) -> String {
    use pb::rollout_step::Step;
    match step {
        None => "step".to_owned(),
        Some(Step::Started(s)) => format!(
            "started: {} {} in {} wave(s), {} by {}",
            s.service,
            s.version,
            s.waves.len(),
            s.strategy,
            s.started_by
        ),
        Some(Step::WaveStarted(w)) => format!("wave {} started", w.wave),
        Some(Step::HostCommand(c)) => format!(
            "{} {} {} (command {})",
            c.purpose, c.host, c.version, c.command_id
        ),
        Some(Step::HostSkipped(k)) => format!("{} skipped: {}", k.host, k.reason),
        Some(Step::Gate(g)) => format!(
            "wave {} gate {} {}: {}",
            g.wave,
            g.gate,
            if g.passed { "passed" } else { "failed" },
            g.reason
        ),
        Some(Step::Control(c)) => format!("{} by {}", c.op, c.by),
        Some(Step::Ended(e)) => format!("ended {}: {}", e.outcome, e.reason),
    }
}

fn disk(d: &pb::DiskUsage) -> String {
    format!(
        "{} {:.1}% used, inodes {:.1}%, {}{}",
        d.path,
        f64::from(d.used_basis_points) / 100.0,
        f64::from(d.inodes_used_basis_points) / 100.0,
        DiskLevel::from_wire(d.level),
        if d.level_changed {
            format!(" (was {})", DiskLevel::from_wire(d.previous_level))
        } else {
            String::new()
        }
    )
}

/// `open text close`, or nothing when `text` is empty.
fn note(open: &str, text: &str, close: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{open}{text}{close}")
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// One event as `opsctl events --output json` prints it (one object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLine {
    pub stream_seq: u64,
    pub time_unix_ms: i64,
    pub host: String,
    pub seq: u64,
    pub module: String,
    pub kind: &'static str,
    pub id: String,
    pub summary: String,
    /// The event body's own fields as recorded (e.g. `archive`, `sha256`, `size_bytes` of a
    /// `backup_completed`), names as in `event.proto`; states, levels and roles by name.
    pub payload: Value,
}

impl EventLine {
    pub fn new(stream_seq: u64, ev: &EventEnvelope) -> Self {
        EventLine {
            stream_seq,
            time_unix_ms: ev.time_unix_ms,
            host: ev.host.clone(),
            seq: ev.seq,
            module: ev.module.clone(),
            kind: ev.kind(),
            id: ev.id.to_string(),
            summary: summary(&ev.body),
            payload: payload(&ev.body),
        }
    }

    /// `2026-11-23T19:00:00.123Z web-01 #42 disk/disk  / 42.0% used, ...`, with untrusted
    /// text made inert (`sanitize::inert`).
    pub fn human(&self) -> String {
        let ts = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.time_unix_ms) * 1_000_000,
        )
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| self.time_unix_ms.to_string());
        // Host, module and summary come from hosts: made inert (the JSON form stays exact).
        format!(
            "{ts} {} #{} {}/{}  {}",
            inert(&self.host),
            self.seq,
            inert(&self.module),
            self.kind,
            inert(&self.summary)
        )
    }
}

#[cfg(test)]
mod tests;
