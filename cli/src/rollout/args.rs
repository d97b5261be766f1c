//! `opsctl rollout ...` and `opsctl rollouts`: the flags (clap), their parsers (waves, sha256,
//! strategy) and the checks clap cannot express, turning `rollout start`'s flags into the
//! wire's `RolloutStart`. Pure; a refusal here is a usage error (exit 2) before anything is sent.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use opsfleet_proto::api::{RolloutStart, RolloutStrategy};

use super::help::{CONTROL_HELP, START_HELP, STATUS_HELP};
use crate::verbs::parse_label;

/// `opsctl rollout <verb>`.
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Start rolling a new version of a service out to hosts, wave by wave, each wave gated
    /// (ready probes, soak) before the next; follows it until it ends.
    #[command(after_help = START_HELP)]
    Start(Box<StartArgs>),
    /// A rollout as a readable block: phase, waves, hosts, skipped hosts, the last steps.
    #[command(after_help = STATUS_HELP)]
    Status(PickArgs),
    /// Hold a rollout: no new host is updated (commands in flight finish; a failing gate
    /// still rolls back). Needs the operator role.
    #[command(after_help = CONTROL_HELP)]
    Pause(PickArgs),
    /// Let a paused rollout go on. Needs the operator role.
    #[command(after_help = CONTROL_HELP)]
    Resume(PickArgs),
    /// Let a `--manual` rollout that passed a wave's gates go on to the next wave. Needs the
    /// admin role (with `--two-person`: another admin than the one who started it).
    #[command(after_help = CONTROL_HELP)]
    Promote(PickArgs),
    /// Stop a rollout and put the previous version back on the hosts it updated; follows the
    /// rollback until it ends. Needs the operator role.
    #[command(after_help = CONTROL_HELP)]
    Abort(FollowPickArgs),
    /// Put the previous version back on every host a rollout updated, even a completed one;
    /// follows the rollback until it ends. Needs the admin role.
    #[command(after_help = CONTROL_HELP)]
    Undo(FollowPickArgs),
}

/// Which rollout: an id (or a unique prefix), the newest of a service, or the newest.
#[derive(Args, Debug, Clone, Default)]
pub struct PickArgs {
    /// The rollout's id, or a unique prefix of it (`opsctl rollouts` lists them). Default:
    /// the newest rollout (of --service, when given).
    #[arg(conflicts_with = "service")]
    pub id: Option<String>,
    /// The newest rollout of this service.
    #[arg(long)]
    pub service: Option<String>,
}

/// Whether to follow the rollout after the request.
#[derive(Args, Debug, Clone, Default)]
pub struct FollowArgs {
    /// Follow the rollout until it ends (the default); Ctrl-C stops following, not the
    /// rollout.
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Return once the coordinator recorded the request; `opsctl rollout status` follows up.
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,
}

