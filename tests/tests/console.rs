//! The web console against a real cluster (nats-server, two coordinators with `[http]` and
//! `[console]`, three agents), over HTTP: login, sessions, the strict headers, CSRF and origin
//! checks, role refusals that record nothing, an operator's pause through the standby's
//! console acted on by the active, escaping of host-provided text, and the live event stream
//! resuming from `Last-Event-ID`.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use opsfleet_proto::api::{CommandView, LeaderRole};
use opsfleet_tests::console::{console_toml, read_events, read_keepalive, ConsoleClient};
use opsfleet_tests::{
    disk_and_log_modules, wait_until_default, AgentSpec, Cluster, CoordinatorSpec,
};

// The console under the shipped NATS permissions and over TLS.
#[path = "console/transport.rs"]
mod transport;

const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];
const PAGES: [&str; 10] = [
    "/console/fleet",
    "/console/fleet?state=up&host=web-*",
    "/console/host/web-01",
    "/console/alerts",
    "/console/incidents",
    "/console/backups",
    "/console/commands",
    "/console/rollouts",
    "/console/events",
    "/console/coordinator",
];
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn ledger(c: &Cluster) -> Result<Vec<CommandView>> {
    let out = c
        .opsctl
        .run(&["--output", "json", "commands", "--limit", "500"])
        .await?
        .ok()?;
    Ok(serde_json::from_str(out.stdout.trim())?)
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

/// (active, standby) coordinator names once one is active.
async fn roles(c: &mut Cluster) -> Result<(String, String)> {
    wait_until_default("an active coordinator", async || {
        let mut active = None;
        let mut standby = None;
        for name in ["blue", "green"] {
            let s = c.status(Some(name)).await?;
            match s.responder.role {
                LeaderRole::Active => active = Some(name.to_owned()),
                _ => standby = Some(name.to_owned()),
            }
        }
        Ok(active.zip(standby))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_logins_pages_actions_and_live_events() {
    Cluster::run("console", async |c: &mut Cluster| {
        let console = console_toml(c.dir())?;
        for name in ["blue", "green"] {
            c.add_coordinator(CoordinatorSpec::new(name).http().config_toml(&console))?;
        }
        let log = c.dir().join("app.log");
        std::fs::write(&log, "")?;
        let modules = disk_and_log_modules(&[c.dir()], &log, 99.0, 99.5);
        for host in HOSTS {
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(200))
                    .modules_toml(&modules),
            )?;
        }
        let min = HOSTS.iter().map(|h| (h.to_string(), 3)).collect();
        for name in ["blue", "green"] {
            c.wait_hosts_at_least(name, &min).await?;
        }
        let (active, standby) = roles(c).await?;
        let addr = |c: &mut Cluster, name: &str| -> Result<std::net::SocketAddr> {
            c.coordinator(name)?
                .http_addr()
                .with_context(|| format!("{name} serves no HTTP"))
        };
        let standby_addr = addr(c, &standby)?;

        // Without a session every page redirects to the login form.
        let mut anon = ConsoleClient::new(standby_addr)?;
        for path in PAGES {
            let p = anon.get(path).await?;
            ensure!(
                p.status == 303 && p.header("location") == "/console/login",
                "{path} without a session: {} {}",
                p.status,
                p.header("location")
            );
        }
        ensure!(anon.get("/console/events/stream").await?.status == 401);

        // Login: a wrong token is refused, a right one gives a session.
        let bad = anon.try_login("vic", "not-the-token").await?;
        ensure!(bad.status == 401, "bad token: {} {}", bad.status, bad.body);
        ensure!(
            bad.body.contains("data-test=\"login-error\""),
            "{}",
            bad.body
        );
        ensure!(!bad.header("set-cookie").contains("opsfleet_session"));
        // A name no operator can have (not a subject token) fails like a wrong token.
        let long = anon.try_login(&"x".repeat(5000), "t").await?;
        ensure!(
            long.status == 401,
            "a 5,000-character name: {}",
            long.status
        );
        let mut vic = ConsoleClient::new(standby_addr)?;
        vic.login("vic").await?;
        // Failed logins slow the next ones for that name, even with the right token.
        for i in 0..4 {
            let p = anon.try_login("ada", "guess").await?;
            ensure!(p.status == 401, "guess {i}: {}", p.status);
        }
        let slowed = anon.try_login("ada", "ada-token-3").await?;
        ensure!(
            slowed.status == 429,
            "after 4 failures: {} {}",
            slowed.status,
            slowed.body
        );
        ensure!(
            slowed.body.contains("too many failed logins"),
            "{}",
            slowed.body
        );

        // Every page answers a viewer, with the strict headers.
        for path in PAGES {
            let p = vic.get(path).await?;
            ensure!(p.status == 200, "{path}: {} {}", p.status, p.body);
            ensure!(
                p.header("content-security-policy") == CSP,
                "{path}: CSP {:?}",
                p.header("content-security-policy")
            );
            ensure!(p.header("x-content-type-options") == "nosniff", "{path}");
            ensure!(p.header("referrer-policy") == "same-origin", "{path}");
            ensure!(p.header("cache-control") == "no-store", "{path}");
            ensure!(
                p.body
                    .contains(&format!("data-test=\"leader-name\">{standby}<")),
                "{path}: leader box"
            );
            ensure!(
                !p.body.contains(" style=") && !p.body.contains("<script>"),
                "{path}: inline style or script"
            );
        }
        let fleet = vic.get("/console/fleet").await?;
        for host in HOSTS {
            ensure!(
                fleet
                    .body
                    .contains(&format!("data-test=\"host-row\" data-host=\"{host}\"")),
                "{host} row"
            );
        }
        let js = vic.get("/console/assets/console.js").await?;
        ensure!(js.status == 200 && js.header("content-type").starts_with("text/javascript"));
        ensure!(js.body.contains("textContent") && !js.body.contains("innerHTML"));

        // CSRF and origin: refused with 403, nothing recorded.
        let before = ledger(c).await?.len();
        let csrf = vic.get("/console/host/web-01").await?.csrf()?;
        let origin = vic.base.clone();
        let pause = |csrf: &str| -> Vec<(String, String)> {
            [
                ("verb", "command"),
                ("action", "pause"),
                ("host", "web-01"),
                ("module", "disk"),
                ("csrf", csrf),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let as_refs = |f: &[(String, String)]| -> Vec<(String, String)> { f.to_vec() };
        for (form, origin, what) in [
            (pause("")[..4].to_vec(), Some(origin.as_str()), "no token"),
            (pause("wrong"), Some(origin.as_str()), "wrong token"),
            (pause(&csrf), Some("http://evil.example"), "cross origin"),
        ] {
            let form = as_refs(&form);
            let refs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let p = vic.post("/console/act", &refs, origin).await?;
            ensure!(p.status == 403, "{what}: {} {}", p.status, p.body);
        }
        // A viewer's pause with a good token: refused by role, nothing recorded.
        let form = pause(&csrf);
        let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = vic.post("/console/act", &refs, Some(&origin)).await?;
        ensure!(p.status == 403, "viewer pause: {} {}", p.status, p.body);
        ensure!(
            p.body.contains("pause needs role operator; you are viewer"),
            "{}",
            p.body
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            ledger(c).await?.len() == before,
            "a refused action recorded a command"
        );

        // Host-provided text is escaped.
        std::fs::write(&log, "ERROR boom <script>alert(1)</script>\n")?;
        wait_until_default("the incident on the console", async || {
            let p = vic.get("/console/incidents").await?;
            ensure!(
                !p.body.contains("<script>alert(1)"),
                "unescaped: {}",
                p.body
            );
            Ok(p.body
                .contains("boom &lt;script&gt;alert(1)&lt;/script&gt;")
                .then_some(()))
        })
        .await?;

        // The live stream: consecutive stream sequences, and a reconnect with Last-Event-ID
        // resumes right after it (no gap, no repeat).
        let mut stream = vic.events("", None).await?;
        ensure!(stream
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream")));
        let first = read_events(&mut stream, 6).await?;
        drop(stream);
        let ids: Vec<u64> = first.iter().map(|e| e.0).collect();
        ensure!(ids.windows(2).all(|w| w[1] == w[0] + 1), "gaps in {ids:?}");
        ensure!(
            first.iter().any(|e| e.1.contains("\"kind\":\"heartbeat\"")),
            "{first:?}"
        );
        let resume_after = ids[2];
        let mut again = vic.events("", Some(resume_after)).await?;
        let next = read_events(&mut again, 3).await?;
        ensure!(
            next[0].0 == resume_after + 1,
            "resumed at {} after {resume_after}",
            next[0].0
        );
        ensure!(
            next[..3].iter().map(|e| e.0).collect::<Vec<_>>() == ids[3..6],
            "{next:?} vs {ids:?}"
        );
        drop(again);
        let mut filtered = vic.events("host=web-02&kind=heartbeat", None).await?;
        for (_, data) in read_events(&mut filtered, 3)
            .await?
            .iter()
            .filter(|e| !e.1.is_empty())
        {
            ensure!(
                data.contains("\"host\":\"web-02\"") && data.contains("\"kind\":\"heartbeat\""),
                "{data}"
            );
        }
        drop(filtered);
        // A quiet stream still gets a keepalive comment (every 15 s; at most 30 s apart).
        let mut quiet = vic.events("host=no-such-host", None).await?;
        let waited = read_keepalive(&mut quiet, Duration::from_secs(30)).await?;
        ensure!(
            waited >= Duration::from_secs(10),
            "keepalive after {waited:?}: too early?"
        );
        drop(quiet);
        // A filter longer than 64 characters is refused (a long run of stars once cost
        // exponential time per event).
        let evil = format!("/console/events/stream?kind={}z", "*".repeat(100));
        let p = vic.get(&evil).await?;
        ensure!(p.status == 400, "a 101-character kind filter: {}", p.status);

        // An operator pauses a module through the standby's console: the active records it,
        // issued by that operator in that role, and the agent ends paused.
        let mut olga = ConsoleClient::new(standby_addr)?;
        olga.login("olga").await?;
        let csrf = olga.get("/console/host/web-01").await?.csrf()?;
        let form = pause(&csrf);
        let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = olga
            .post("/console/act", &refs, Some(&olga.base.clone()))
            .await?;
        ensure!(p.status == 200, "operator pause: {} {}", p.status, p.body);
        let marker = "data-test=\"command-id\">";
        let start = p.body.find(marker).context("no command id")? + marker.len();
        let id = p.body[start..].split('<').next().unwrap_or("").to_owned();
        let done = wait_until_default("the pause to complete", async || {
            let all = ledger(c).await?;
            let cmd = all
                .into_iter()
                .find(|v| v.id == id)
                .ok_or_else(|| anyhow!("{id} not in the ledger"))?;
            Ok(cmd.is_final().then_some(cmd))
        })
        .await?;
        ensure!(done.state.as_str() == "completed", "{done:?}");
        ensure!(
            done.issued_by == "olga" && done.issued_role.map(|r| r.as_str()) == Some("operator"),
            "{done:?}"
        );
        ensure!(done.epoch > 0);
        let json = olga.get(&format!("/console/api/commands?ids={id}")).await?;
        ensure!(
            json.body.contains("\"state\":\"completed\""),
            "{}",
            json.body
        );
        wait_until_default("web-01's disk module paused", async || {
            Ok((module_state(c, "web-01", "disk").await? == "paused").then_some(()))
        })
        .await?;
        let (still_active, _) = roles(c).await?;
        ensure!(still_active == active, "the active changed during the test");

        // Logout ends the session, and the live stream it opened (within a keepalive period).
        let mut open_stream = olga.events("host=no-such-host", None).await?;
        let csrf = olga.get("/console/fleet").await?.csrf()?;
        let p = olga
            .post(
                "/console/logout",
                &[("csrf", &csrf)],
                Some(&olga.base.clone()),
            )
            .await?;
        ensure!(p.status == 303, "logout: {}", p.status);
        ensure!(
            olga.get("/console/fleet").await?.status == 303,
            "still logged in"
        );
        let ended = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(_)) = open_stream.chunk().await {}
        })
        .await;
        ensure!(ended.is_ok(), "the live stream outlived the logout by 60 s");
        Ok(())
    })
    .await;
}
