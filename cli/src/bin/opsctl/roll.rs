//! `opsctl service start|stop|restart|reload|deploy`: resolves the hosts that have the service,
//! issues the command to one batch (`--max-parallel` hosts) at a time through the shared
//! command path, waits for each batch's answers (the agent answers a start, restart or reload
//! only once the service is ready), and stops at the first batch that does not complete:
//! the hosts not attempted are listed. Per-host results as the other verbs, `-o json` too.

use std::time::Duration;

use opsfleet_cli::client::Api;
use opsfleet_cli::roll::{batches, not_attempted, service_hosts, ServiceVerb};
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::{outcome, render};
use opsfleet_proto::api::{CommandRequest, CommandState, CommandView, SkippedHost};
use opsfleet_proto::time::now_unix_ms;
use serde::Serialize;

use crate::args::{Output, ServiceOpTargets, Targets};
use crate::exit::Usage;
use crate::issue::{add_unseen, await_answers, operator_name};
use crate::show::print;

/// What `opsctl service <verb> --output json` prints.
#[derive(Debug, Serialize)]
struct RollOutcome {
    service: String,
    /// The hosts in roll order and the batches they were split into.
    batches: Vec<Vec<String>>,
    all_completed: bool,
    /// Every command issued, per host, in roll order.
    commands: Vec<CommandView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<SkippedHost>,
    /// Hosts never sent the command because the roll stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_attempted: Vec<String>,
    /// Why the roll stopped, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

/// The first host of a batch that did not complete, as `web-02 failed: <detail>`.
fn batch_failure(views: &[CommandView], batch: &[String]) -> Option<String> {
    for host in batch {
        match views.iter().find(|v| &v.target == host) {
            Some(v) if v.state == CommandState::Completed => {}
            Some(v) if v.detail.is_empty() => return Some(format!("{host} {}", v.state.as_str())),
            Some(v) => return Some(format!("{host} {}: {}", v.state.as_str(), v.detail)),
            None => return Some(format!("{host}: no answer")),
        }
    }
    None
}

/// What the batches gave: every command, the hosts skipped, each batch's outcome.
#[derive(Default)]
struct Rolled {
    commands: Vec<CommandView>,
    skipped: Vec<SkippedHost>,
    outcomes: Vec<Result<(), String>>,
}

/// Runs the roll; fails (exit 1) unless every host completed.
pub async fn run(
    api: &Api,
    verb: ServiceVerb,
    st: ServiceOpTargets,
    output: Output,
) -> anyhow::Result<()> {
    let ServiceOpTargets { what, targets: t } = st;
    if let ServiceVerb::Deploy(spec) = &verb {
        if let Some(why) = spec.problem() {
            return Err(Usage(why).into());
        }
    }
    let labels = t.labels.iter().cloned().collect();
    let hosts = service_hosts(api, &what.service, &t.hosts, &labels, t.all).await?;
    let plan = batches(&hosts, usize::try_from(what.max_parallel).unwrap_or(1));
    if t.no_wait && plan.len() > 1 {
        return Err(Usage(format!(
            "--no-wait cannot roll over {} hosts {} at a time: nothing would wait for a batch \
             before the next; raise --max-parallel to {} or drop --no-wait",
            hosts.len(),
            what.max_parallel,
            hosts.len()
        ))
        .into());
    }
    let rolled = roll(api, &verb, &what.service, &plan, &t).await?;
    let stopped = not_attempted(&plan, &rolled.outcomes);
    let all_completed = stopped.is_none()
        && rolled
            .commands
            .iter()
            .all(|v| v.state == CommandState::Completed);
    let result = RollOutcome {
        service: what.service.clone(),
        batches: plan.clone(),
        all_completed,
        commands: rolled.commands,
        skipped: rolled.skipped,
        summary: stopped.as_ref().map(|(reason, _)| reason.clone()),
        not_attempted: stopped.map(|(_, rest)| rest).unwrap_or_default(),
    };
    let action = verb.request(what.service.clone()).name();
    print(&result, output, |o| {
        text(o, action.as_str(), hosts.len(), what.max_parallel)
    })?;
    if let Some(reason) = result.summary {
        anyhow::bail!(
            "{} roll stopped at {reason}; see `opsctl commands`",
            action.as_str()
        );
    }
    Ok(())
}

/// Issues the command batch by batch, waiting for each, until one does not complete.
async fn roll(
    api: &Api,
    verb: &ServiceVerb,
    service: &str,
    plan: &[Vec<String>],
    t: &Targets,
) -> anyhow::Result<Rolled> {
    let action_name = verb.request(service.to_owned()).name();
    let action = action_name.as_str();
    let wait = if t.no_wait {
        Duration::ZERO
    } else {
        t.wait_or(verb.default_wait())
    };
    let mut out = Rolled::default();
    for (i, batch) in plan.iter().enumerate() {
        let hosts = batch.join(", ");
        eprintln!(
            "{action} {}: batch {}/{}: {}",
            inert(service),
            i + 1,
            plan.len(),
            inert(&hosts)
        );
        let req = CommandRequest {
            action: verb.request(service.to_owned()),
            targets: opsfleet_proto::api::Targets {
                hosts: batch.clone(),
                all: false,
                labels: Default::default(),
            },
            deadline_ms: u64::try_from(t.deadline.as_millis()).unwrap_or(u64::MAX),
            issued_by: operator_name(api),
        };
        let reply = match api.command(&req).await {
            Ok(reply) => reply,
            // Nothing done yet: the refusal is the answer (a role, an unknown service).
            Err(e) if i == 0 => return Err(e.into()),
            Err(e) => {
                out.outcomes.push(Err(format!("{hosts}: {e}")));
                break;
            }
        };
        for line in outcome::up_front(&reply) {
            eprintln!("{}", inert(&line));
        }
        let mut views = await_answers(api, action, &reply, wait).await?;
        add_unseen(&mut views, &reply, action_name);
        views.sort_by(|a, b| a.target.cmp(&b.target));
        let failure = (!t.no_wait).then(|| batch_failure(&views, batch)).flatten();
        match &failure {
            Some(why) => eprintln!("{action}: {}", inert(why)),
            None => eprintln!("{action}: {} done", inert(&hosts)),
        }
        out.skipped.extend(reply.skipped.clone());
        out.commands.extend(views);
        let stop = failure.is_some();
        out.outcomes.push(failure.map_or(Ok(()), Err));
        if stop {
            break;
        }
    }
    Ok(out)
}

/// The table: every command, then each host not attempted and why.
fn text(o: &RollOutcome, action: &str, hosts: usize, max_parallel: u32) -> String {
    let mut text = format!(
        "{action} {} on {hosts} host(s), {max_parallel} at a time\n{}",
        inert(&o.service),
        render::commands(&o.commands, now_unix_ms())
    );
    if let Some(reason) = &o.summary {
        for host in &o.not_attempted {
            text.push_str(&format!(
                "{}: not attempted: roll stopped at {}\n",
                inert(host),
                inert(reason)
            ));
        }
    }
    text
}
