//! `opsctl drills` and `opsctl drill run <name>`: the flags, the calls (`ops.api.drills`,
//! `ops.api.drill` as an operator) and their text (pure, golden-tested).

use std::time::Duration;

use clap::{Args, Subcommand};
use opsfleet_proto::api::{DrillRunReply, DrillRunRequest, DrillsReply, DrillsRequest};
use opsfleet_proto::subjects;

use crate::client::{Api, ClientError};
use crate::render::ago;
use crate::sanitize::inert;
use crate::table::Table;
use crate::views::render::answered_by;

/// Examples shown by `opsctl drills --help` and `opsctl drill run --help`.
pub const DRILLS_HELP: &str = "\
Drills are declared in the coordinators' config (`[[drills]]`, docs/drills.md); the active
coordinator runs each once per period (`every`, plus a jitter), never while a host is in
maintenance, records every start and result as events, and raises `drill_overdue` when no
run passed within `every` + `grace` and `drill_failed` when the last run failed.

Examples:
  opsctl drills                      every drill: schedule, next due, last result
  opsctl drills notify-test          one drill with its recent runs
  opsctl -o json drills              the same as JSON, for scripts
  opsctl drill run notify-test       run it now (operator role); waits for its result";

/// `opsctl drills`.
#[derive(Args, Debug, Clone)]
pub struct DrillsArgs {
    /// Only this drill (its recent runs are listed too).
    pub drill: Option<String>,
    /// Ask this coordinator (default: whichever answers first).
    #[arg(long)]
    pub coordinator: Option<String>,
}

/// `opsctl drill ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum DrillCommand {
    /// Run a declared drill now (operator role): the active coordinator records its start,
    /// runs it and answers with its result. Refused while another drill runs. Exits 1 when
    /// the drill failed.
    #[command(after_help = DRILLS_HELP)]
    Run(DrillRunArgs),
}

/// `opsctl drill run`.
#[derive(Args, Debug, Clone)]
pub struct DrillRunArgs {
    /// The drill's name in `[[drills]]`.
    pub drill: String,
    /// How long to wait for the drill's result.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// Every drill (or one), from the named coordinator or whichever answers first.
pub async fn drills(api: &Api, a: DrillsArgs) -> Result<DrillsReply, ClientError> {
    let subject = match &a.coordinator {
        Some(c) => subjects::api_subject_for(subjects::API_DRILLS, c),
        None => subjects::API_DRILLS.to_owned(),
    };
    api.call(subject, &DrillsRequest { drill: a.drill }).await
}

/// Runs a drill now, as `requested_by`; answered once it ended.
pub async fn run(
    api: &Api,
    a: DrillRunArgs,
    requested_by: String,
) -> Result<DrillRunReply, ClientError> {
    let req = DrillRunRequest {
        drill: a.drill,
        requested_by: Some(requested_by),
    };
    api.drill_run(&req, a.wait).await
}

fn span(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// When something is due: `in 3m`, `now` (overdue to start), `off`.
fn due(now: i64, at: i64, enabled: bool) -> String {
    if !enabled {
        return "off".to_owned();
    }
    if at <= now {
        return "now".to_owned();
    }
    let secs = (at - now + 999) / 1000;
    format!(
        "in {}",
        humantime::format_duration(Duration::from_secs(secs as u64))
    )
}

/// The drills table, and the runs of each when one drill was asked for.
pub fn render_drills(reply: &DrillsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.drills.is_empty() {
        out.push_str("no drills declared ([[drills]] in the coordinator's config)\n");
        return out;
    }
    let mut t = Table::new(&[
        "DRILL",
        "KIND",
        "EVERY",
        "NEXT",
        "LAST",
        "RESULT",
        "PASSED",
        "OVERDUE AFTER",
    ]);
    for d in &reply.drills {
        let last = d.runs.last();
        let result = match last {
            Some(r) if r.phase == "started" => "running".to_owned(),
            Some(r) => r.phase.clone(),
            None => "-".to_owned(),
        };
        t.row([
            inert(&d.name),
            d.kind.clone(),
            span(d.every_ms),
            due(now_unix_ms, d.next_due_unix_ms, d.enabled),
            last.map_or("never".to_owned(), |r| ago(now_unix_ms, r.started_unix_ms)),
            result,
            ago(now_unix_ms, d.last_passed_unix_ms),
            span(d.overdue_after_ms),
        ]);
    }
    t.write_to(&mut out);
    if let [d] = reply.drills.as_slice() {
        if !d.runs.is_empty() {
            out.push_str(&format!("\nruns of {} (newest last):\n", inert(&d.name)));
            let mut r = Table::new(&["STARTED", "BY", "EPOCH", "RESULT", "TOOK", "DETAIL"]);
            for run in &d.runs {
                r.row([
                    ago(now_unix_ms, run.started_unix_ms),
                    inert(&run.requested_by),
                    run.epoch.to_string(),
                    run.phase.clone(),
                    if run.phase == "started" {
                        "-".to_owned()
                    } else {
                        format!("{} ms", run.took_ms)
                    },
                    inert(&run.detail),
                ]);
            }
            r.write_to(&mut out);
        }
    }
    out
}

/// What a run did, in one line.
pub fn render_run(r: &DrillRunReply) -> String {
    format!(
        "drill {} ({}) {} in {} ms (run {}): {}\n",
        inert(&r.drill),
        r.kind,
        r.phase,
        r.took_ms,
        r.run_id,
        inert(&r.detail)
    )
}

#[cfg(test)]
mod tests {
    use opsfleet_proto::api::{DrillRunView, DrillView, LeaderRole, Responder};

    use super::*;

    fn responder() -> Responder {
        Responder {
            name: "blue".into(),
            color: "blue".into(),
            role: LeaderRole::Active,
            epoch: 7,
            applied_stream_seq: 10,
            behind: 0,
        }
    }

    #[test]
    fn the_table_shows_schedule_next_due_and_runs() {
        let now = 1_000_000_000;
        let reply = DrillsReply {
            responder: responder(),
            drills: vec![DrillView {
                name: "notify-test".into(),
                kind: "notification_test".into(),
                every_ms: 7 * 86_400_000,
                jitter_ms: 3_600_000,
                overdue_after_ms: 10 * 86_400_000 + 12 * 3_600_000,
                enabled: true,
                group: None,
                next_due_unix_ms: now + 3_600_000,
                running: false,
                last_passed_unix_ms: now - 120_000,
                last_failed_unix_ms: 0,
                runs: vec![DrillRunView {
                    run_id: "r1".into(),
                    slot_unix_ms: now - 200_000,
                    epoch: 7,
                    requested_by: "schedule".into(),
                    phase: "passed".into(),
                    started_unix_ms: now - 121_000,
                    ended_unix_ms: now - 120_000,
                    took_ms: 1000,
                    detail: "ops: sent (1 attempt(s))".into(),
                }],
            }],
        };
        let text = render_drills(&reply, now);
        println!("{text}");
        assert!(text.contains("notify-test"), "{text}");
        assert!(text.contains("in 1h"), "{text}");
        assert!(text.contains("passed"), "{text}");
        assert!(text.contains("runs of notify-test"), "{text}");
        assert!(text.contains("ops: sent (1 attempt(s))"), "{text}");
    }
}
