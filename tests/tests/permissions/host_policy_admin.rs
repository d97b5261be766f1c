//! The agent's admin surface, part of the host-policy boundary: the admin routes live on a
//! 0600 Unix socket, not on the TCP port; on TCP only when asked, behind a bearer token, a Host
//! check and no browser Origin; and never change a module's kind or add a command probe.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{q, rejections, HOST};

/// One HTTP/1.1 request over `stream` (POST, or GET for `/healthz`): status and body.
async fn raw<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let method = if path == "/healthz" { "GET" } else { "POST" };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut out))
        .await
        .context("admin answer timed out")??;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    Ok((
        code,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    ))
}

/// Starts `HOST` with a health module `svc`, a disk module and `http` (the `[http]` table),
/// and returns its HTTP address (from its log) and its admin socket path.
async fn admin_agent(
    c: &mut Cluster,
    http: &str,
    policy: Option<&str>,
) -> Result<(std::net::SocketAddr, std::path::PathBuf)> {
    let js = jetstream::new(async_nats::connect(&c.nats_url()).await?);
    opsfleet_bus::ensure_topology(&js, &opsfleet_bus::TopologyConfig::default()).await?;
    let mut spec = AgentSpec::new(HOST)
        .heartbeat(Duration::from_millis(300))
        .disk(Duration::from_secs(1), vec!["/".into()])
        .modules_toml(&format!(
            "[[modules]]\ntype = \"health\"\nname = \"svc\"\ninterval = \"1s\"\n\n[http]\n{http}\n"
        ));
    if let Some(p) = policy {
        spec = spec.policy(p);
    }
    c.add_agent(spec)?;
    let agent = c.agent(HOST)?;
    let socket = agent.data_dir.join("admin.sock");
    let addr = wait_until_default("the agent's HTTP endpoint", async || {
        agent.proc_mut().check_running()?;
        let log = agent.proc().log_since_start();
        let line = log.lines().find(|l| l.contains("http endpoint bound"));
        Ok(line.and_then(|l| {
            let rest = l.split("addr=").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        }))
    })
    .await?;
    Ok((addr, socket))
}

async fn over_tcp(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(u16, String)> {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stream = tokio::net::TcpStream::connect(addr).await?;
    raw(stream, path, &refs, body).await
}

async fn over_socket(socket: &Path, path: &str, body: &str) -> Result<(u16, String)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connect to {}", socket.display()))?;
    raw(stream, path, &[("Host", "localhost")], body).await
}

const KIND_CHANGE: &str = "type = \"heartbeat\"\nname = \"disk\"\n";
const COMMAND_PROBE: &str = "type = \"health\"\nname = \"svc\"\n[[probes]]\nname = \"pwn\"\n\
    type = \"command\"\nargv = [\"/bin/true\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_on_a_private_socket_not_on_the_tcp_port() {
    Cluster::run("host-policy-socket", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        let (addr, socket) = admin_agent(c, "listen = \"127.0.0.1:0\"", None).await?;
        let meta = std::fs::symlink_metadata(&socket).context("the admin socket exists")?;
        let mode = meta.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "socket mode {mode:o}");
        ensure!(
            meta.uid() == std::fs::metadata(&dir)?.uid(),
            "owned by the agent's user"
        );

        // Loopback TCP serves no admin route unless asked (it did, without authentication).
        let own = vec![("Host", addr.to_string())];
        let (code, body) = over_tcp(addr, "/modules/disk/pause", &own, "").await?;
        ensure!(code == 404, "admin on TCP by default: {code} {body}");
        let (code, _) = over_tcp(addr, "/healthz", &own, "").await?;
        ensure!(
            code == 405 || code == 200,
            "the public routes stay on TCP ({code})"
        );

        // The socket serves them, but never a kind change or a new command probe.
        let (code, body) = over_socket(&socket, "/modules/disk/pause", "").await?;
        ensure!(code == 200 && body.contains("\"paused\""), "{code} {body}");
        let (code, body) = over_socket(&socket, "/modules/disk/reconfigure", KIND_CHANGE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_kind_change"),
            "{code} {body}"
        );
        let (code, body) = over_socket(&socket, "/modules/svc/reconfigure", COMMAND_PROBE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_command_probes"),
            "{code} {body}"
        );
        let url = c.nats_url();
        let rules = wait_until_default("both refusals in the log", async || {
            let r = rejections(&url).await?;
            Ok((r.len() >= 2).then(|| r.into_iter().map(|r| r.rules).collect::<Vec<_>>()))
        })
        .await?;
        ensure!(
            rules
                == [
                    vec!["policy.allow_kind_change"],
                    vec!["policy.allow_command_probes"]
                ],
            "{rules:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_admin_needs_the_token_a_local_host_and_no_browser() {
    Cluster::run("host-policy-tcp-admin", async |c: &mut Cluster| {
        let token_file = c.dir().join("admin.token");
        std::fs::write(&token_file, "k3y-for-tests\n")?;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
        let http = format!(
            "listen = \"127.0.0.1:0\"\nadmin_tcp = true\nadmin_token_file = {}",
            q(&token_file)
        );
        // As open as the policy gets: the admin routes refuse kind changes and command
        // probes anyway.
        let policy = "allow_kind_change = true\nallow_command_probes = true";
        let (addr, _) = admin_agent(c, &http, Some(policy)).await?;
        let own = ("Host", addr.to_string());
        let foreign = ("Host", format!("evil.example:{}", addr.port()));
        let token = ("Authorization", "Bearer k3y-for-tests".to_owned());
        let wrong = ("Authorization", "Bearer guess".to_owned());
        let origin = ("Origin", "http://evil.example".to_owned());
        for (what, headers, want) in [
            ("no token", vec![own.clone()], 401),
            ("a wrong token", vec![own.clone(), wrong], 401),
            (
                "a foreign Host (DNS rebinding)",
                vec![foreign, token.clone()],
                403,
            ),
            (
                "a browser Origin",
                vec![own.clone(), token.clone(), origin],
                403,
            ),
        ] {
            let (code, body) = over_tcp(addr, "/modules/disk/pause", &headers, "").await?;
            ensure!(code == want, "{what}: {code} {body}");
        }
        let ok = [own, token];
        let (code, body) = over_tcp(addr, "/modules/disk/pause", &ok, "").await?;
        ensure!(
            code == 200 && body.contains("\"paused\""),
            "with the token: {code} {body}"
        );
        let (code, body) = over_tcp(addr, "/modules/disk/reconfigure", &ok, KIND_CHANGE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_kind_change"),
            "{code} {body}"
        );
        let (code, body) = over_tcp(addr, "/modules/svc/reconfigure", &ok, COMMAND_PROBE).await?;
        ensure!(
            code == 403 && body.contains("policy.allow_command_probes"),
            "{code} {body}"
        );
        Ok(())
    })
    .await;
}