/// `abort` and `undo`: which rollout, and whether to follow it.
#[derive(Args, Debug, Clone, Default)]
pub struct FollowPickArgs {
    #[command(flatten)]
    pub pick: PickArgs,
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// `opsctl rollouts`.
#[derive(Args, Debug, Clone)]
pub struct RolloutsArgs {
    /// Only this service's rollouts.
    #[arg(long)]
    pub service: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

/// Cumulative percentages of the hosts after the canary, ascending, the last 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waves(pub Vec<u32>);

/// `rollout start`'s flags.
#[derive(Args, Debug, Clone)]
#[command(group(
    ArgGroup::new("targets").required(true).multiple(true).args(["hosts", "all", "labels"])
))]
pub struct StartArgs {
    /// The service to update (its `service` module's name in the agents' configs).
    pub service: String,
    /// The version to roll out: the release directory `releases/<version>` on each host.
    #[arg(long, value_parser = parse_version)]
    pub version: String,
    /// Where each host fetches the release: an http(s) URL or an absolute path on the host.
    /// Needs --sha256. Without it, every host must already keep `releases/<version>`.
    #[arg(long, requires = "sha256", value_parser = parse_artifact)]
    pub artifact: Option<String>,
    /// The artifact's SHA-256 (64 hex digits); a host refuses an artifact that differs.
    #[arg(long, requires = "artifact", value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// canary: hosts updated in place, wave by wave. blue-green: on each host the new version
    /// starts in the idle slot service (--green), traffic switches to it, the old slot stays
    /// up for --keep-old.
    #[arg(long, default_value = "canary", value_parser = parse_strategy)]
    pub strategy: RolloutStrategy,
    /// Hosts of the first wave (the canary).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub canary: u32,
    /// The later waves, as cumulative percentages of the hosts after the canary: `25%,50%,100%`
    /// or `25,50,100`. Each 1..100, ascending; the last must be 100 (every host).
    #[arg(long, default_value = "25%,50%,100%", value_parser = parse_waves)]
    pub waves: Waves,
    /// Hosts of a wave updated at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unavailable: u32,
    /// A host, by name or glob (`web-*`); repeat for several. Needs --host, --all or --label.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Every host that has the service.
    #[arg(long, conflicts_with_all = ["hosts", "labels"])]
    pub all: bool,
    /// Every host whose agent declares this label (`role=web`); repeat to require several.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Gate: consecutive ready results of the service's own health probes after each host's
    /// restart (0: the service's own readiness, as for a restart).
    #[arg(long, default_value_t = 3)]
    pub ready_samples: u32,
    /// Gate: how long each wave runs healthy before the next wave starts (`1m`, `10m`).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub soak: Duration,
    /// Wait for `opsctl rollout promote` after each wave passed its gates.
    #[arg(long)]
    pub manual: bool,
    /// Every promote must come from another admin than the one who started the rollout.
    #[arg(long)]
    pub two_person: bool,
    /// A backup job (`[modules.<job>]` of type backup) run on each host before its deploy;
    /// its failure stops the rollout.
    #[arg(long = "before", value_name = "BACKUP_JOB")]
    pub before: Option<String>,
    /// Blue-green: the idle slot service that gets the new version (required with
    /// `--strategy blue-green`).
    #[arg(
        long,
        value_name = "SLOT_SERVICE",
        required_if_eq("strategy", "blue-green")
    )]
    pub green: Option<String>,
    /// Blue-green: how long the old slot stays up after the switch (`30m`) [default: 0].
    #[arg(long, requires = "green", value_parser = humantime::parse_duration)]
    pub keep_old: Option<Duration>,
    /// Gate: the soak fails when an updated host's service reports a probe latency p95 above
    /// this (`800ms`, over its newest 64 probe rounds; the service needs a health probe)
    /// [default: no latency gate].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_p95: Option<Duration>,
    /// The deadline of each command the rollout sends a host: a host offline longer than this
    /// fails its deploy.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub command_deadline: Duration,
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// A flag combination clap cannot refuse itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartError {
    #[error("--green is the idle slot of a blue-green rollout; add --strategy blue-green")]
    GreenWithoutBlueGreen,
    #[error("--{flag} {value:?} is out of range")]
    TooLarge { flag: &'static str, value: String },
    #[error("--soak must be more than 0 (a wave is gated on running healthy for it)")]
    NoSoak,
    #[error("--command-deadline must be more than 0")]
    NoDeadline,
}

