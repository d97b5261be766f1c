//! The console under the shipped NATS permissions (actions forwarded with coordinator
//! credentials only) and over TLS (secure, host-bound cookies; the stream cap).

use super::*;
use opsfleet_tests::console::ConsoleClient;

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
