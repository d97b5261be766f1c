//! The `systemd` manager: the unit is driven with `systemctl start|stop|restart|reload <unit>`
//! and observed with `systemctl show <unit> --property=...` (key=value lines). The stop grace
//! is systemd's: `systemctl stop` waits for the unit's own `TimeoutStopSec` (SIGTERM, then
//! SIGKILL); the agent bounds the command by `stop_grace` plus a margin.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use opsfleet_proto::pb;
use opsfleet_proto::time::now_unix_ms;

use super::runner::{check, DrivenError, Runner};
use super::{Driven, Observed};
use crate::config::SystemdSection;

/// How long `systemctl start|reload` may take (a unit's start job included).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `systemctl show` may take.
const SHOW_TIMEOUT: Duration = Duration::from_secs(15);

/// The properties `observe` reads.
pub const PROPERTIES: &str = "LoadState,ActiveState,SubState,MainPID,NRestarts,Result,ExecMainStatus,StateChangeTimestampMonotonic";

/// A unit driven through systemctl.
pub struct Systemd {
    runner: Box<dyn Runner>,
    /// `systemctl` or `systemctl --user`.
    base: Vec<String>,
    unit: String,
}

impl Systemd {
    pub fn new(section: &SystemdSection, runner: Box<dyn Runner>) -> Self {
        let mut base = vec![section.systemctl.clone()];
        if section.user {
            base.push("--user".to_owned());
        }
        Systemd {
            runner,
            base,
            unit: section.unit.clone(),
        }
    }

    fn argv(&self, verb: &[&str]) -> Vec<String> {
        let mut argv = self.base.clone();
        argv.extend(verb.iter().map(|v| (*v).to_owned()));
        argv.push(self.unit.clone());
        argv
    }

    fn verb(&self, verb: &str, timeout: Duration) -> Result<(), DrivenError> {
        check(self.runner.as_ref(), &self.argv(&[verb]), timeout).map(|_| ())
    }
}

impl Driven for Systemd {
    fn start(&mut self) -> Result<(), DrivenError> {
        self.verb("start", START_TIMEOUT)
    }

    fn stop(&mut self, grace: Duration) -> Result<(), DrivenError> {
        self.verb("stop", grace + START_TIMEOUT)
    }

    fn restart(&mut self, grace: Duration) -> Result<(), DrivenError> {
        self.verb("restart", grace + START_TIMEOUT)
    }

    fn reload(&mut self) -> Result<(), DrivenError> {
        self.verb("reload", START_TIMEOUT)
    }

    fn observe(&mut self) -> Result<Observed, DrivenError> {
        let argv = self.argv(&["show", &format!("--property={PROPERTIES}")]);
        let out = check(self.runner.as_ref(), &argv, SHOW_TIMEOUT)?;
        parse_show(&out.stdout, &self.unit, monotonic_now_us()).ok_or_else(|| DrivenError::Parse {
            argv: argv.join(" "),
            detail: "no ActiveState".to_owned(),
        })
    }
}

/// Now on the monotonic clock systemd's `*TimestampMonotonic` use, in microseconds.
fn monotonic_now_us() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .ok()
        .and_then(|t| {
            let us = i128::from(t.tv_sec()) * 1_000_000 + i128::from(t.tv_nsec()) / 1_000;
            u64::try_from(us).ok()
        })
        .unwrap_or(0)
}

