//! Every `opsctl` verb, for each role, on the shipped permission config.
//!
//! The verbs come from opsctl's own `--help` (clap), nested ones included, so a new verb fails
//! this test until it says which role it needs. Each runs as vera (viewer), alice (operator)
//! and carol (admin) against real coordinators and an agent: a role below the verb's need is
//! refused naming the role; a role at or above it is never refused for its role (it may still
//! fail for the action's own reasons, e.g. an unknown archive, which is not the question here).

use super::*;

use opsfleet_tests::procs::CmdOutput;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Viewer,
    Operator,
    Admin,
}

/// A rollout id nobody started: the rollout verbs name it, so none reads the newest first.
const ROLLOUT: &str = "0193a4c2-7d1e-7abc-9def-0123456789ab";

/// (verb path, arguments after it, role needed, whether success is required when allowed).
fn table(config: &str) -> Vec<(&'static str, Vec<String>, Need, bool)> {
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let act = |v: &[&str]| {
        let mut a = s(v);
        a.extend(s(&["--host", "web-01", "--no-wait"]));
        a
    };
    vec![
        ("status", s(&[]), Need::Viewer, true),
        ("leader", s(&[]), Need::Viewer, true),
        ("hosts", s(&[]), Need::Viewer, true),
        ("backups", s(&[]), Need::Viewer, true),
        ("incidents", s(&[]), Need::Viewer, true),
        ("alerts", s(&[]), Need::Viewer, true),
        // No such alert: once the role is checked, the coordinator refuses it for that reason.
        (
            "alerts ack",
            s(&["disk_crit/web-01//data"]),
            Need::Operator,
            false,
        ),
        (
            "silence add",
            s(&["--host", "web-01", "--for", "1m", "--reason", "verbs test"]),
            Need::Operator,
            true,
        ),
        ("silence list", s(&["--all"]), Need::Viewer, true),
        // No such silence: refused for that reason once the role is checked.
        ("silence expire", s(&[ROLLOUT]), Need::Operator, false),
        ("services", s(&[]), Need::Viewer, true),
        ("commands", s(&[]), Need::Viewer, true),
        ("audit", s(&[]), Need::Viewer, true),
        ("events", s(&["--since", "1h"]), Need::Viewer, true),
        ("pause", act(&["heartbeat"]), Need::Operator, true),
        ("resume", act(&["heartbeat"]), Need::Operator, true),
        ("disable", act(&["heartbeat"]), Need::Operator, true),
        ("enable", act(&["heartbeat"]), Need::Operator, true),
        ("noop", act(&[]), Need::Operator, true),
        ("drain", act(&[]), Need::Operator, true),
        ("undrain", act(&[]), Need::Operator, true),
        // web-01 has no backup module: once the role is checked, the coordinator refuses
        // these for that reason (targeting is checked before anything is sent).
        (
            "backup run",
            act(&["--job", "nightly"]),
            Need::Operator,
            false,
        ),
        ("backup verify", act(&["nightly"]), Need::Operator, false),
        (
            "restore",
            act(&[
                "--archive",
                "nightly-20260101T000000Z.tar.zst",
                "--target",
                "/tmp/r",
            ]),
            Need::Admin,
            false,
        ),
        (
            "config apply",
            act(&["heartbeat", "--file", config]),
            Need::Admin,
            true,
        ),
        // The coordinator looks the fingerprint up in its log: an unknown one is refused for
        // that reason once the role is checked.
        (
            "config rollback",
            act(&["heartbeat", "--to", "0123456789abcdef"]),
            Need::Admin,
            false,
        ),
        // Read verbs: the host and module are known; show/diff may have nothing to show
        // (one config only), which is not the question here.
        (
            "config history",
            s(&["heartbeat", "--host", "web-01"]),
            Need::Viewer,
            true,
        ),
        (
            "config show",
            s(&["heartbeat", "--host", "web-01"]),
            Need::Viewer,
            false,
        ),
        (
            "config diff",
            s(&["heartbeat", "--host", "web-01"]),
            Need::Viewer,
            false,
        ),
        // web-01 has no service `web`: once the role is checked, the coordinator refuses it
        // for that reason.
        (
            "app",
            act(&["web", "pipeline.pause", "--arg", "reason=x"]),
            Need::Operator,
            false,
        ),
        // web-01 has no service: once the role is checked, these are refused for that
        // reason.
        (
            "service config apply",
            act(&["app", "--file", config]),
            Need::Admin,
            false,
        ),
        (
            "service config rollback",
            act(&["app", "--to", "0123456789abcdef"]),
            Need::Admin,
            false,
        ),
        (
            "service config history",
            s(&["app", "--host", "web-01"]),
            Need::Viewer,
            true,
        ),
        // web-01 has no service `app`: once the role is checked, the coordinator refuses
        // these for that reason.
        ("service start", act(&["app"]), Need::Operator, false),
        ("service stop", act(&["app"]), Need::Operator, false),
        ("service restart", act(&["app"]), Need::Operator, false),
        ("service reload", act(&["app"]), Need::Operator, false),
        (
            "service deploy",
            act(&["app", "--version", "1.0.0"]),
            Need::Admin,
            false,
        ),
        // No group `router` here: once the role is checked, the coordinator refuses the
        // failover for that reason.
        (
            "service failover",
            s(&["router", "--wait", "30s"]),
            Need::Operator,
            false,
        ),
        ("service groups", s(&[]), Need::Viewer, true),
        ("failover", s(&["--wait", "60s"]), Need::Operator, true),
        // No drills are configured here: `drills` lists none, and once the role is checked
        // the coordinator refuses to run an unknown one for that reason.
        ("drills", s(&[]), Need::Viewer, true),
        ("drill run", s(&["quarterly"]), Need::Operator, false),
        // Rollouts: web-01 has no service `app`, and the rollout id is unknown: once the role
        // is checked, the coordinator refuses these for that reason. `rollouts` lists none.
        (
            "rollout start",
            s(&["app", "--version", "1.0.0", "--host", "web-01", "--no-wait"]),
            Need::Admin,
            false,
        ),
        ("rollout status", s(&[ROLLOUT]), Need::Viewer, false),
        ("rollout pause", s(&[ROLLOUT]), Need::Operator, false),
        ("rollout resume", s(&[ROLLOUT]), Need::Operator, false),
        (
            "rollout abort",
            s(&[ROLLOUT, "--no-wait"]),
            Need::Operator,
            false,
        ),
        ("rollout promote", s(&[ROLLOUT]), Need::Admin, false),
        (
            "rollout undo",
            s(&[ROLLOUT, "--no-wait"]),
            Need::Admin,
            false,
        ),
        ("rollouts", s(&[]), Need::Viewer, true),
        // Local verbs: they talk to no coordinator, so every role (and none) may run them.
        ("completion", s(&["bash"]), Need::Viewer, true),
        (
            "man",
            s(&["--dir", &format!("{config}.man")]),
            Need::Viewer,
            true,
        ),
    ]
}

