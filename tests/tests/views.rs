//! `opsctl hosts|backups|incidents|alerts` end to end: a real nats-server, an active and a
//! standby coordinator, and two real agents running log and backup modules against real files.
//! The JSON views show what the agents reported (log matches, backup successes with archive,
//! size, files and pruning, a backup failure with its reason, liveness), filters and paging
//! work, the failed backup's alert shows in `opsctl alerts`, and the standby answers every view
//! too, saying it is the standby.

use std::fs;
use std::io::Write;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{
    AlertState, AlertsReply, BackupState, BackupsReply, HostsReply, HostsRequest, IncidentsReply,
    Liveness, PageRequest, Responder,
};
use opsfleet_proto::subjects;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use serde::de::DeserializeOwned;

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// `opsctl --output json <args>`, parsed.
async fn json<T: DeserializeOwned>(opsctl: &Opsctl, args: &[&str]) -> Result<T> {
    opsctl.json(args).await
}

fn q(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_show_what_agents_reported_from_active_and_standby() {
    Cluster::run("views", async |c: &mut Cluster| {
        let root = c.dir().join("host-files");
        let (logs, site, site_dest, db_dest) = (
            root.join("web-logs"),
            root.join("site"),
            root.join("site-backups"),
            root.join("db-backups"),
        );
        for d in [&logs, &site, &site_dest, &db_dest] {
            fs::create_dir_all(d)?;
        }
        fs::write(site.join("index.html"), "<h1>shop</h1>")?;
        fs::write(site.join("logo.svg"), vec![b'x'; 16 * 1024])?;
        let app_log = logs.join("app.log");
        fs::write(&app_log, "INFO starting\n")?;
        let missing = root.join("no-such-db-dir");

        // web-01: a log tail, and a backup job that runs every 2 s keeping one archive, so
        // retention prunes. db-01: a backup job whose source does not exist, so it fails.
        let web_modules = format!(
            r#"
[[modules]]
type = "log"
interval = "200ms"
paths = [{log}]

[[modules]]
type = "backup"
interval = "300ms"
[[modules.jobs]]
name = "site"
sources = [{site}]
destination = {dest}
schedule = "2s"
keep_days = 0
keep_count = 1
"#,
            log = q(&app_log),
            site = q(&site),
            dest = q(&site_dest),
        );
        let db_modules = format!(
            r#"
[[modules]]
type = "backup"
interval = "300ms"
[[modules.jobs]]
name = "nightly"
sources = [{src}]
destination = {dest}
schedule = "1h"
"#,
            src = q(&missing),
            dest = q(&db_dest),
        );
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        let beat = Duration::from_millis(300);
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(beat)
                .modules_toml(&web_modules),
        )?;
        c.add_agent(
            AgentSpec::new("db-01")
                .heartbeat(beat)
                .modules_toml(&db_modules),
        )?;
        {
            let mut f = fs::OpenOptions::new().append(true).open(&app_log)?;
            writeln!(f, "ERROR payment gateway timed out")?;
            writeln!(f, "INFO recovered")?;
        }
        let opsctl = c.opsctl.clone();

        // Which coordinator is the standby (both answer `status` on their own subject).
        let standby = wait_until(
            "an active and a standby coordinator",
            WAIT,
            POLL,
            async || {
                let (blue, green) = (
                    opsctl.status(Some("blue")).await?.responder,
                    opsctl.status(Some("green")).await?.responder,
                );
                let roles = (blue.role.as_str(), green.role.as_str());
                Ok(match roles {
                    ("active", "standby") => Some("green"),
                    ("standby", "active") => Some("blue"),
                    _ => None,
                })
            },
        )
        .await?;

        // Backups: a success with archive, size, files and pruning on web-01; a failure with
        // its reason on db-01.
        let started = std::time::Instant::now();
        let backups: BackupsReply = wait_until(
            "both backup jobs in `opsctl backups`",
            WAIT,
            POLL,
            async || {
                let r: BackupsReply = json(&opsctl, &["backups"]).await?;
                let site = r
                    .backups
                    .iter()
                    .find(|b| b.host == "web-01" && b.job == "site");
                let db = r
                    .backups
                    .iter()
                    .find(|b| b.host == "db-01" && b.job == "nightly");
                let ready = site
                    .is_some_and(|s| s.last_success.is_some() && s.pruned_archives >= 1)
                    && db.is_some_and(|d| d.last_failure.is_some());
                Ok(ready.then_some(r))
            },
        )
        .await?;
        eprintln!(
            "backups visible (with a prune) after {:?}",
            started.elapsed()
        );
        let site = backups
            .backups
            .iter()
            .find(|b| b.job == "site")
            .context("site row")?;
        let ok = site.last_success.as_ref().context("site success")?;
        let name = std::path::Path::new(&ok.archive)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ensure!(
            name.starts_with("site-") && std::path::Path::new(&ok.archive).starts_with(&site_dest),
            "archive {:?}",
            ok.archive
        );
        ensure!(ok.size_bytes > 0 && ok.files >= 2, "success {ok:?}");
        ensure!(site.archives_kept >= 1, "{site:?}");
        let db = backups
            .backups
            .iter()
            .find(|b| b.job == "nightly")
            .context("db row")?;
        let failure = db.last_failure.as_ref().context("db failure")?;
        ensure!(
            failure.reason.contains("no-such-db-dir"),
            "failure reason does not name the missing source: {:?}",
            failure.reason
        );
        ensure!(
            db.state == BackupState::Failed && db.last_success.is_none(),
            "{db:?}"
        );
        let only_db: BackupsReply = json(&opsctl, &["backups", "--host", "db-*"]).await?;
        ensure!(
            only_db.backups.iter().all(|b| b.host == "db-01") && only_db.backups.len() == 1,
            "--host db-* gave {:?}",
            only_db.backups
        );

        // Incidents: the ERROR line, counted, with its excerpt.
        let incidents: IncidentsReply = wait_until(
            "the log incident in `opsctl incidents`",
            WAIT,
            POLL,
            async || {
                let r: IncidentsReply = json(&opsctl, &["incidents", "--since", "1h"]).await?;
                Ok(r.incidents.iter().any(|i| i.host == "web-01").then_some(r))
            },
        )
        .await?;
        let inc = &incidents.incidents[0];
        ensure!(inc.path == app_log.display().to_string(), "{inc:?}");
        ensure!(inc.count == 1, "one ERROR line, counted {}", inc.count);
        ensure!(
            inc.last_excerpt.contains("payment gateway timed out"),
            "{inc:?}"
        );
        ensure!(
            inc.first_seen_unix_ms > 0 && inc.first_seen_unix_ms <= inc.last_seen_unix_ms,
            "{inc:?}"
        );

        // Hosts: both up; globs, state filters and paging.
        let hosts: HostsReply =
            wait_until("both hosts up in `opsctl hosts`", WAIT, POLL, async || {
                let r: HostsReply = json(&opsctl, &["hosts"]).await?;
                let up = r
                    .hosts
                    .iter()
                    .filter(|h| h.liveness == Liveness::Up)
                    .count();
                Ok((up == 2).then_some(r))
            })
            .await?;
        let web = hosts
            .hosts
            .iter()
            .find(|h| h.host == "web-01")
            .context("web-01")?;
        ensure!(
            web.incidents == 1 && web.heartbeat_interval_ms == 300,
            "{web:?}"
        );
        let dbh = hosts
            .hosts
            .iter()
            .find(|h| h.host == "db-01")
            .context("db-01")?;
        ensure!(dbh.failing_backups == 1, "{dbh:?}");
        let webs: HostsReply = json(&opsctl, &["hosts", "--host", "web-*"]).await?;
        let names: Vec<&str> = webs.hosts.iter().map(|h| h.host.as_str()).collect();
        ensure!(names == ["web-01"], "--host web-* gave {names:?}");
        let first: HostsReply = json(&opsctl, &["hosts", "--limit", "1"]).await?;
        ensure!(
            first.hosts.len() == 1
                && first.hosts[0].host == "db-01"
                && first.next.as_deref() == Some("db-01"),
            "--limit 1 gave {:?} next {:?}",
            first.hosts,
            first.next
        );

        // The standby answers every view too, from its own replica, and says it is standby.
        let is_standby =
            |r: &Responder| r.name == standby && r.role == opsfleet_proto::api::LeaderRole::Standby;
        let sb_hosts: HostsReply = wait_until("the standby's hosts view", WAIT, POLL, async || {
            let r: HostsReply = json(&opsctl, &["hosts", "--coordinator", standby]).await?;
            Ok((r.hosts.len() == 2).then_some(r))
        })
        .await?;
        ensure!(is_standby(&sb_hosts.responder), "{:?}", sb_hosts.responder);
        let sb_backups: BackupsReply =
            json(&opsctl, &["backups", "--coordinator", standby]).await?;
        ensure!(
            is_standby(&sb_backups.responder),
            "{:?}",
            sb_backups.responder
        );
        ensure!(
            sb_backups
                .backups
                .iter()
                .any(|b| b.job == "site" && b.last_success.is_some())
                && sb_backups
                    .backups
                    .iter()
                    .any(|b| b.job == "nightly" && b.last_failure.is_some()),
            "standby backups: {:?}",
            sb_backups.backups
        );
        let sb_inc: IncidentsReply =
            json(&opsctl, &["incidents", "--coordinator", standby]).await?;
        ensure!(is_standby(&sb_inc.responder), "{:?}", sb_inc.responder);
        ensure!(
            sb_inc.incidents.len() == 1,
            "standby incidents: {:?}",
            sb_inc.incidents
        );
        // Alerts are evaluated by the active coordinator only (the failed backup fires at
        // once by default); the standby shows them from its own fold of the log.
        let sb_alerts: AlertsReply = wait_until(
            "the failed backup's alert on the standby",
            WAIT,
            POLL,
            async || {
                let r: AlertsReply = json(
                    &opsctl,
                    &["alerts", "--coordinator", standby, "--state", "firing"],
                )
                .await?;
                let found = r
                    .alerts
                    .iter()
                    .any(|a| a.rule == "backup_failed" && a.host == "db-01");
                Ok(found.then_some(r))
            },
        )
        .await?;
        ensure!(
            is_standby(&sb_alerts.responder),
            "{:?}",
            sb_alerts.responder
        );
        let alert = sb_alerts
            .alerts
            .iter()
            .find(|a| a.rule == "backup_failed")
            .context("backup_failed alert")?;
        ensure!(
            alert.state == AlertState::Firing
                && alert.last_transition.ends_with("-> firing")
                && alert.since_unix_ms > 0,
            "{alert:?}"
        );
        ensure!(
            sb_alerts
                .alerts
                .iter()
                .all(|a| a.state == AlertState::Firing),
            "--state firing gave {:?}",
            sb_alerts.alerts
        );
        let web_alerts: AlertsReply = json(&opsctl, &["alerts", "--host", "web-*"]).await?;
        ensure!(
            web_alerts.alerts.iter().all(|a| a.host == "web-01"),
            "--host web-* gave {:?}",
            web_alerts.alerts
        );
        let table = opsctl
            .run(&["hosts", "--coordinator", standby])
            .await?
            .ok()?
            .stdout;
        ensure!(
            table.starts_with(&format!("answered by {standby} (standby, epoch ")),
            "table header: {table}"
        );
        ensure!(
            table.contains("web-01") && table.contains("db-01"),
            "{table}"
        );

        // Paging over the wire: one host per page from the standby, following `next`.
        let client = async_nats::connect(c.nats_url()).await?;
        let subject = subjects::api_subject_for(subjects::API_HOSTS, standby);
        let (mut paged, mut after) = (Vec::new(), None);
        loop {
            let req = HostsRequest {
                page: PageRequest {
                    limit: Some(1),
                    after: after.clone(),
                },
                ..Default::default()
            };
            let msg = tokio::time::timeout(
                Duration::from_secs(20),
                client.request(subject.clone(), serde_json::to_vec(&req)?.into()),
            )
            .await??;
            let page: HostsReply = serde_json::from_slice(&msg.payload)?;
            ensure!(
                page.hosts.len() <= 1,
                "a page of limit 1 had {:?}",
                page.hosts
            );
            paged.extend(page.hosts.into_iter().map(|h| h.host));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
            ensure!(paged.len() <= 2, "paging does not end: {paged:?}");
        }
        ensure!(paged == ["db-01", "web-01"], "pages gave {paged:?}");

        // A stopped agent turns `lost` (5 heartbeat intervals of silence) and `--state lost`
        // finds it, while the other host stays up.
        c.agent("db-01")?.stop().await?;
        wait_until(
            "db-01 lost in `opsctl hosts --state lost`",
            WAIT,
            POLL,
            async || {
                let r: HostsReply = json(&opsctl, &["hosts", "--state", "lost"]).await?;
                let names: Vec<&str> = r.hosts.iter().map(|h| h.host.as_str()).collect();
                Ok((names == ["db-01"]).then_some(()))
            },
        )
        .await?;
        // A lost host is never `up`: it sent nothing since.
        let up: HostsReply = json(&opsctl, &["hosts", "--state", "up"]).await?;
        ensure!(
            up.hosts.iter().all(|h| h.host != "db-01"),
            "--state up gave {:?}",
            up.hosts
        );
        Ok(())
    })
    .await;
}
