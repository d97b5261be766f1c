//! `opsctl rollout status`, `opsctl rollouts` and the plan `rollout start` prints: a rollout as
//! a readable block (header, waves, hosts, skipped hosts, the last steps) and the table of
//! rollouts. Pure: the same view and `now` give the same text (golden-tested).

use opsfleet_proto::api::{RolloutGates, RolloutHostState, RolloutView, RolloutsReply};

use crate::outcome::utc;
use crate::render::ago;
use crate::sanitize::inert;
use crate::table::Table;
use crate::views::render::{answered_by, duration_ms, one_line};

/// How many of the newest steps `rollout status` shows.
pub const HISTORY_SHOWN: usize = 10;

/// Wave 0 is the canary: `canary`, `wave 1`, ...
pub fn wave_name(wave: u32) -> String {
    if wave == 0 {
        "canary".to_owned()
    } else {
        format!("wave {wave}")
    }
}

/// 60000 -> "1m", 90000 -> "1m 30s".
pub fn soak_text(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// `wave 2/3` (wave 0, the canary: `canary/3`): where the rollout is of its later waves.
fn wave_cell(v: &RolloutView) -> String {
    let later = v.waves.len().saturating_sub(1);
    if v.wave == 0 {
        format!("canary/{later}")
    } else {
        format!("{}/{later}", v.wave)
    }
}

fn updated(v: &RolloutView) -> usize {
    v.hosts
        .iter()
        .filter(|h| h.state == RolloutHostState::Updated)
        .count()
}

/// The gates on one line: `3 ready samples, soak 1m, 1 host at a time, manual promote`.
pub fn gates_line(g: &RolloutGates) -> String {
    let mut parts = vec![
        format!("{} ready samples", g.ready_samples),
        format!("soak {}", soak_text(g.soak_ms)),
        format!("{} host(s) at a time", g.max_unavailable),
    ];
    if g.manual {
        parts.push("manual promote".to_owned());
    }
    if g.two_person {
        parts.push("two-person promote".to_owned());
    }
    if !g.before_job.is_empty() {
        parts.push(format!("before: backup job {}", inert(&g.before_job)));
    }
    if g.max_p95_ms > 0 {
        parts.push(format!("probe p95 under {}", soak_text(g.max_p95_ms)));
    }
    if g.keep_old_ms > 0 {
        parts.push(format!("old slot kept {}", soak_text(g.keep_old_ms)));
    }
    parts.join(", ")
}

/// What `rollout start` prints first: the id, the waves with their hosts, the skipped hosts
/// and why, the gates.
pub fn plan(v: &RolloutView) -> String {
    let mut out = format!(
        "rollout {} of {} {} ({}): {} host(s) in {} wave(s)\n",
        inert(&v.id),
        inert(&v.service),
        inert(&v.version),
        v.strategy.as_str(),
        v.hosts.len(),
        v.waves.len()
    );
    for w in &v.waves {
        out.push_str(&format!(
            "  {}: {}\n",
            wave_name(w.wave),
            inert(&w.hosts.join(", "))
        ));
    }
    for s in &v.skipped {
        out.push_str(&format!(
            "  skipped {}: {}\n",
            inert(&s.host),
            inert(&s.reason)
        ));
    }
    out.push_str(&format!("gates: {}\n", gates_line(&v.gates)));
    out
}

/// `rollout status`: the whole rollout at `now`.
pub fn status(v: &RolloutView, now_unix_ms: i64) -> String {
    let mut out = format!(
        "rollout {}\nservice:  {} {} ({})\nphase:    {}, {} ({} of {} host(s) updated)\n",
        inert(&v.id),
        inert(&v.service),
        inert(&v.version),
        v.strategy.as_str(),
        v.phase.as_str(),
        wave_name(v.wave),
        updated(v),
        v.hosts.len()
    );
    out.push_str(&format!(
        "started:  by {} at {} ({})\n",
        inert(&v.started_by),
        utc(v.started_at_unix_ms),
        ago(now_unix_ms, v.started_at_unix_ms)
    ));
    if v.ended_at_unix_ms > 0 {
        out.push_str(&format!(
            "ended:    at {} ({})\n",
            utc(v.ended_at_unix_ms),
            ago(now_unix_ms, v.ended_at_unix_ms)
        ));
    }
    if !v.reason.is_empty() {
        out.push_str(&format!("reason:   {}\n", inert(&v.reason)));
    }
    out.push_str(&format!("gates:    {}\n\n", gates_line(&v.gates)));
    waves_table(v, now_unix_ms, &mut out);
    out.push('\n');
    hosts_table(v, &mut out);
    for s in &v.skipped {
        out.push_str(&format!(
            "skipped {}: {}\n",
            inert(&s.host),
            inert(&s.reason)
        ));
    }
    history(v, now_unix_ms, &mut out);
    out
}

fn waves_table(v: &RolloutView, now_unix_ms: i64, out: &mut String) {
    let mut t = Table::new(&["WAVE", "HOSTS", "STATE", "SOAK UNTIL", "DETAIL"]);
    for w in &v.waves {
        // Only while it soaks: afterwards the time is history (`rollout status` steps).
        let soak = if w.soak_until_unix_ms > 0 && w.state == "soaking" {
            let left = u64::try_from(w.soak_until_unix_ms - now_unix_ms).unwrap_or(0);
            format!("{} (in {})", utc(w.soak_until_unix_ms), duration_ms(left))
        } else {
            "-".to_owned()
        };
        t.row([
            wave_name(w.wave),
            w.hosts.join(", "),
            w.state.clone(),
            soak,
            dash(&one_line(&w.detail, 60)),
        ]);
    }
    t.write_to(out);
}

fn hosts_table(v: &RolloutView, out: &mut String) {
    if v.hosts.is_empty() {
        out.push_str("no hosts\n");
        return;
    }
    let mut t = Table::new(&[
        "HOST", "WAVE", "STATE", "PREVIOUS", "RUNNING", "DEPLOYS", "DETAIL",
    ]);
    for h in &v.hosts {
        let state = match h.state {
            RolloutHostState::RollbackFailed => "ROLLBACK_FAILED".to_owned(),
            s => s.as_str().to_owned(),
        };
        t.row([
            h.host.clone(),
            wave_name(h.wave),
            state,
            dash(&h.previous),
            dash(&h.running),
            h.deploys.to_string(),
            dash(&one_line(&h.detail, 60)),
        ]);
    }
    t.write_to(out);
}

fn history(v: &RolloutView, now_unix_ms: i64, out: &mut String) {
    if v.history.is_empty() {
        return;
    }
    let shown = v.history.len().min(HISTORY_SHOWN);
    out.push_str(&format!("\nlast {shown} of {} step(s):\n", v.history.len()));
    let mut t = Table::new(&["WHEN", "EPOCH", "STEP", "DETAIL"]);
    for s in &v.history[v.history.len() - shown..] {
        t.row([
            ago(now_unix_ms, s.at_unix_ms),
            s.epoch.to_string(),
            s.step.clone(),
            one_line(&s.detail, 80),
        ]);
    }
    t.write_to(out);
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// `opsctl rollouts`: one row per rollout, newest first as the coordinator answered.
pub fn table(reply: &RolloutsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.rollouts.is_empty() {
        out.push_str("no rollouts\n");
        return out;
    }
    let mut t = Table::new(&[
        "ID", "SERVICE", "VERSION", "STRATEGY", "PHASE", "WAVE", "HOSTS", "BY", "STARTED", "REASON",
    ]);
    for v in &reply.rollouts {
        t.row([
            v.id.clone(),
            v.service.clone(),
            v.version.clone(),
            v.strategy.as_str().to_owned(),
            v.phase.as_str().to_owned(),
            wave_cell(v),
            format!("{}/{}", updated(v), v.hosts.len()),
            v.started_by.clone(),
            ago(now_unix_ms, v.started_at_unix_ms),
            dash(&one_line(&v.reason, 40)),
        ]);
    }
    t.write_to(&mut out);
    out
}