/// The state `systemctl show` output describes (`key=value` lines); `None` without an
/// `ActiveState`. `now_us` is the monotonic clock now, to turn the monotonic timestamp of the
/// last state change into wall time.
pub fn parse_show(text: &str, unit: &str, now_us: u64) -> Option<Observed> {
    let props: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let active = *props.get("ActiveState")?;
    let number = |k: &str| props.get(k).and_then(|v| v.parse::<u64>().ok());
    let mut state = match active {
        "active" | "reloading" => pb::ServiceRunState::Running,
        "activating" => pb::ServiceRunState::Starting,
        "deactivating" => pb::ServiceRunState::Stopping,
        "inactive" => pb::ServiceRunState::Stopped,
        _ => pb::ServiceRunState::Failed,
    };
    let sub = props.get("SubState").copied().unwrap_or_default();
    let mut detail = format!("{active} ({sub})");
    if state == pb::ServiceRunState::Failed {
        let result = props.get("Result").copied().unwrap_or("unknown");
        let status = number("ExecMainStatus").unwrap_or(0);
        detail = format!("failed: {result}, main process status {status}");
    }
    if let Some(load) = props.get("LoadState").filter(|l| **l != "loaded") {
        state = pb::ServiceRunState::Failed;
        detail = format!("the unit is {load}");
    }
    let since_unix_ms = match number("StateChangeTimestampMonotonic") {
        Some(at) if at > 0 && at <= now_us => {
            let ago_ms = i64::try_from((now_us - at) / 1_000).unwrap_or(0);
            now_unix_ms().saturating_sub(ago_ms)
        }
        _ => 0,
    };
    let pid = number("MainPID")
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    Some(Observed {
        state,
        pid,
        instance: unit.to_owned(),
        since_unix_ms,
        restarts: number("NRestarts").unwrap_or(0),
        version: String::new(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opsfleet_proto::pb::ServiceRunState;

    use super::super::runner::fake::Recorder;
    use super::super::runner::Output;
    use super::*;

    fn driver(user: bool) -> (Systemd, Recorder) {
        let rec = Recorder::default();
        let section = SystemdSection {
            user,
            systemctl: "/bin/systemctl".to_owned(),
            ..SystemdSection::unit("app.service")
        };
        (Systemd::new(&section, Box::new(rec.clone())), rec)
    }

    #[test]
    fn each_operation_runs_its_systemctl_verb() {
        let (mut d, rec) = driver(false);
        d.start().expect("start");
        d.stop(Duration::from_secs(30)).expect("stop");
        d.restart(Duration::from_secs(30)).expect("restart");
        d.reload().expect("reload");
        d.observe().expect_err("no ActiveState in an empty answer");
        assert_eq!(
            rec.commands(),
            [
                "/bin/systemctl start app.service",
                "/bin/systemctl stop app.service",
                "/bin/systemctl restart app.service",
                "/bin/systemctl reload app.service",
                &format!("/bin/systemctl show --property={PROPERTIES} app.service"),
            ]
        );
    }

    #[test]
    fn a_user_unit_goes_through_the_user_manager() {
        let (mut d, rec) = driver(true);
        d.restart(Duration::from_secs(1)).expect("restart");
        assert_eq!(
            rec.commands(),
            ["/bin/systemctl --user restart app.service"]
        );
    }

    #[test]
    fn a_failed_systemctl_is_an_error_with_its_stderr() {
        let (mut d, rec) = driver(false);
        rec.answer(
            &["start"],
            Output::failed(
                5,
                "Failed to start app.service: Unit app.service not found.\n",
            ),
        );
        let err = d.start().expect_err("failed").to_string();
        assert!(err.contains("status 5"), "{err}");
        assert!(err.contains("Unit app.service not found."), "{err}");
    }

    const ACTIVE: &str = "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\nNRestarts=3\nResult=success\nExecMainStatus=0\nStateChangeTimestampMonotonic=5000000\n";

    #[test]
    fn an_active_unit_is_running_with_its_pid_and_restarts() {
        let o = parse_show(ACTIVE, "app.service", 65_000_000).expect("parsed");
        assert_eq!(o.state, ServiceRunState::Running);
        assert_eq!((o.pid, o.restarts), (4242, 3));
        assert_eq!(o.instance, "app.service");
        let ago = now_unix_ms() - o.since_unix_ms;
        assert!(
            (59_000..=61_000).contains(&ago),
            "entered 60 s ago, got {ago} ms"
        );
    }

    #[test]
    fn a_failed_unit_says_why() {
        let text = "LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\nNRestarts=5\nResult=exit-code\nExecMainStatus=1\nStateChangeTimestampMonotonic=0\n";
        let o = parse_show(text, "app.service", 1).expect("parsed");
        assert_eq!(o.state, ServiceRunState::Failed);
        assert_eq!((o.pid, o.restarts, o.since_unix_ms), (0, 5, 0));
        assert_eq!(o.detail, "failed: exit-code, main process status 1");
    }

    #[test]
    fn transitional_and_missing_units_are_mapped() {
        let with =
            |active: &str| ACTIVE.replace("ActiveState=active", &format!("ActiveState={active}"));
        for (active, want) in [
            ("activating", ServiceRunState::Starting),
            ("deactivating", ServiceRunState::Stopping),
            ("inactive", ServiceRunState::Stopped),
            ("reloading", ServiceRunState::Running),
        ] {
            let o = parse_show(&with(active), "app.service", 65_000_000).expect("parsed");
            assert_eq!(o.state, want, "{active}");
        }
        let missing = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n";
        let o = parse_show(missing, "app.service", 1).expect("parsed");
        assert_eq!(o.state, ServiceRunState::Failed);
        assert_eq!(o.detail, "the unit is not-found");
    }

    #[test]
    fn observe_runs_show_and_parses_it() {
        let (mut d, rec) = driver(false);
        rec.answer(&["show"], Output::ok(ACTIVE));
        let o = d.observe().expect("observed");
        assert_eq!((o.state, o.pid), (ServiceRunState::Running, 4242));
    }
}
