//! Config you can see and restores that check, end to end with a real nats-server,
//! coordinator, agent and opsctl: `config apply` of a module config with several mistakes
//! reports every one of them at once; `ops-agent --check-config` does the same for the file
//! and prints the full 64-hex fingerprint; `config history|show|diff` list the module's
//! configs with dates and the current one marked, print one, compare two, and refuse unknown
//! hosts, modules and fingerprints naming what is known; `opsctl restore --archive latest` restores the
//! job's newest archive; `opsctl backups --archives` lists every archive kept; a relative restore target is refused by opsctl (nothing issued) and,
//! sent past opsctl as a raw API request, by the agent, naming the path.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::subjects;
use opsfleet_tests::stream::events_of;
use opsfleet_tests::verbs::{self, backup_toml, command_view, config_apply, only_command};
use opsfleet_tests::{bins, wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::{json, Value};

const HOST: &str = "db-01";

/// `opsctl --output json <args> --host db-01 --wait 60s`.
async fn verb(c: &Cluster, args: &[&str]) -> Result<(bool, Value, String)> {
    verbs::verb(c, HOST, args).await
}

/// The disk module's current fingerprint, as `opsctl config history -o json` says.
async fn current_fingerprint(c: &Cluster) -> Result<String> {
    wait_until_default("the disk module's config", async || {
        let out = c
            .opsctl
            .run(&["-o", "json", "config", "history", "disk", "--host", HOST])
            .await?;
        let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
        Ok(v["current"]
            .as_str()
            .filter(|fp| !fp.is_empty())
            .map(str::to_owned))
    })
    .await
}

/// How many commands the ledger holds.
async fn ledger_len(c: &Cluster) -> Result<usize> {
    let out = c
        .opsctl
        .run(&["--output", "json", "commands", "--limit", "1000"])
        .await?
        .ok()?;
    let v: Value = serde_json::from_str(out.stdout.trim())?;
    Ok(v.as_array().map_or(0, Vec::len))
}

#[test]
fn check_config_reports_every_problem_of_a_module_and_the_full_fingerprint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "host = \"web-01\"\n[[modules]]\ntype = \"disk\"\ninterval = 5\npaths = \"/\"\n\
         warn_percent = \"high\"\nbogus = 1\n",
    )?;
    let agent = bins::bin(bins::AGENT)?;
    let out = std::process::Command::new(&agent)
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "a bad config fails: {stderr}");
    for key in [
        "modules[0].interval",
        "modules[0].paths",
        "modules[0].warn_percent",
        "modules[0].bogus",
    ] {
        ensure!(stderr.contains(key), "{key} reported: {stderr}");
    }
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "host = \"web-01\"\n[[modules]]\ntype = \"disk\"\npaths = [\"/\"]\n",
    )?;
    let out = std::process::Command::new(&agent)
        .args(["--check-config", "--config"])
        .arg(&good)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "good config: {stdout}");
    let fp = stdout
        .split("fingerprint ")
        .nth(1)
        .map(|s| s.trim_end_matches([')', '\n']))
        .context("a fingerprint")?;
    ensure!(
        fp.len() == 64 && fp.chars().all(|c| c.is_ascii_hexdigit()),
        "a 64-hex fingerprint, as modules show: {stdout}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_problems_all_at_once_and_restores_that_check() {
    Cluster::run("config_views", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        std::fs::create_dir_all(dir.join("src/sub"))?;
        std::fs::write(dir.join("src/a.txt"), b"alpha\n")?;
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(200))
                .disk(Duration::from_millis(300), vec!["/".into()])
                .modules_toml(&backup_toml(&dir))
                .policy(&format!(
                    "restore_targets = [{:?}]",
                    dir.display().to_string()
                )),
        )?;
        let url = c.nats_url();
        wait_until_default("the scheduled first backup", async || {
            Ok((!events_of(&url, HOST, "backup_completed").await?.is_empty()).then_some(()))
        })
        .await?;

        // 1. Three mistakes in one module config: all three in the rejection.
        let bad = "type = \"disk\"\nname = \"disk\"\ninterval = 5\npaths = \"/\"\n\
                   warn_percent = \"high\"\n";
        let (ok, outcome, stderr) = config_apply(c, HOST, "disk", "disk-bad.toml", bad).await?;
        ensure!(!ok, "a bad config fails: {outcome} {stderr}");
        let text = format!("{outcome} {stderr}");
        for key in ["interval", "paths", "warn_percent"] {
            ensure!(text.contains(key), "{key} reported: {text}");
        }

        // 1b. A good config, then the history: both fingerprints (64 hex) with dates, the
        // new one marked current; show prints its TOML; diff shows what changed.
        let first_fp = current_fingerprint(c).await?;
        let good = "type = \"disk\"\nname = \"disk\"\ninterval = \"700ms\"\npaths = [\"/\"]\n";
        let (ok, outcome, stderr) = config_apply(c, HOST, "disk", "disk-good.toml", good).await?;
        ensure!(ok, "good apply: {outcome} {stderr}");
        let history = wait_until_default("two configs in the history", async || {
            let out = c
                .opsctl
                .run(&["-o", "json", "config", "history", "disk", "--host", HOST])
                .await?
                .ok()?;
            let v: Value = serde_json::from_str(out.stdout.trim())?;
            let n = v["configs"].as_array().map_or(0, Vec::len);
            Ok((n == 2 && v["current"] != first_fp.as_str()).then_some(v))
        })
        .await?;
        let configs = history["configs"].as_array().context("configs")?;
        ensure!(configs[0]["fingerprint"] == first_fp.as_str() && configs[0]["current"] == false);
        let second_fp = configs[1]["fingerprint"].as_str().context("fp")?.to_owned();
        ensure!(
            configs[1]["current"] == true
                && second_fp.len() == 64
                && configs
                    .iter()
                    .all(|c| c["first_seen_unix_ms"].as_i64() > Some(0)),
            "{history}"
        );
        let table = c
            .opsctl
            .run(&["config", "history", "disk", "--host", HOST])
            .await?
            .ok()?
            .stdout;
        let marked: Vec<&str> = table.lines().filter(|l| l.contains(" * ")).collect();
        ensure!(
            marked.len() == 1 && marked[0].contains(&second_fp) && table.contains(&first_fp),
            "{table}"
        );
        let shown = c
            .opsctl
            .run(&["config", "show", "disk", "--host", HOST])
            .await?
            .ok()?
            .stdout;
        ensure!(
            shown.contains(&format!("fingerprint {second_fp} (current)"))
                && shown.contains("interval = \"700ms\""),
            "{shown}"
        );
        let old = c
            .opsctl
            .run(&[
                "config",
                "show",
                "disk",
                "--host",
                HOST,
                "--fingerprint",
                &first_fp[..12],
            ])
            .await?
            .ok()?
            .stdout;
        ensure!(
            old.contains(&format!("fingerprint {first_fp},"))
                && old.contains("interval = \"300ms\""),
            "{old}"
        );
        let prefix = &first_fp[..10];
        let diff = c
            .opsctl
            .run(&["config", "diff", "disk", "--host", HOST, "--from", prefix])
            .await?
            .ok()?
            .stdout;
        ensure!(
            diff.contains(&format!("--- {first_fp}"))
                && diff.contains("+interval = \"700ms\"")
                && diff.contains("-interval = \"300ms\""),
            "{diff}"
        );
        // What it refuses: unknown host, unknown module, unknown fingerprint.
        for (args, want) in [
            (
                vec!["config", "history", "disk", "--host", "nosuch"],
                "unknown host \"nosuch\" (known: db-01)".to_owned(),
            ),
            (
                vec!["config", "show", "nosuch", "--host", HOST],
                format!("host {HOST} has no module \"nosuch\""),
            ),
            (
                vec![
                    "config",
                    "diff",
                    "disk",
                    "--host",
                    HOST,
                    "--to",
                    "0123456789",
                ],
                "no config of module disk on db-01 with fingerprint 0123456789".to_owned(),
            ),
        ] {
            let out = c.opsctl.run(&args).await?;
            ensure!(
                !out.status.success() && out.stderr.contains(&want),
                "{args:?}: {}",
                out.stderr
            );
        }

        // 2. `--archive latest`: the job's newest archive, into an absolute target.
        let restored = dir.join("restored");
        let restored_arg = restored.display().to_string();
        let (ok, outcome, stderr) = verb(
            c,
            &["restore", "--archive", "latest", "--target", &restored_arg],
        )
        .await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "restore latest: {outcome} {stderr}"
        );
        let detail = only_command(&outcome)?["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(detail.contains("app-"), "names the archive: {detail}");
        ensure!(std::fs::read(restored.join("src/a.txt"))? == b"alpha\n");

        // 2b. A second archive; `backups --archives` lists both, newest first.
        let (ok, outcome, stderr) = verb(c, &["backup", "run", "--job", "app"]).await?;
        ensure!(ok, "backup run: {outcome} {stderr}");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir.join("dest"))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar.zst"))
            .collect();
        on_disk.sort();
        ensure!(on_disk.len() == 2, "two archives: {on_disk:?}");
        let listed = wait_until_default("both archives in the catalog", async || {
            let out = c
                .opsctl
                .run(&["backups", "--host", HOST, "--job", "app", "--archives"])
                .await?
                .ok()?;
            Ok(out
                .stdout
                .contains("2 archive(s) of 1 job(s)")
                .then_some(out.stdout))
        })
        .await?;
        let rows: Vec<&str> = listed.lines().filter(|l| l.contains(".tar.zst")).collect();
        ensure!(
            rows.len() == 2
                && rows[0].contains(on_disk[1].as_str())
                && rows[0].trim_end().ends_with('*')
                && rows[1].contains(on_disk[0].as_str()),
            "{listed}"
        );

        // 3. A relative target: opsctl refuses it before anything is issued.
        let before = ledger_len(c).await?;
        let out = c
            .opsctl
            .run(&[
                "restore",
                "--archive",
                "latest",
                "--target",
                "restored-rel",
                "--host",
                HOST,
            ])
            .await?;
        ensure!(
            out.status.code() == Some(2)
                && out
                    .stderr
                    .contains("--target \"restored-rel\" is a relative path"),
            "a usage error (exit 2): {:?} {}",
            out.status,
            out.stderr
        );
        ensure!(ledger_len(c).await? == before, "nothing was issued");

        // 4. Past opsctl (a raw request), the agent refuses it, naming the path.
        let client = async_nats::connect(&url).await?;
        let req = json!({"action": "restore", "hosts": [HOST], "deadline_ms": 60000,
                         "issued_by": "test", "archive": "latest", "target": "restored-rel"});
        let reply = client
            .request(subjects::API_COMMAND, serde_json::to_vec(&req)?.into())
            .await?;
        let reply: Value = serde_json::from_slice(&reply.payload)?;
        let id = reply["commands"][0]["command_id"]
            .as_str()
            .with_context(|| format!("issued: {reply}"))?
            .to_owned();
        let view = wait_until_default("the agent's answer", async || {
            let cmd = command_view(c, &id).await?;
            Ok((cmd["state"] == "rejected" || cmd["state"] == "failed").then_some(cmd))
        })
        .await?;
        ensure!(
            view.to_string()
                .contains("restore target \\\"restored-rel\\\" is a relative path"),
            "{view}"
        );
        ensure!(
            !dir.join("restored-rel").exists() && !Path::new("restored-rel").exists(),
            "nothing restored"
        );
        Ok(())
    })
    .await;
}
