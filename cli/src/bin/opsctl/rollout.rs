//! `opsctl rollout start|status|pause|resume|promote|abort|undo` and `opsctl rollouts`: the
//! requests (`opsfleet_cli::rollout`), the plan and the follow (a line per change, read from
//! `ops.api.rollouts` every second until the rollout ends or waits for promote), and the exit
//! code: 0 when it got where it was asked to, 1 otherwise with the reason.

use std::cell::RefCell;
use std::time::Duration;

use opsfleet_cli::client::{Api, ClientError};
use opsfleet_cli::out::write_out;
use opsfleet_cli::rollout::args::{FollowPickArgs, PickArgs, RolloutCommand, RolloutsArgs};
use opsfleet_cli::rollout::progress::{changes, verdict, Aim, Verdict};
use opsfleet_cli::rollout::{act, find, op_request, RolloutError};
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::views::render::answered_by;
use opsfleet_cli::views::rollouts;
use opsfleet_cli::wait::{rollout_until, Follow};
use opsfleet_proto::api::{RolloutOp, RolloutReply, RolloutRequest, RolloutView, RolloutsRequest};
use opsfleet_proto::time::now_unix_ms;

use crate::args::Output;
use crate::exit::Usage;
use crate::issue::operator_name;
use crate::show::print;

/// How a rollout is followed: read every second; reads failing for a minute in a row (no
/// coordinator answering) end the follow, not the rollout.
const FOLLOW: Follow = Follow {
    every: Duration::from_secs(1),
    give_up_after: Duration::from_secs(60),
};

/// Runs one `opsctl rollout <verb>`.
pub async fn run(api: &Api, command: RolloutCommand, output: Output) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Start(a) => {
            let start = a.request().map_err(|e| Usage(e.to_string()))?;
            let req = RolloutRequest {
                op: RolloutOp::Start,
                start: Some(start),
                id: None,
                service: None,
                requested_by: operator_name(api),
            };
            let reply = act(api, &req).await?;
            let no_wait = a.follow.no_wait;
            if !(no_wait && output == Output::Json) {
                say(output, &rollouts::plan(&reply.rollout))?;
            }
            finish(api, reply, Aim::Complete, no_wait, output).await
        }
        RolloutCommand::Status(pick) => status(api, &pick, output).await,
        RolloutCommand::Pause(pick) => control(api, RolloutOp::Pause, &pick, output).await,
        RolloutCommand::Resume(pick) => control(api, RolloutOp::Resume, &pick, output).await,
        RolloutCommand::Promote(pick) => control(api, RolloutOp::Promote, &pick, output).await,
        RolloutCommand::Abort(a) => undoing(api, RolloutOp::Abort, Aim::Abort, a, output).await,
        RolloutCommand::Undo(a) => undoing(api, RolloutOp::Undo, Aim::Undo, a, output).await,
    }
}

/// `opsctl rollouts`.
pub async fn list(api: &Api, a: RolloutsArgs, output: Output) -> anyhow::Result<()> {
    let req = RolloutsRequest {
        id: None,
        service: a.service,
        limit: usize::try_from(a.limit).ok(),
    };
    let reply = api
        .rollouts(&req)
        .await
        .map_err(|source| RolloutError::List { source })?;
    print(&reply, output, |r| rollouts::table(r, now_unix_ms()))
}

/// `opsctl rollout status`: the block, or the `RolloutView` as JSON.
async fn status(api: &Api, pick: &PickArgs, output: Output) -> anyhow::Result<()> {
    let (reply, view) = find(api, pick).await?;
    print(&view, output, |v| {
        format!(
            "{}{}",
            answered_by(&reply.responder),
            rollouts::status(v, now_unix_ms())
        )
    })
}

/// `pause`, `resume`, `promote`: what the coordinator recorded, one line (or the reply).
async fn control(api: &Api, op: RolloutOp, pick: &PickArgs, output: Output) -> anyhow::Result<()> {
    let req = op_request(api, op, pick, &operator_name(api)).await?;
    let reply = act(api, &req).await?;
    print(&reply, output, |r| acted_line(op, r))
}

/// `abort` and `undo`: the request, then the rollback followed until it ends.
async fn undoing(
    api: &Api,
    op: RolloutOp,
    aim: Aim,
    a: FollowPickArgs,
    output: Output,
) -> anyhow::Result<()> {
    let req = op_request(api, op, &a.pick, &operator_name(api)).await?;
    let reply = act(api, &req).await?;
    if !(a.follow.no_wait && output == Output::Json) {
        say(output, &acted_line(op, &reply))?;
    }
    finish(api, reply, aim, a.follow.no_wait, output).await
}

/// `abort recorded by blue: rollout 0193a4c2-... of web 2.4.1 is rolling_back, wave 1`.
fn acted_line(op: RolloutOp, r: &RolloutReply) -> String {
    let v = &r.rollout;
    format!(
        "{} recorded by {}: rollout {} of {} {} is {}, {}\n",
        op.as_str(),
        inert(&r.responder.name),
        inert(&v.id),
        inert(&v.service),
        inert(&v.version),
        v.phase.as_str(),
        rollouts::wave_name(v.wave)
    )
}

/// After a start, abort or undo: with --no-wait the reply (JSON) or where to look next;
/// otherwise the follow, the closing line and the exit code.
async fn finish(
    api: &Api,
    reply: RolloutReply,
    aim: Aim,
    no_wait: bool,
    output: Output,
) -> anyhow::Result<()> {
    if no_wait {
        let id = inert(&reply.rollout.id);
        return print(&reply, output, |_| {
            format!("`opsctl rollout status {id}` shows how it goes\n")
        });
    }
    let last = follow(api, reply.rollout, aim, output).await?;
    if output == Output::Json {
        print(&last, output, |_| String::new())?;
    }
    match verdict(&last, aim) {
        Verdict::Done(Ok(line)) => say(output, &format!("{line}\n")),
        Verdict::Done(Err(line)) => anyhow::bail!(line),
        Verdict::Follow => anyhow::bail!("stopped following rollout {}", inert(&last.id)),
    }
}

/// Prints a line per change of the rollout until `verdict` stops; returns the last read.
async fn follow(
    api: &Api,
    first: RolloutView,
    aim: Aim,
    output: Output,
) -> anyhow::Result<RolloutView> {
    // A write that failed (stdout closed) ends the follow.
    let failed: RefCell<Option<anyhow::Error>> = RefCell::new(None);
    let last = rollout_until(
        api,
        first,
        FOLLOW,
        |v| failed.borrow().is_some() || verdict(v, aim) != Verdict::Follow,
        |prev, next| {
            for line in changes(prev, next) {
                if failed.borrow().is_none() {
                    if let Err(e) = say(output, &format!("{line}\n")) {
                        *failed.borrow_mut() = Some(e);
                    }
                }
            }
        },
        |e: &ClientError| {
            eprintln!(
                "opsctl: cannot read the rollout ({}); retrying for up to {}",
                inert(&e.to_string()),
                humantime::format_duration(FOLLOW.give_up_after)
            );
        },
    )
    .await
    .map_err(|source| RolloutError::List { source })?;
    match failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(last),
    }
}

/// Progress goes to standard output, except under `-o json`, where standard output is kept
/// for the JSON and progress goes to standard error.
fn say(output: Output, text: &str) -> anyhow::Result<()> {
    match output {
        Output::Table => Ok(write_out(text)?),
        Output::Json => {
            eprint!("{text}");
            Ok(())
        }
    }
}