impl StartArgs {
    /// The wire's `RolloutStart` of these flags, or the flag combination that is refused.
    pub fn request(&self) -> Result<RolloutStart, StartError> {
        if self.green.is_some() && self.strategy != RolloutStrategy::BlueGreen {
            return Err(StartError::GreenWithoutBlueGreen);
        }
        if self.soak.is_zero() {
            return Err(StartError::NoSoak);
        }
        if self.command_deadline.is_zero() {
            return Err(StartError::NoDeadline);
        }
        let ms = |flag: &'static str, d: Duration| {
            u64::try_from(d.as_millis()).map_err(|_| StartError::TooLarge {
                flag,
                value: humantime::format_duration(d).to_string(),
            })
        };
        let mut start = RolloutStart::new(&self.service, &self.version);
        start.artifact = self.artifact.clone();
        start.sha256 = self.sha256.clone();
        start.strategy = self.strategy;
        start.canary = self.canary;
        start.waves = self.waves.0.clone();
        start.max_unavailable = self.max_unavailable;
        start.hosts = self.hosts.clone();
        start.all = self.all;
        start.labels = self.labels.iter().cloned().collect::<BTreeMap<_, _>>();
        start.ready_samples = self.ready_samples;
        start.soak_ms = ms("soak", self.soak)?;
        start.manual = self.manual;
        start.two_person = self.two_person;
        start.before_job = self.before.clone();
        start.green_service = self.green.clone();
        start.keep_old_ms = ms("keep-old", self.keep_old.unwrap_or_default())?;
        start.command_deadline_ms = ms("command-deadline", self.command_deadline)?;
        start.max_p95_ms = ms("max-p95", self.max_p95.unwrap_or_default())?;
        Ok(start)
    }
}

/// `--waves 25%,50%,100%` (or `25,50,100`): each 1..=100, strictly ascending, the last 100.
/// A last wave below 100 is refused rather than raised, so the plan is what was typed.
pub fn parse_waves(text: &str) -> Result<Waves, String> {
    let mut waves = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let digits = part.strip_suffix('%').unwrap_or(part).trim();
        let pct: u32 = digits
            .parse()
            .map_err(|_| format!("{part:?} is not a percentage (e.g. 25%,50%,100%)"))?;
        if !(1..=100).contains(&pct) {
            return Err(format!("{part:?}: each wave is 1% to 100%"));
        }
        if let Some(&last) = waves.last() {
            if pct <= last {
                return Err(format!(
                    "{part:?} after {last}%: waves are cumulative and must go up \
                     (e.g. 25%,50%,100%)"
                ));
            }
        }
        waves.push(pct);
    }
    if waves.last() != Some(&100) {
        return Err("the last wave must be 100% (every host), e.g. 25%,50%,100%".to_owned());
    }
    Ok(Waves(waves))
}

/// `--sha256`: 64 hex digits, kept lowercase.
pub fn parse_sha256(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is not a SHA-256 (64 hex digits, as `sha256sum` prints)"
        ))
    }
}

/// `--artifact`: an http(s) URL or an absolute path (on each host).
pub fn parse_artifact(text: &str) -> Result<String, String> {
    let ok = text.starts_with("https://") || text.starts_with("http://") || text.starts_with('/');
    if ok && !text.chars().any(char::is_control) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is neither an http(s) URL nor an absolute path on the hosts"
        ))
    }
}

/// `--version`: one directory name under `releases/` (no `/`, not `.` or `..`, no spaces).
pub fn parse_version(text: &str) -> Result<String, String> {
    let bad = text.is_empty()
        || text == "."
        || text == ".."
        || text.len() > 128
        || text
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_whitespace() || c.is_control());
    if bad {
        Err(format!(
            "{text:?} cannot name a release directory (no `/`, spaces, `.` or `..`; at most \
             128 characters)"
        ))
    } else {
        Ok(text.to_owned())
    }
}

