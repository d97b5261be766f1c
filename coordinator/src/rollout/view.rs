//! A rollout as `ops.api.rollouts` shows it: phase, waves with their gate state, each host's
//! state derived from the commands the rollout sent it, and the version its heartbeat reports.

use opsfleet_proto::api::{
    CommandState, RolloutGates, RolloutHostState, RolloutHostView, RolloutStepView, RolloutView,
    RolloutWaveView, SkippedHost,
};

use crate::projection::rollouts::{Rollout, RolloutHost};
use crate::projection::Fleet;

fn host_state(h: &RolloutHost) -> (RolloutHostState, String, String) {
    let Some(last) = h.commands.last() else {
        return (RolloutHostState::Pending, String::new(), String::new());
    };
    let state = last.state;
    let done = state == CommandState::Completed;
    let failed = matches!(state, CommandState::Failed | CommandState::Rejected) && !last.fenced;
    let s = match last.purpose.as_str() {
        "before" if failed => RolloutHostState::Failed,
        "before" => RolloutHostState::Before,
        "deploy" | "switch" if done => RolloutHostState::Updated,
        "deploy" | "switch" if failed => RolloutHostState::Failed,
        "deploy" | "switch" => RolloutHostState::Deploying,
        "stop_old" => RolloutHostState::Updated,
        _ if done => RolloutHostState::RolledBack,
        _ if failed => RolloutHostState::RollbackFailed,
        _ => RolloutHostState::RollingBack,
    };
    (s, last.id.clone(), last.detail.clone())
}

fn wave_state(r: &Rollout, wave: u32) -> (String, i64, String) {
    let started = r.wave().is_some_and(|w| wave <= w);
    if !started {
        return ("pending".to_owned(), 0, String::new());
    }
    let failed = (r.gates.iter()).find(|g| g.wave == wave && !g.passed);
    if let Some(g) = failed {
        return ("failed".to_owned(), 0, g.reason.clone());
    }
    let Some(deployed) = r.gate(wave, "deploy") else {
        return ("updating".to_owned(), 0, String::new());
    };
    match r.gate(wave, "soak") {
        None => {
            let soak = i64::try_from(r.plan.soak_ms).unwrap_or(i64::MAX);
            let until = (deployed.at_unix_ms).saturating_add(soak.max(super::decide::SETTLE_MS));
            ("soaking".to_owned(), until, String::new())
        }
        Some(_) if r.waiting_promote() == Some(wave) => {
            ("waiting_promote".to_owned(), 0, String::new())
        }
        Some(g) => ("passed".to_owned(), 0, g.reason.clone()),
    }
}

/// The view of `r`, with the running versions from `fleet`.
pub fn view(r: &Rollout, fleet: &Fleet) -> RolloutView {
    let p = &r.plan;
    let running_of = if r.strategy == opsfleet_proto::api::RolloutStrategy::BlueGreen {
        &p.green_service
    } else {
        &p.service
    };
    let mut skipped: Vec<SkippedHost> = (p.skipped.iter())
        .map(|(host, reason)| SkippedHost {
            host: host.clone(),
            reason: reason.clone(),
        })
        .collect();
    let mut hosts = Vec::new();
    for (name, h) in &r.hosts {
        if !h.skipped.is_empty() {
            skipped.push(SkippedHost {
                host: name.clone(),
                reason: h.skipped.clone(),
            });
            continue;
        }
        let (state, command_id, detail) = host_state(h);
        hosts.push(RolloutHostView {
            host: name.clone(),
            wave: h.wave,
            state,
            previous: p.previous.get(name).cloned().unwrap_or_default(),
            running: (fleet.host(name).and_then(|x| x.services.get(running_of)))
                .map(|s| s.app_version.clone())
                .unwrap_or_default(),
            command_id,
            detail,
            deploys: h.deploys_completed(),
        });
    }
    hosts.sort_by(|a, b| (a.wave, &a.host).cmp(&(b.wave, &b.host)));
    RolloutView {
        id: r.id.clone(),
        service: p.service.clone(),
        version: p.version.clone(),
        strategy: r.strategy,
        phase: r.phase(),
        reason: r.reason().to_owned(),
        started_by: p.started_by.clone(),
        started_at_unix_ms: r.started_at_unix_ms,
        ended_at_unix_ms: r.ended.as_ref().map_or(0, |(_, _, at)| *at),
        wave: r.wave().unwrap_or(0),
        waves: (p.waves.iter().enumerate())
            .map(|(i, hosts)| {
                let wave = u32::try_from(i).unwrap_or(u32::MAX);
                let (state, soak_until_unix_ms, detail) = wave_state(r, wave);
                RolloutWaveView {
                    wave,
                    hosts: hosts.clone(),
                    state,
                    soak_until_unix_ms,
                    detail,
                }
            })
            .collect(),
        hosts,
        skipped,
        gates: RolloutGates {
            ready_samples: p.ready_samples,
            soak_ms: p.soak_ms,
            manual: p.manual,
            two_person: p.two_person,
            max_unavailable: p.max_unavailable,
            before_job: p.before_job.clone(),
            keep_old_ms: p.keep_old_ms,
            max_p95_ms: p.max_p95_ms,
        },
        history: (r.history.iter())
            .map(|s| RolloutStepView {
                at_unix_ms: s.at_unix_ms,
                epoch: s.epoch,
                step: s.step.clone(),
                detail: s.detail.clone(),
            })
            .collect(),
    }
}
