//! Tables of `opsctl hosts|backups|incidents|alerts|services`. Pure: the same reply and `now` give the
//! same text (golden-tested in `cli/tests/golden/`).

use opsfleet_proto::api::{
    AlertView, AlertsReply, BackupView, BackupsReply, HostSummary, HostsReply, IncidentsReply,
    ModuleState, Responder, ServicesReply,
};

use crate::render::{ago, disk_cell};
use crate::sanitize::inert;
use crate::table::Table;

/// "answered by blue (active, epoch 7, behind 0)".
pub fn answered_by(r: &Responder) -> String {
    format!(
        "answered by {} ({}, epoch {}, behind {})\n",
        inert(&r.name),
        inert(r.role.as_str()),
        crate::render::epoch_cell(r.epoch),
        r.behind
    )
}

/// A closing line when `--limit` left rows out.
fn more(out: &mut String, next: Option<&str>) {
    if let Some(after) = next {
        let after = inert(after);
        out.push_str(&format!("more rows follow after {after} (raise --limit)\n"));
    }
}

/// `silenced (0193a4c2)`, `acked by alice`, both, or `-`.
fn hush_cell(a: &AlertView) -> String {
    let mut parts = Vec::new();
    if !a.silenced_by.is_empty() {
        let ids: Vec<&str> = (a.silenced_by.iter())
            .map(|id| id.get(..8).unwrap_or(id))
            .collect();
        parts.push(format!("silenced ({})", ids.join(", ")));
    }
    if let Some(by) = &a.acked_by {
        parts.push(format!("acked by {by}"));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// 1536 -> "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// 1500 -> "1.5s", 250 -> "250ms", 125000 -> "2m5s".
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The first line of `text`, cut to `max` characters with `…`.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim_end();
    let more_lines = text.trim_end().lines().nth(1).is_some();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else if more_lines {
        format!("{line} …")
    } else {
        line.to_owned()
    }
}

fn modules(h: &HostSummary) -> String {
    if h.modules.is_empty() {
        return "-".to_owned();
    }
    let running = h
        .modules
        .iter()
        .filter(|m| m.state == ModuleState::Running)
        .count();
    let mut parts = vec![format!("{running}/{} running", h.modules.len())];
    parts.extend(
        h.modules
            .iter()
            .filter(|m| m.state != ModuleState::Running)
            .map(|m| format!("{}:{}", m.name, m.state)),
    );
    parts.join(" ")
}

fn trouble(h: &HostSummary) -> String {
    let mut t: Vec<String> = h.unhealthy.clone();
    t.extend(
        h.check_conditions
            .iter()
            .map(|c| format!("{}:{} ({})", c.check, c.condition.as_str(), c.detail)),
    );
    if h.incidents > 0 {
        t.push(format!("{} incident(s)", h.incidents));
    }
    if h.failing_backups > 0 {
        t.push(format!("{} failing backup(s)", h.failing_backups));
    }
    t.extend(h.down_services.iter().map(|s| format!("service {s}")));
    if h.missing_events > 0 {
        t.push(format!("{} event(s) missing", h.missing_events));
    }
    if !h.truncated.is_empty() {
        t.push(format!("truncated: {}", h.truncated.describe()));
    }
    if t.is_empty() {
        "-".to_owned()
    } else {
        t.join(", ")
    }
}

/// `opsctl hosts`: one row per host.
pub fn hosts(reply: &HostsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.hosts.is_empty() {
        out.push_str("no hosts match\n");
        return out;
    }
    let mut t = Table::new(&[
        "HOST",
        "STATE",
        "LAST SEEN",
        "SEQ",
        "DISK",
        "MODULES",
        "TROUBLE",
    ]);
    for h in &reply.hosts {
        t.row([
            h.host.clone(),
            if h.maintenance {
                format!("{} (maintenance)", h.liveness)
            } else {
                h.liveness.to_string()
            },
            ago(now_unix_ms, h.last_seen_unix_ms),
            h.last_seq.to_string(),
            h.worst_disk.as_ref().map_or("-".to_owned(), disk_cell),
            modules(h),
            trouble(h),
        ]);
    }
    t.write_to(&mut out);
    out.push_str(&format!("{} host(s)\n", reply.hosts.len()));
    more(&mut out, reply.next.as_deref());
    out
}

fn last_failure(b: &BackupView, now_unix_ms: i64) -> String {
    b.last_failure.as_ref().map_or("-".to_owned(), |f| {
        format!(
            "{}: {}",
            ago(now_unix_ms, f.at_unix_ms),
            one_line(&f.reason, 50)
        )
    })
}

/// The REMOTE cell: `-` without a remote copy, else its state and what backs it
/// (`ok 3h ago`, `failed 5m ago: reason`, `discrepancy: 1 missing, 0 extra, 0 mismatched`).
fn remote(b: &BackupView, now_unix_ms: i64) -> String {
    let Some(r) = &b.remote else {
        return "-".to_owned();
    };
    match r.state() {
        "failed" => r.last_sync_failure.as_ref().map_or_else(
            || "failed".to_owned(),
            |f| {
                format!(
                    "failed {}: {}",
                    ago(now_unix_ms, f.at_unix_ms),
                    one_line(&f.reason, 40)
                )
            },
        ),
        "discrepancy" => r.reconciled.as_ref().map_or_else(
            || "discrepancy".to_owned(),
            |d| {
                format!(
                    "discrepancy: {} missing, {} extra, {} mismatched",
                    d.missing_count, d.extra_count, d.mismatched_count
                )
            },
        ),
        "ok" => r.last_synced.as_ref().map_or_else(
            || "ok".to_owned(),
            |s| format!("ok {}", ago(now_unix_ms, s.at_unix_ms)),
        ),
        other => other.to_owned(),
    }
}

/// The RESTORE TEST cell: `-` without tests declared or run, else the newest test's outcome,
/// age and where the archive came from (`passed 2h ago from local`, `failed 5m ago from
/// path:/mnt/nas: reason`), or `never (every 168h)` for a declared test not run yet.
fn restore_test(b: &BackupView, now_unix_ms: i64) -> String {
    let Some(t) = &b.restore_test else {
        return "-".to_owned();
    };
    match &t.last {
        None => match t.every_ms {
            Some(ms) => format!("never (every {})", duration_ms(ms)),
            None => "-".to_owned(),
        },
        Some(l) => {
            let head = format!(
                "{} {} from {}",
                t.state(),
                ago(now_unix_ms, l.at_unix_ms),
                l.source
            );
            if l.passed {
                head
            } else {
                format!("{head}: {}", one_line(&l.reason, 40))
            }
        }
    }
}

/// `opsctl backups`: one row per host and job.
/// `opsctl backups --archives`: every archive kept per host and job, newest first; the names
/// `opsctl restore --archive` takes.
pub fn archives(reply: &BackupsReply) -> String {
    let mut out = answered_by(&reply.responder);
    let total: usize = reply.backups.iter().map(|b| b.archives.len()).sum();
    if total == 0 {
        out.push_str("no archives kept as far as the catalog knows\n");
        more(&mut out, reply.next.as_deref());
        return out;
    }
    let mut t = Table::new(&["HOST", "JOB", "ARCHIVE", "NEWEST"]);
    for b in &reply.backups {
        for (i, a) in b.archives.iter().rev().enumerate() {
            t.row([
                b.host.clone(),
                b.job.clone(),
                a.rsplit('/').next().unwrap_or(a).to_owned(),
                if i == 0 { "*" } else { "" }.to_owned(),
            ]);
        }
    }
    t.write_to(&mut out);
    out.push_str(&format!(
        "{total} archive(s) of {} job(s)\n",
        reply
            .backups
            .iter()
            .filter(|b| !b.archives.is_empty())
            .count()
    ));
    more(&mut out, reply.next.as_deref());
    out
}

pub fn backups(reply: &BackupsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.backups.is_empty() {
        out.push_str("no backup jobs have reported\n");
        return out;
    }
    let mut t = Table::new(&[
        "HOST",
        "JOB",
        "STATE",
        "LAST SUCCESS",
        "ARCHIVE",
        "SIZE",
        "FILES",
        "TOOK",
        "KEPT",
        "PRUNED",
        "LAST FAILURE",
        "REMOTE",
        "RESTORE TEST",
    ]);
    for b in &reply.backups {
        let (when, archive, size, files, took) = match &b.last_success {
            Some(s) => (
                ago(now_unix_ms, s.at_unix_ms),
                // The file name; the destination directory is in the agent's config.
                s.archive
                    .rsplit('/')
                    .next()
                    .unwrap_or(&s.archive)
                    .to_owned(),
                bytes(s.size_bytes),
                s.files.to_string(),
                duration_ms(s.duration_ms),
            ),
            None => (
                "never".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        let pruned = if b.pruned_archives == 0 {
            "-".to_owned()
        } else {
            format!("{} ({})", b.pruned_archives, bytes(b.pruned_bytes))
        };
        t.row([
            b.host.clone(),
            b.job.clone(),
            b.state.to_string(),
            when,
            archive,
            size,
            files,
            took,
            b.archives_kept.to_string(),
            pruned,
            last_failure(b, now_unix_ms),
            remote(b, now_unix_ms),
            restore_test(b, now_unix_ms),
        ]);
    }
    t.write_to(&mut out);
    more(&mut out, reply.next.as_deref());
    out
}

/// `opsctl services`: one row per host and service.
pub fn services(reply: &ServicesReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.services.is_empty() {
        out.push_str("no services have reported\n");
        return out;
    }
    let mut t = Table::new(&[
        "HOST",
        "SERVICE",
        "MANAGER",
        "STATE",
        "HEALTH",
        "VERSION",
        "SINCE",
        "PID",
        "INSTANCE",
        "RESTARTS",
        "LAST EXIT",
    ]);
    let or_dash = |v: &str| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            one_line(v, 40)
        }
    };
    for s in &reply.services {
        t.row([
            s.host.clone(),
            s.service.clone(),
            s.manager.clone(),
            s.state.to_string(),
            s.health.map_or_else(|| "-".to_owned(), |h| h.to_string()),
            if s.version.is_empty() {
                "-".to_owned()
            } else {
                one_line(&s.version, 30)
            },
            ago(now_unix_ms, s.since_unix_ms),
            if s.pid == 0 {
                "-".to_owned()
            } else {
                s.pid.to_string()
            },
            or_dash(&s.instance),
            s.restarts.to_string(),
            if s.exit_detail.is_empty() {
                "-".to_owned()
            } else {
                one_line(&s.exit_detail, 60)
            },
        ]);
    }
    t.write_to(&mut out);
    more(&mut out, reply.next.as_deref());
    out
}

/// `opsctl incidents`: one row per host and log file.
pub fn incidents(reply: &IncidentsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.incidents.is_empty() {
        out.push_str("no log incidents\n");
        return out;
    }
    let mut t = Table::new(&[
        "HOST",
        "FILE",
        "PATTERN",
        "COUNT",
        "SUPPRESSED",
        "FIRST SEEN",
        "LAST SEEN",
        "LAST EXCERPT",
    ]);
    for i in &reply.incidents {
        t.row([
            i.host.clone(),
            i.path.clone(),
            i.pattern.clone(),
            i.count.to_string(),
            i.suppressed.to_string(),
            ago(now_unix_ms, i.first_seen_unix_ms),
            ago(now_unix_ms, i.last_seen_unix_ms),
            one_line(&i.last_excerpt, 60),
        ]);
    }
    t.write_to(&mut out);
    more(&mut out, reply.next.as_deref());
    out
}

/// `opsctl alerts`: one row per alert.
pub fn alerts(reply: &AlertsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.alerts.is_empty() {
        out.push_str("no alerts\n");
        return out;
    }
    let mut t = Table::new(&[
        "HOST",
        "RULE",
        "SUBJECT",
        "STATE",
        "SINCE",
        "LAST TRANSITION",
        "NOTIFIED",
        "SILENCED/ACKED",
        "DETAIL",
    ]);
    for a in &reply.alerts {
        t.row([
            a.host.clone(),
            a.rule.clone(),
            if a.subject.is_empty() {
                "-".to_owned()
            } else {
                a.subject.clone()
            },
            a.state.to_string(),
            ago(now_unix_ms, a.since_unix_ms),
            if a.last_transition.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "{} ({})",
                    a.last_transition,
                    ago(now_unix_ms, a.last_transition_unix_ms)
                )
            },
            a.notifications_sent.to_string(),
            hush_cell(a),
            one_line(&a.detail, 60),
        ]);
    }
    t.write_to(&mut out);
    more(&mut out, reply.next.as_deref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_lines_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(duration_ms(250), "250ms");
        assert_eq!(duration_ms(1500), "1.5s");
        assert_eq!(duration_ms(125_000), "2m5s");
        assert_eq!(one_line("a\nb", 10), "a …");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("abc\n", 4), "abc");
    }
}
