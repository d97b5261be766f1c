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
            ensure!(p.header("referrer-policy") == "no-referrer", "{path}");
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

        // Logout ends the session.
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
        Ok(())
    })
    .await;
}

/// Under the shipped NATS permissions (nkeys, TLS, `[api]` identified only): the standby's
/// console forwards an operator's noop on `ops.api.console.command` (which only coordinators
/// may publish), the active records it as that operator in that role, and the live stream
/// reads `OPS_EVENTS` with the coordinator's own credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_acts_under_the_shipped_nats_permissions() {
    use opsfleet_tests::secure::{Role, SecureNats};
    use opsfleet_tests::Opsctl;
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-console-secure-")
        .tempdir()
        .expect("temp dir");
    let s = SecureNats::start(tmp.path())
        .await
        .expect("secure nats-server");
    let opsctl = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("vera", "vera"));
    let toml = |id: &str, role| s.nats_toml(id, role);
    let (blue, green, web01) = (
        toml("blue", Role::Coordinator),
        toml("green", Role::Coordinator),
        toml("web-01", Role::Agent),
    );
    let SecureNats { server, .. } = s;
    let cluster = Cluster::with_server(tmp, server, opsctl);
    Cluster::run_with(cluster, "console-secure", async |c: &mut Cluster| {
        let console = console_toml(c.dir())?;
        for (name, nats) in [("blue", &blue), ("green", &green)] {
            let spec = CoordinatorSpec::new(name)
                .identified_only()
                .nats_toml(nats)
                .http()
                .config_toml(&console);
            c.add_coordinator(spec)?;
        }
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .nats_toml(&web01),
        )?;
        let min = [("web-01".to_owned(), 3)].into_iter().collect();
        for name in ["blue", "green"] {
            c.wait_hosts_at_least(name, &min).await?;
        }
        let (_, standby) = roles(c).await?;
        let addr = c.coordinator(&standby)?.http_addr().context("no HTTP")?;
        let mut olga = ConsoleClient::new(addr)?;
        olga.login("olga").await?;
        let mut stream = olga.events("host=web-01", None).await?;
        let seen = read_events(&mut stream, 2).await?;
        ensure!(
            seen.iter().any(|e| e.1.contains("\"host\":\"web-01\"")),
            "{seen:?}"
        );
        drop(stream);
        let csrf = olga.get("/console/host/web-01").await?.csrf()?;
        let base = olga.base.clone();
        let form = [
            ("verb", "command"),
            ("action", "noop"),
            ("host", "web-01"),
            ("csrf", csrf.as_str()),
        ];
        let p = olga.post("/console/act", &form, Some(&base)).await?;
        ensure!(
            p.status == 200,
            "noop through {standby}'s console: {} {}",
            p.status,
            p.body
        );
        let done = wait_until_default("the noop to complete", async || {
            let all = ledger(c).await?;
            Ok(all
                .into_iter()
                .find(|v| v.action.map(|a| a.as_str()) == Some("noop") && v.is_final()))
        })
        .await?;
        ensure!(done.state.as_str() == "completed", "{done:?}");
        ensure!(
            done.issued_by == "olga" && done.issued_role.map(|r| r.as_str()) == Some("operator"),
            "{done:?}"
        );

        // The failover button on the standby's console: the active hands the lease over.
        let (active, _) = roles(c).await?;
        let csrf = olga.get("/console/coordinator").await?.csrf()?;
        let form = [("verb", "failover"), ("csrf", csrf.as_str())];
        let p = olga.post("/console/act", &form, Some(&base)).await?;
        ensure!(
            p.status == 200 && p.body.contains("released the lease"),
            "failover: {} {}",
            p.status,
            p.body
        );
        wait_until_default("the other coordinator to become active", async || {
            let (now_active, _) = roles(c).await?;
            Ok((now_active != active).then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}

/// With a certificate in `[http]` the console is HTTPS only and its cookies are `Secure` with
/// the `__Host-` prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_session_cookie_is_secure_and_host_bound() {
    Cluster::run("console-tls", async |c: &mut Cluster| {
        let secrets = c.dir().join("secrets");
        opsfleet_tests::secure::generate_secrets(&secrets)?;
        let tls = secrets.join("tls");
        let http = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            tls.join("server.pem").display(),
            tls.join("server-key.pem").display()
        );
        // One live stream at a time, to see the cap.
        let console = console_toml(c.dir())? + "max_streams = 1\n";
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&format!("{console}\n{http}")))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(300)))?;
        let min = [("web-01".to_owned(), 2)].into_iter().collect();
        c.wait_hosts_at_least("blue", &min).await?;
        let addr = wait_until_default("blue's HTTPS endpoint", async || {
            Ok(c.coordinator("blue")?.http_addr())
        })
        .await?;
        let mut vic = ConsoleClient::new_tls(addr, &tls.join("ca.pem"))?;
        let form = vic.get("/console/login").await?;
        let pre = form.header("set-cookie").to_owned();
        ensure!(
            pre.starts_with("__Host-opsfleet_login=") && pre.contains("; Secure"),
            "{pre}"
        );
        ensure!(
            pre.contains("HttpOnly") && pre.contains("SameSite=Strict") && pre.contains("Path=/"),
            "{pre}"
        );
        let csrf = form.csrf()?;
        let base = vic.base.clone();
        let p = vic
            .post(
                "/console/login",
                &[
                    ("name", "vic"),
                    ("token", "vic-token-1"),
                    ("csrf", csrf.as_str()),
                ],
                Some(&base),
            )
            .await?;
        ensure!(p.status == 303, "login over TLS: {} {}", p.status, p.body);
        let session: Vec<&str> = p
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| v.starts_with("__Host-opsfleet_session="))
            .collect();
        ensure!(
            session.len() == 1
                && session[0].contains("; Secure")
                && session[0].contains("HttpOnly"),
            "{session:?}"
        );
        ensure!(vic.cookies().contains_key("__Host-opsfleet_session"));
        let fleet = vic.get("/console/fleet").await?;
        ensure!(
            fleet.status == 200 && fleet.body.contains("data-host=\"web-01\""),
            "{} {}",
            fleet.status,
            fleet.body
        );
        // The stream cap: a second concurrent stream is refused until the first ends.
        let mut first = vic.events("", None).await?;
        read_events(&mut first, 1).await?;
        let second = vic.events("", None).await;
        ensure!(
            second
                .as_ref()
                .is_err_and(|e| e.to_string().contains("503")),
            "a second stream beyond max_streams = 1: {:?}",
            second.map(|r| r.status())
        );
        drop(first);
        wait_until_default("the stream slot to free up", async || {
            Ok(vic.events("", None).await.ok().map(|_| ()))
        })
        .await?;
        // Plain HTTP to the same port gets no page.
        let plain = ConsoleClient::new(addr)?.get("/console/login").await;
        ensure!(
            plain.is_err() || plain.is_ok_and(|p| p.status != 200),
            "plain HTTP answered"
        );
        Ok(())
    })
    .await;
}