/// The leaf verbs opsctl's `--help` lists (`help` aside), `backup run` style for nested ones.
async fn verbs_from_help(opsctl: &Opsctl, prefix: &[&str]) -> Result<Vec<String>> {
    let mut args = prefix.to_vec();
    args.push("--help");
    let out = opsctl.run(&args).await?;
    ensure!(out.status.success(), "{}: {}", out.cmdline, out.stderr);
    let mut verbs = Vec::new();
    let listed = out
        .stdout
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty());
    for line in listed {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name != "help" {
            verbs.push(name.to_owned());
        }
    }
    ensure!(!verbs.is_empty(), "no verbs in {}", out.cmdline);
    let mut leaves = Vec::new();
    for verb in verbs {
        let mut path = prefix.to_vec();
        path.push(&verb);
        let mut probe = path.clone();
        probe.push("--help");
        let help = opsctl.run(&probe).await?.stdout;
        if help.lines().any(|l| l.trim() == "Commands:") {
            // A verb that also runs without a subcommand (`opsctl alerts`, beside `opsctl
            // alerts ack`) has a usage line of its own.
            let own = format!("opsctl {}", path.join(" "));
            let runs_alone = help
                .lines()
                .skip_while(|l| !l.starts_with("Usage:"))
                .take_while(|l| !l.trim().is_empty())
                .any(|l| {
                    let l = l.trim_start_matches("Usage:").trim();
                    l.starts_with(&own) && !l.contains("<COMMAND>")
                });
            if runs_alone {
                leaves.push(path.join(" "));
            }
            leaves.extend(Box::pin(verbs_from_help(opsctl, &path)).await?);
        } else {
            leaves.push(path.join(" "));
        }
    }
    Ok(leaves)
}

