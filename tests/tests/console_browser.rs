//! The web console in a real headless browser (Debian's chromium + chromedriver, driven over
//! WebDriver) against a real cluster: two coordinators with `[http]` + `[console]`, three
//! agents. An operator logs in on the standby's console, sees the three hosts, watches a new
//! event arrive on the live stream, pauses a module with its button and sees the agent's
//! result, silences a firing disk alert (still firing, shown silenced), acknowledges it and
//! expires the silence; a viewer is refused an operator's button; the fleet page fits a
//! phone-width screen.
//! `UPDATE_SCREENSHOT=1` also writes the fleet page to `docs/console-fleet.png`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::LeaderRole;
use opsfleet_tests::browser::{Browser, BrowserSpec};
use opsfleet_tests::console::{console_toml, USERS};
use opsfleet_tests::{
    disk_and_log_modules, wait_until_default, AgentSpec, Cluster, CoordinatorSpec,
};

const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];
/// A browser step on a loaded 2-core machine: generous.
const STEP: Duration = Duration::from_secs(45);

fn token(name: &str) -> &'static str {
    USERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, t)| *t)
        .unwrap_or("")
}

async fn login(b: &Browser, base: &str, name: &str) -> Result<()> {
    b.goto(&format!("{base}/console/login")).await?;
    b.wait_for("#login-name", STEP).await?;
    b.fill("#login-name", name).await?;
    b.fill("#login-token", token(name)).await?;
    b.click("#login-submit").await?;
    b.wait_text("#who", name, STEP).await?;
    Ok(())
}

/// Attempts at a console action the active may be too busy to finish (catching up after a
/// failover, its event not back through ingest in time under load).
const ACT_ATTEMPTS: usize = 3;

/// Clicks `button` on `page` and returns the text of `#action-done` once it contains `done`.
/// A "Not done" answer (`#action-error`) is printed with the page; if `landed` then shows the
/// action took effect after all (recorded, only the answer was late) it counts as done, else
/// the click is tried again, at most `ACT_ATTEMPTS` times. A refusal is never retried.
async fn act(
    b: &Browser,
    page: &str,
    button: &str,
    done: &str,
    landed: impl AsyncFn() -> Result<bool>,
) -> Result<String> {
    let mut errors = Vec::new();
    for attempt in 1..=ACT_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            b.goto(page).await?;
        }
        b.wait_for(button, STEP).await?;
        b.click(button).await?;
        b.wait_for("#action-done, #action-error, #refused", STEP)
            .await?;
        if b.count("#action-done").await? > 0 {
            let text = b.wait_text("#action-done", done, STEP).await?;
            return Ok(text);
        }
        let page_text = b.describe_page().await;
        ensure!(
            b.count("#refused").await? == 0,
            "`{button}` was refused: {page_text}"
        );
        eprintln!("attempt {attempt} of `{button}` was not done: {page_text}");
        if landed().await? {
            return Ok(format!("{done} (answer late: {page_text})"));
        }
        errors.push(page_text);
    }
    anyhow::bail!(
        "`{button}` was not done in {ACT_ATTEMPTS} attempts:\n{}",
        errors.join("\n---\n")
    )
}

/// Whether `css` on `page` shows `text` within 20 s (reloading the page while it does not).
async fn shows(b: &Browser, page: &str, css: &str, text: &str) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        b.goto(page).await?;
        if b.count(css).await? > 0 && b.text(css).await?.contains(text) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn module_state(c: &mut Cluster, host: &str, module: &str) -> Result<String> {
    let s = c.status(None).await?;
    Ok(s.hosts
        .iter()
        .find(|h| h.host == host)
        .and_then(|h| h.modules.iter().find(|m| m.name == module))
        .map(|m| m.state.as_str().to_owned())
        .unwrap_or_default())
}

