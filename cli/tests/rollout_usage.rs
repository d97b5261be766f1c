//! `opsctl rollout ...` refuses bad flags with exit 2 and a message naming the flag, before
//! it connects: every run here points at a NATS port nobody listens on, so a command that got
//! past its checks would end with exit 3 (unreachable) instead.

use std::process::Command;

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Runs opsctl against a closed port; returns (exit code, stderr).
fn opsctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_opsctl"))
        .args(["--nats", "nats://127.0.0.1:1", "--timeout", "1s"])
        .args(args)
        .env_remove("OPS_NATS_URL")
        .env_remove("OPS_OPERATOR")
        .env_remove("OPS_ROLE")
        .output()
        .expect("opsctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(args: &[&str], names: &[&str]) {
    let (code, stderr) = opsctl(args);
    assert_eq!(code, 2, "opsctl {args:?}: exit {code}, stderr {stderr}");
    for name in names {
        assert!(
            stderr.contains(name),
            "opsctl {args:?}: stderr does not name {name}: {stderr}"
        );
    }
}

fn start(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["rollout", "start", "web", "--version", "2.4.1"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn an_artifact_needs_its_sha256_and_the_other_way_round() {
    refused(
        &start(&["--all", "--artifact", "https://r.example/web.tgz"]),
        &["--sha256"],
    );
    refused(&start(&["--all", "--sha256", SHA]), &["--artifact"]);
    refused(
        &start(&[
            "--all",
            "--artifact",
            "https://r.example/web.tgz",
            "--sha256",
            "abc",
        ]),
        &["--sha256", "64 hex"],
    );
    refused(
        &start(&["--all", "--artifact", "web.tgz", "--sha256", SHA]),
        &["--artifact", "absolute path"],
    );
}

#[test]
fn blue_green_needs_a_green_slot_and_a_green_slot_needs_blue_green() {
    refused(&start(&["--all", "--strategy", "blue-green"]), &["--green"]);
    refused(
        &start(&["--all", "--green", "web-green"]),
        &["--green", "--strategy blue-green"],
    );
    refused(&start(&["--all", "--keep-old", "30m"]), &["--green"]);
    refused(
        &start(&["--all", "--strategy", "rainbow"]),
        &["--strategy", "canary or blue-green"],
    );
}

#[test]
fn waves_must_climb_to_100_percent() {
    refused(
        &start(&["--all", "--waves", "25%,50%"]),
        &["--waves", "100%"],
    );
    refused(
        &start(&["--all", "--waves", "50,25,100"]),
        &["--waves", "go up"],
    );
    refused(
        &start(&["--all", "--waves", "0,100"]),
        &["--waves", "1% to 100%"],
    );
    refused(
        &start(&["--all", "--waves", "half"]),
        &["--waves", "not a percentage"],
    );
}

#[test]
fn a_start_needs_targets_a_version_and_gates_that_can_pass() {
    refused(&start(&[]), &["--host", "--all", "--label"]);
    refused(&start(&["--all", "--host", "web-01"]), &["--all", "--host"]);
    refused(&start(&["--label", "role"]), &["--label", "k=v"]);
    refused(&["rollout", "start", "web", "--all"], &["--version"]);
    refused(&start(&["--all", "--soak", "0s"]), &["--soak"]);
    refused(&start(&["--all", "--soak", "soon"]), &["--soak"]);
    refused(
        &start(&["--all", "--command-deadline", "0s"]),
        &["--command-deadline"],
    );
    refused(&start(&["--all", "--canary", "0"]), &["--canary"]);
    refused(
        &start(&["--all", "--max-unavailable", "0"]),
        &["--max-unavailable"],
    );
    refused(
        &["rollout", "start", "web", "--version", "../../etc", "--all"],
        &["--version"],
    );
}

#[test]
fn a_rollout_is_picked_by_id_or_service_not_both() {
    refused(
        &["rollout", "status", "0193a4c2", "--service", "web"],
        &["--service"],
    );
    refused(
        &["rollout", "undo", "0193a4c2", "--service", "web"],
        &["--service"],
    );
    refused(&["rollouts", "--limit", "0"], &["--limit"]);
}

#[test]
fn good_flags_get_past_the_checks_to_the_connection() {
    let ok = start(&[
        "--label",
        "role=web",
        "--artifact",
        "https://r.example/web-2.4.1.tgz",
        "--sha256",
        SHA,
        "--strategy",
        "blue-green",
        "--green",
        "web-green",
        "--keep-old",
        "30m",
        "--waves",
        "25,50,100",
        "--manual",
        "--two-person",
        "--before",
        "nightly-db",
        "--no-wait",
    ]);
    for args in [
        ok,
        vec!["rollout", "status"],
        vec!["rollout", "promote", "0193a4c2"],
        vec!["rollout", "abort", "--service", "web", "--no-wait"],
        vec!["rollouts", "--service", "web"],
    ] {
        let (code, stderr) = opsctl(&args);
        assert_eq!(code, 3, "opsctl {args:?}: exit {code}, stderr {stderr}");
    }
}