/// `--strategy canary|blue-green`.
pub fn parse_strategy(text: &str) -> Result<RolloutStrategy, String> {
    RolloutStrategy::parse(text)
        .ok_or_else(|| format!("unknown strategy {text:?}; use canary or blue-green"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Start {
        #[command(flatten)]
        a: StartArgs,
    }

    fn parse(args: &[&str]) -> StartArgs {
        let mut all = vec!["start", "web", "--version", "2.4.1"];
        all.extend_from_slice(args);
        Start::try_parse_from(all).unwrap().a
    }

    #[test]
    fn the_flags_defaults_are_the_contracts_defaults() {
        let mut want = RolloutStart::new("web", "2.4.1");
        want.all = true;
        assert_eq!(parse(&["--all"]).request(), Ok(want));
    }

    #[test]
    fn every_flag_reaches_the_request() {
        let sha = "ab".repeat(32);
        let a = parse(&[
            "--host",
            "web-01",
            "--host",
            "web-0?",
            "--label",
            "role=web",
            "--label",
            "dc=x",
            "--artifact",
            "/srv/web.tgz",
            "--sha256",
            &sha,
            "--strategy",
            "blue-green",
            "--green",
            "web-green",
            "--keep-old",
            "30m",
            "--canary",
            "2",
            "--waves",
            "50,100",
            "--max-unavailable",
            "3",
            "--ready-samples",
            "5",
            "--soak",
            "10m",
            "--manual",
            "--two-person",
            "--before",
            "nightly-db",
            "--command-deadline",
            "90s",
            "--max-p95",
            "800ms",
            "--no-wait",
        ]);
        assert!(a.follow.no_wait);
        let r = a.request().unwrap();
        assert_eq!(r.hosts, ["web-01", "web-0?"]);
        assert!(!r.all);
        assert_eq!(r.labels.len(), 2);
        assert_eq!(r.artifact.as_deref(), Some("/srv/web.tgz"));
        assert_eq!(r.sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(r.strategy, RolloutStrategy::BlueGreen);
        assert_eq!(r.green_service.as_deref(), Some("web-green"));
        assert_eq!(r.keep_old_ms, 1_800_000);
        assert_eq!(r.max_p95_ms, 800);
        assert_eq!(
            (r.canary, r.waves.clone(), r.max_unavailable),
            (2, vec![50, 100], 3)
        );
        assert_eq!((r.ready_samples, r.soak_ms), (5, 600_000));
        assert!(r.manual && r.two_person);
        assert_eq!(r.before_job.as_deref(), Some("nightly-db"));
        assert_eq!(r.command_deadline_ms, 90_000);
    }

    #[test]
    fn a_green_slot_without_blue_green_and_zero_durations_are_refused() {
        let a = parse(&["--all", "--green", "g"]);
        assert_eq!(a.request(), Err(StartError::GreenWithoutBlueGreen));
        assert_eq!(
            parse(&["--all", "--soak", "0s"]).request(),
            Err(StartError::NoSoak)
        );
        let a = parse(&["--all", "--command-deadline", "0s"]);
        assert_eq!(a.request(), Err(StartError::NoDeadline));
    }

    #[test]
    fn waves_take_percent_signs_or_none_and_must_climb_to_100() {
        assert_eq!(parse_waves("25%,50%,100%"), Ok(Waves(vec![25, 50, 100])));
        assert_eq!(parse_waves("25,50,100"), Ok(Waves(vec![25, 50, 100])));
        assert_eq!(parse_waves(" 10 %, 100"), Ok(Waves(vec![10, 100])));
        assert_eq!(parse_waves("100%"), Ok(Waves(vec![100])));
        for bad in [
            "",
            "0,100",
            "25,25,100",
            "50,25,100",
            "25,50",
            "x",
            "101",
            "25,,100",
        ] {
            assert!(parse_waves(bad).is_err(), "{bad:?} was taken");
        }
        let e = parse_waves("25,50").unwrap_err();
        assert!(e.contains("last wave must be 100%"), "{e}");
    }

    #[test]
    fn sha256_artifact_and_version_are_checked() {
        let h = "A".repeat(64);
        assert_eq!(parse_sha256(&h), Ok("a".repeat(64)));
        assert!(parse_sha256(&"a".repeat(63)).is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
        assert!(parse_artifact("https://x/y.tar.gz").is_ok());
        assert!(parse_artifact("/srv/releases/y.tar.gz").is_ok());
        assert!(parse_artifact("releases/y.tar.gz").is_err());
        assert!(parse_artifact("ftp://x/y").is_err());
        assert!(parse_version("2.4.1").is_ok());
        for bad in ["", ".", "..", "../etc", "a b", "a/b", "a\nb"] {
            assert!(parse_version(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn the_strategy_parses_both_spellings_it_has() {
        assert_eq!(parse_strategy("canary"), Ok(RolloutStrategy::Canary));
        assert_eq!(parse_strategy("blue-green"), Ok(RolloutStrategy::BlueGreen));
        assert!(parse_strategy("bluegreen").is_err());
    }
}