/// The standby coordinator's name once one of the two is active.
async fn standby(c: &mut Cluster) -> Result<String> {
    wait_until_default("an active coordinator", async || {
        let mut active = false;
        let mut standby = None;
        for name in ["blue", "green"] {
            match c.status(Some(name)).await?.responder.role {
                LeaderRole::Active => active = true,
                _ => standby = Some(name.to_owned()),
            }
        }
        Ok(standby.filter(|_| active))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_uses_the_console_in_a_real_browser() {
    Cluster::run("console-browser", async |c: &mut Cluster| {
        let console = console_toml(c.dir())?;
        for name in ["blue", "green"] {
            c.add_coordinator(CoordinatorSpec::new(name).http().config_toml(&console))?;
        }
        let log = c.dir().join("app.log");
        std::fs::write(&log, "")?;
        let modules = disk_and_log_modules(&[c.dir()], &log, 99.0, 99.5);
        // db-01's disk is "critical" from the start (thresholds of 1 and 2 %): a firing alert
        // to silence and acknowledge.
        let breached = disk_and_log_modules(&[c.dir()], &log, 1.0, 2.0);
        for host in HOSTS {
            let m = if host == "db-01" { &breached } else { &modules };
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(500))
                    .modules_toml(m),
            )?;
        }
        let min = HOSTS.iter().map(|h| (h.to_string(), 3)).collect();
        for name in ["blue", "green"] {
            c.wait_hosts_at_least(name, &min).await?;
        }
        let standby = standby(c).await?;
        let addr = c
            .coordinator(&standby)?
            .http_addr()
            .context("the standby serves no HTTP")?;
        let base = format!("http://{addr}");

        let b = Browser::start_with(BrowserSpec::new().window(1280, 900)).await?;

        // Log in as an operator on the standby's console; the fleet page lists the three hosts.
        login(&b, &base, "olga").await?;
        b.goto(&format!("{base}/console/fleet")).await?;
        b.wait_for("#hosts", STEP).await?;
        let rows = b.count("tr[data-test=host-row]").await?;
        ensure!(rows == 3, "fleet rows: {rows}\n{}", b.describe_page().await);
        for host in HOSTS {
            b.wait_text(
                &format!("tr[data-host={host}] [data-test=liveness]"),
                "up",
                STEP,
            )
            .await?;
        }
        let shot = c.dir().join("console-fleet.png");
        let (w, h) = b.screenshot(&shot).await?;
        ensure!(w >= 1000 && h >= 600, "screenshot {w}x{h}");
        if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
            let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console-fleet.png");
            std::fs::copy(&shot, &docs).with_context(|| format!("writing {}", docs.display()))?;
        }

        // The live stream: a new log error on web-02 appears without a reload.
        b.goto(&format!("{base}/console/events?host=web-02&module=log"))
            .await?;
        b.wait_text("#event-status", "live", STEP).await?;
        let before = b.count("li[data-test=event]").await?;
        std::fs::write(&log, "ERROR payment worker stalled (browser test)\n")?;
        let line = b
            .wait_text("#event-list", "web-02 log", STEP)
            .await
            .with_context(|| format!("{before} events listed before"))?;
        ensure!(
            !line.contains("web-01") && !line.contains("db-01"),
            "the host filter let another host through: {line}"
        );

        // Pause a module with its button: the agent's result shows, and the module is paused.
        b.goto(&format!("{base}/console/host/web-01")).await?;
        b.wait_for("[data-test=action-pause-log]", STEP).await?;
        b.click("[data-test=action-pause-log]").await?;
        b.wait_for("#action-result", STEP).await?;
        let result = b
            .wait_text("[data-test=result]", "completed", STEP)
            .await
            .with_context(|| "the pause's result never showed".to_owned())?;
        ensure!(result.contains("completed"), "{result}");
        wait_until_default("web-01's log module paused", async || {
            Ok((module_state(c, "web-01", "log").await? == "paused").then_some(()))
        })
        .await?;

        // db-01's firing disk alert: silence it from its row; it still fires, shown as
        // silenced; acknowledge it; expire the silence from the silences page.
        let row = "tr[data-alert^=\"disk_crit/db-01/\"]";
        wait_until_default(
            "db-01's disk_crit alert firing in the console",
            async || {
                b.goto(&format!("{base}/console/alerts")).await?;
                b.wait_for("#alerts", STEP).await?;
                let state = match b.count(&format!("{row} [data-test=state]")).await? {
                    0 => String::new(),
                    _ => b.text(&format!("{row} [data-test=state]")).await?,
                };
                Ok((state == "firing").then_some(()))
            },
        )
        .await?;
        let alerts = format!("{base}/console/alerts");
        let silenced_css = format!("{row} [data-test=silenced]");
        let done = act(
            &b,
            &alerts,
            &format!("{row} [data-test=action-silence]"),
            "is active",
            async || shows(&b, &alerts, &silenced_css, "silenced").await,
        )
        .await?;
        ensure!(done.contains("silence"), "{done}");
        b.goto(&format!("{base}/console/alerts")).await?;
        let silenced = b
            .wait_text(&format!("{row} [data-test=silenced]"), "silenced", STEP)
            .await?;
        ensure!(
            b.text(&format!("{row} [data-test=state]")).await? == "firing",
            "a silenced alert still fires: {silenced}"
        );
        let acked_css = format!("{row} [data-test=acked]");
        act(
            &b,
            &alerts,
            &format!("{row} [data-test=action-ack]"),
            "acked by olga",
            async || shows(&b, &alerts, &acked_css, "acked by olga").await,
        )
        .await?;
        b.goto(&format!("{base}/console/alerts")).await?;
        b.wait_text(&format!("{row} [data-test=acked]"), "acked by olga", STEP)
            .await?;
        b.goto(&format!("{base}/console/silences")).await?;
        b.wait_for("tr[data-test=silence-row]", STEP).await?;
        ensure!(
            b.text("tr[data-test=silence-row] [data-test=silence-state]")
                .await?
                == "active",
            "{}",
            b.describe_page().await
        );
        let silences = format!("{base}/console/silences");
        act(
            &b,
            &silences,
            "tr[data-test=silence-row] [data-test=action-expire]",
            "expired",
            async || {
                shows(
                    &b,
                    &silences,
                    "tr[data-test=silence-row] [data-test=silence-state]",
                    "expired",
                )
                .await
            },
        )
        .await?;
        b.goto(&format!("{base}/console/alerts")).await?;
        b.wait_for(row, STEP).await?;
        ensure!(
            b.count(&format!("{row} [data-test=silenced]")).await? == 0,
            "the expired silence still holds the alert"
        );

        // A viewer sees the same button but is refused, and nothing is recorded.
        b.click("#logout").await?;
        b.wait_for("#login-name", STEP).await?;
        login(&b, &base, "vic").await?;
        b.goto(&format!("{base}/console/host/web-01")).await?;
        b.wait_for("[data-test=action-resume-log]", STEP).await?;
        b.click("[data-test=action-resume-log]").await?;
        let refused = b.wait_text("#refused", "needs role operator", STEP).await?;
        ensure!(refused.contains("viewer"), "{refused}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            module_state(c, "web-01", "log").await? == "paused",
            "the viewer's resume took effect"
        );

        // Phone width: the fleet page does not scroll sideways.
        b.set_window_size(390, 844).await?;
        b.goto(&format!("{base}/console/fleet")).await?;
        b.wait_for("#hosts", STEP).await?;
        ensure!(
            !b.horizontal_overflow().await?,
            "the fleet page scrolls sideways at 390 px"
        );
        b.close().await?;
        Ok(())
    })
    .await;
}