fn refused_for_role(out: &CmdOutput) -> bool {
    let e = out.stderr.to_lowercase();
    e.contains("needs role") || e.contains("no permission") || e.contains("permissions violation")
}

/// The secured server, each person's opsctl, the configs of blue, green and web-01, and a
/// module config for `config apply`.
struct Setup {
    tmp: tempfile::TempDir,
    s: SecureNats,
    people: [(&'static str, Need, Opsctl); 3],
    opsctl: Opsctl,
    nats: [String; 3],
    config: String,
}

async fn setup() -> Result<Setup> {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-permissions-verbs-")
        .tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let person = |user: &str| Opsctl::new(&s.url()).map(|o| o.with_args(s.opsctl_args(user, user)));
    let people = [
        ("vera", Need::Viewer, person("vera")?),
        ("alice", Need::Operator, person("alice")?),
        ("carol", Need::Admin, person("carol")?),
    ];
    let opsctl = person("carol")?;
    let nats = [
        s.nats_toml("blue", Role::Coordinator),
        s.nats_toml("green", Role::Coordinator),
        s.nats_toml("web-01", Role::Agent),
    ];
    let config = tmp.path().join("heartbeat.toml");
    std::fs::write(&config, "type = \"heartbeat\"\ninterval = \"1s\"\n")?;
    let config = config.to_string_lossy().into_owned();
    Ok(Setup {
        tmp,
        s,
        people,
        opsctl,
        nats,
        config,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opsctl_verb_for_every_role() {
    let Setup {
        tmp,
        s,
        people,
        opsctl,
        nats: [blue, green, web01],
        config,
    } = setup().await.expect("secured cluster set-up");
    let SecureNats { server, .. } = s;
    let cluster = Cluster::with_server(tmp, server, opsctl);
    Cluster::run_with(cluster, "permissions-verbs", async |c: &mut Cluster| {
        for (name, toml) in [("blue", &blue), ("green", &green)] {
            c.add_coordinator(CoordinatorSpec::new(name).identified_only().nats_toml(toml))?;
        }
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(500))
                .nats_toml(&web01),
        )?;
        c.wait_hosts_at_least("blue", &BTreeMap::from([("web-01".to_owned(), 2)]))
            .await?;

        let table = table(&config);
        let listed = verbs_from_help(&c.opsctl, &[]).await?;
        for verb in &listed {
            ensure!(
                table.iter().any(|(v, ..)| v == verb),
                "opsctl {verb} is not in this test's table: say which role it needs"
            );
        }
        for (verb, _, _, _) in &table {
            ensure!(
                listed.iter().any(|v| v == verb),
                "opsctl --help no longer lists {verb}"
            );
        }
        let mut checked = 0;
        for (verb, rest, need, must_succeed) in &table {
            for (user, has, opsctl) in &people {
                let mut args: Vec<&str> = verb.split(' ').collect();
                args.extend(rest.iter().map(String::as_str));
                let out = opsctl.run(&args).await?;
                if has < need {
                    ensure!(
                        !out.status.success() && refused_for_role(&out),
                        "{user} ({has:?}) was not refused `opsctl {verb}` (needs {need:?}): \
                         exit {}, stdout {}, stderr {}",
                        out.status,
                        out.stdout,
                        out.stderr
                    );
                } else {
                    ensure!(
                        !refused_for_role(&out),
                        "{user} ({has:?}) was refused `opsctl {verb}` for its role: {}",
                        out.stderr
                    );
                    ensure!(
                        !must_succeed || out.status.success(),
                        "{user} ({has:?}): `opsctl {verb}` failed: {}",
                        out.stderr
                    );
                }
                checked += 1;
            }
        }
        eprintln!(
            "checked {checked} (verb, role) pairs over {} verbs",
            table.len()
        );
        Ok(())
    })
    .await;
}
