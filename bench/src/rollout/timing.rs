//! What the rollout section computes from what it saw (pure): each wave's span from the
//! coordinator's recorded steps (`wave_started` → the wave's passed `deploy` gate), the
//! per-host overhead beside the simulated deploy time, and CPU from `/proc/<pid>/stat`.

use opsfleet_proto::pb::{self, rollout_step::Step};

use crate::idle::parse_cpu_ticks;

/// One wave of a rollout as the coordinator recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveSpan {
    pub wave: u32,
    /// Hosts the plan put in the wave.
    pub hosts: usize,
    /// `deploy` commands the rollout recorded for the wave (one per host unless resent).
    pub deploys: usize,
    pub started_unix_ms: i64,
    pub deployed_unix_ms: i64,
}

impl WaveSpan {
    /// `wave_started` → deploy gate passed, in ms.
    pub fn ms(&self) -> f64 {
        (self.deployed_unix_ms - self.started_unix_ms) as f64
    }
}

/// The waves of one rollout from its steps (in any order), each with its start and its passed
/// deploy gate; a wave that has not passed its deploy gate is left out.
pub fn wave_spans(steps: &[pb::RolloutStep]) -> Vec<WaveSpan> {
    let plan: Vec<usize> = steps
        .iter()
        .find_map(|s| match &s.step {
            Some(Step::Started(p)) => Some(p.waves.iter().map(|w| w.hosts.len()).collect()),
            _ => None,
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, hosts) in plan.iter().enumerate() {
        let wave = u32::try_from(i).unwrap_or(u32::MAX);
        let first = |pick: &dyn Fn(&Step) -> bool| {
            (steps.iter())
                .filter(|s| s.step.as_ref().is_some_and(pick))
                .map(|s| s.at_unix_ms)
                .min()
        };
        let started = first(&|s| matches!(s, Step::WaveStarted(w) if w.wave == wave));
        let deployed = first(
            &|s| matches!(s, Step::Gate(g) if g.wave == wave && g.gate == "deploy" && g.passed),
        );
        let deploys = (steps.iter())
            .filter(|s| {
                matches!(&s.step, Some(Step::HostCommand(c)) if c.wave == wave && c.purpose == "deploy")
            })
            .count();
        if let (Some(started_unix_ms), Some(deployed_unix_ms)) = (started, deployed) {
            out.push(WaveSpan {
                wave,
                hosts: *hosts,
                deploys,
                started_unix_ms,
                deployed_unix_ms,
            });
        }
    }
    out
}

/// The steps as a compact timeline, ms after `t0_unix_ms`, each run of `host_command` steps
/// folded into one entry with its first and last time:
/// `started +3, wave 0 +4, 2 cmd +505..512, deploy 0 +998, soak 0 +1501`.
pub fn timeline(steps: &[pb::RolloutStep], t0_unix_ms: i64) -> String {
    let mut sorted: Vec<&pb::RolloutStep> = steps.iter().collect();
    sorted.sort_by_key(|s| s.at_unix_ms);
    let mut out: Vec<String> = Vec::new();
    let mut cmds = 0usize;
    let mut cmds_at = 0i64;
    let mut cmds_last = 0i64;
    for s in sorted {
        let at = s.at_unix_ms - t0_unix_ms;
        let text = match &s.step {
            Some(Step::HostCommand(_)) => {
                if cmds == 0 {
                    cmds_at = at;
                }
                cmds_last = at;
                cmds += 1;
                continue;
            }
            Some(Step::Started(_)) => "started".to_owned(),
            Some(Step::WaveStarted(w)) => format!("wave {}", w.wave),
            Some(Step::Gate(g)) => format!(
                "{} {}{}",
                g.gate,
                g.wave,
                if g.passed { "" } else { " FAILED" }
            ),
            Some(Step::Control(c)) => format!("control {}", c.op),
            Some(Step::Ended(e)) => format!("ended {}", e.outcome),
            Some(Step::HostSkipped(h)) => format!("skipped {}", h.host),
            None => "?".to_owned(),
        };
        if cmds > 0 {
            out.push(cmd_run(cmds, cmds_at, cmds_last));
            cmds = 0;
        }
        out.push(format!("{text} +{at}"));
    }
    if cmds > 0 {
        out.push(cmd_run(cmds, cmds_at, cmds_last));
    }
    out.join(", ")
}

fn cmd_run(n: usize, first: i64, last: i64) -> String {
    if n == 1 {
        format!("1 cmd +{first}")
    } else {
        format!("{n} cmd +{first}..{last}")
    }
}

/// Rounds of at most `max_unavailable` hosts a wave of `hosts` needs.
pub fn batches(hosts: usize, max_unavailable: usize) -> usize {
    hosts.div_ceil(max_unavailable.max(1))
}

/// What a wave costs per host beside the simulated deploys themselves:
/// `(wave_ms − deploy_ms × ceil(hosts / max_unavailable)) / hosts`.
pub fn overhead_per_host_ms(
    wave_ms: f64,
    hosts: usize,
    deploy_ms: f64,
    max_unavailable: usize,
) -> f64 {
    if hosts == 0 {
        return 0.0;
    }
    (wave_ms - deploy_ms * batches(hosts, max_unavailable) as f64) / hosts as f64
}

/// utime + stime ticks spent between two readings of `/proc/<pid>/stat`.
pub fn cpu_ticks_between(before: &str, after: &str) -> Option<u64> {
    Some(parse_cpu_ticks(after)?.saturating_sub(parse_cpu_ticks(before)?))
}

/// `ticks` over `secs` of wall time, in % of one core.
pub fn cpu_pct(ticks: u64, user_hz: f64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    ticks as f64 / user_hz / secs * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(at: i64, s: Step) -> pb::RolloutStep {
        pb::RolloutStep {
            rollout_id: "web-1".to_owned(),
            epoch: 1,
            at_unix_ms: at,
            step: Some(s),
        }
    }

    fn deploy(wave: u32, host: &str) -> Step {
        Step::HostCommand(pb::RolloutHostCommand {
            host: host.to_owned(),
            command_id: format!("c-{host}"),
            purpose: "deploy".to_owned(),
            wave,
            version: "2.0".to_owned(),
            deadline_unix_ms: 0,
        })
    }

    fn gate(wave: u32, name: &str, passed: bool) -> Step {
        Step::Gate(pb::RolloutGate {
            wave,
            passed,
            gate: name.to_owned(),
            reason: String::new(),
        })
    }

    #[test]
    fn waves_span_from_their_start_to_their_passed_deploy_gate() {
        let started = Step::Started(pb::RolloutStarted {
            waves: vec![
                pb::RolloutWave {
                    hosts: vec!["a".to_owned()],
                },
                pb::RolloutWave {
                    hosts: vec!["b".to_owned(), "c".to_owned()],
                },
                pb::RolloutWave {
                    hosts: vec!["d".to_owned()],
                },
            ],
            ..Default::default()
        });
        let wave = |w| Step::WaveStarted(pb::RolloutWaveStarted { wave: w });
        // Out of order on purpose; the soak gate and wave 2 (never gated) do not count.
        let steps = vec![
            step(1700, gate(1, "deploy", true)),
            step(1000, started),
            step(1001, wave(0)),
            step(1500, deploy(0, "a")),
            step(1510, gate(0, "deploy", true)),
            step(1520, gate(0, "soak", true)),
            step(1530, wave(1)),
            step(1600, deploy(1, "b")),
            step(1600, deploy(1, "c")),
            step(1650, deploy(1, "c")),
            step(1800, wave(2)),
            step(1900, gate(2, "deploy", false)),
        ];
        let spans = wave_spans(&steps);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!((spans[0].wave, spans[0].hosts, spans[0].deploys), (0, 1, 1));
        assert_eq!(spans[0].ms(), 509.0);
        assert_eq!((spans[1].wave, spans[1].hosts, spans[1].deploys), (1, 2, 3));
        assert_eq!(spans[1].ms(), 170.0);
        assert!(wave_spans(&[]).is_empty());
    }

    #[test]
    fn timeline_folds_runs_of_commands() {
        let steps = vec![
            step(1505, gate(0, "deploy", true)),
            step(1000, Step::WaveStarted(pb::RolloutWaveStarted { wave: 0 })),
            step(1500, deploy(0, "a")),
            step(1502, deploy(0, "b")),
            step(2000, gate(0, "soak", false)),
        ];
        assert_eq!(
            timeline(&steps, 990),
            "wave 0 +10, 2 cmd +510..512, deploy 0 +515, soak 0 FAILED +1010"
        );
        assert_eq!(timeline(&steps[2..3], 1000), "1 cmd +500");
    }

    #[test]
    fn overhead_leaves_out_the_simulated_deploys() {
        assert_eq!(batches(49, 10), 5);
        assert_eq!(batches(1, 10), 1);
        assert_eq!(batches(3, 0), 3);
        // 49 hosts, 5 rounds of 50 ms: 3,000 ms − 250 ms over 49 hosts.
        let o = overhead_per_host_ms(3000.0, 49, 50.0, 10);
        assert!((o - 2750.0 / 49.0).abs() < 1e-9, "{o}");
        assert_eq!(overhead_per_host_ms(100.0, 0, 50.0, 10), 0.0);
    }

    #[test]
    fn cpu_is_the_change_of_utime_and_stime() {
        let before = "77 (ops-coordinator) S 1 77 77 0 -1 4194560 900 0 0 0 120 30 0 0 20 0 9 0";
        let after = "77 (ops-coordinator) S 1 77 77 0 -1 4194560 950 0 0 0 170 45 0 0 20 0 9 0";
        assert_eq!(cpu_ticks_between(before, after), Some(65));
        assert_eq!(cpu_ticks_between(before, "garbage"), None);
        // A counter that went backwards (another process) is no CPU, not a wrap.
        assert_eq!(cpu_ticks_between(after, before), Some(0));
        assert!((cpu_pct(65, 100.0, 10.0) - 6.5).abs() < 1e-9);
        assert_eq!(cpu_pct(65, 100.0, 0.0), 0.0);
    }
}
