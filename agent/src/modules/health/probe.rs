//! The probes: HTTP(S) GET (`http.rs`), TCP connect, command (its process group killed on
//! timeout), certificate file (`cert.rs`) and WebSocket (`ws.rs`). Each returns an
//! `Outcome`; none of them panics or blocks the runtime.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::http::{exchange, http_probe, Request};
use super::{cert, ws};
use crate::config::{parse_http_url, ProbeConfig, ProbeType, DEFAULT_EXPECT_EXIT};

pub use super::seen::{Seen, BODY_LIMIT};

/// Result of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub success: bool,
    /// What was seen: `status 200`, `exit 3`, `timed out after 200ms`, an error.
    pub detail: String,
    pub latency: Duration,
    /// `notAfter` of the certificate the probe saw (TLS server or PEM file), when it saw one.
    pub cert_not_after_unix_ms: Option<i64>,
}

/// A probe's verdict and detail, with no certificate seen.
fn seen_of((success, detail): (bool, String)) -> Seen {
    Seen {
        success,
        detail,
        cert_not_after_unix_ms: None,
    }
}

/// Now on the wall clock, in Unix milliseconds (certificate expiry is a calendar matter).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs one probe with its timeout.
pub async fn run_probe(p: &ProbeConfig) -> Outcome {
    let started = Instant::now();
    let seen = match p.probe {
        ProbeType::Http => http_probe(p).await,
        ProbeType::Tcp => {
            seen_of(tcp_probe(p.address.as_deref().unwrap_or_default(), p.timeout).await)
        }
        ProbeType::Command => {
            let argv = p.argv.clone().unwrap_or_default();
            seen_of(
                command_probe(
                    &argv,
                    p.expect_exit.unwrap_or(DEFAULT_EXPECT_EXIT),
                    p.timeout,
                )
                .await,
            )
        }
        ProbeType::Cert => {
            let path = p.path.clone().unwrap_or_default();
            match tokio::time::timeout(p.timeout, cert::cert_file_probe(&path, now_unix_ms())).await
            {
                Err(_) => Seen::failed(format!("reading {}: timed out", path.display())),
                Ok((success, detail, not_after)) => Seen {
                    success,
                    detail,
                    cert_not_after_unix_ms: not_after,
                },
            }
        }
        ProbeType::Websocket => ws::ws_probe(p).await,
    };
    Outcome {
        success: seen.success,
        detail: seen.detail,
        latency: started.elapsed(),
        cert_not_after_unix_ms: seen.cert_not_after_unix_ms,
    }
}

/// One HTTP/1.1 GET over a fresh connection; returns the status and (when asked) up to
/// `BODY_LIMIT` bytes of body. Also used by tests of the agent's own HTTP server.
pub async fn http_get(url: &str, want_body: bool) -> Result<(u16, Vec<u8>), String> {
    request(url, hyper::Method::GET, "", want_body).await
}

/// Like `http_get` with another method and a (possibly empty) text body.
pub async fn request(
    url: &str,
    method: hyper::Method,
    body: &str,
    want_body: bool,
) -> Result<(u16, Vec<u8>), String> {
    send(url, method, body, None, want_body).await
}

/// A POST of a JSON `body` (app control): the status and up to `BODY_LIMIT` bytes of the
/// answer.
pub async fn post_json(url: &str, body: &str) -> Result<(u16, Vec<u8>), String> {
    send(
        url,
        hyper::Method::POST,
        body,
        Some("application/json"),
        true,
    )
    .await
}

/// One plain HTTP/1.1 request to a local `http://` endpoint.
async fn send(
    url: &str,
    method: hyper::Method,
    body: &str,
    content_type: Option<&str>,
    want_body: bool,
) -> Result<(u16, Vec<u8>), String> {
    let target = parse_http_url(url)?;
    let req = Request {
        method,
        body,
        content_type,
        want_body,
    };
    let (res, _) = exchange(&target, None, req).await;
    res.map(|r| (r.status, r.body))
}

/// Connects to `address` (`host:port`, resolved each time).
pub async fn tcp_probe(address: &str, timeout: Duration) -> (bool, String) {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Err(_) => (
            false,
            format!("connect {address}: timed out after {timeout:?}"),
        ),
        Ok(Err(e)) => (false, format!("connect {address}: {e}")),
        Ok(Ok(_)) => (true, format!("connected to {address}")),
    }
}

/// Runs `argv` (no shell) in its own process group with stdin/stdout/stderr closed; success
/// when it exits with `expect`. On timeout the whole group is killed and reaped.
pub async fn command_probe(argv: &[String], expect: i32, timeout: Duration) -> (bool, String) {
    let Some((program, args)) = argv.split_first() else {
        return (false, "empty argv".to_owned());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot run {program:?}: {e}")),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) if code == expect => (true, format!("exit {code}")),
            (Some(code), _) => (false, format!("exit {code}, expected {expect}")),
            (None, Some(sig)) => (false, format!("killed by signal {sig}")),
            (None, None) => (false, "ended without a status".to_owned()),
        },
        Ok(Err(e)) => (false, format!("cannot wait for {program:?}: {e}")),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The child leads its own group (process_group(0)): kill it and its children.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            (false, format!("timed out after {timeout:?}; killed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpTarget, Scheme};
    use axum::routing::get;
    use std::net::SocketAddr;

    async fn server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let app = axum::Router::new()
            .route("/ok", get(|| async { "all good" }))
            .route(
                "/fail",
                get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let h = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, h)
    }

    const T: Duration = Duration::from_millis(500);

    /// The http probe of `url` with `expect_status`, `body_contains` and `timeout`.
    async fn http_probe(
        url: &str,
        expect: u16,
        contains: Option<&str>,
        timeout: Duration,
    ) -> (bool, String) {
        let mut p = ProbeConfig::new("t", ProbeType::Http);
        p.url = Some(url.to_owned());
        p.expect_status = Some(expect);
        p.body_contains = contains.map(str::to_owned);
        p.timeout = timeout;
        let seen = super::super::http::http_probe(&p).await;
        (seen.success, seen.detail)
    }

    #[tokio::test]
    async fn http_probe_ok_500_body_mismatch_and_timeout() {
        let (addr, h) = server().await;
        let url = |p: &str| format!("http://{addr}{p}");
        let (ok, detail) = http_probe(&url("/ok"), 200, Some("good"), T).await;
        assert!(ok, "{detail}");
        assert_eq!(detail, "status 200");
        let (ok, detail) = http_probe(&url("/fail"), 200, None, T).await;
        assert!(!ok);
        assert_eq!(detail, "status 500, expected 200");
        let (ok, _) = http_probe(&url("/fail"), 500, None, T).await;
        assert!(ok, "expecting 500 accepts it");
        let (ok, detail) = http_probe(&url("/ok"), 200, Some("healthy"), T).await;
        assert!(!ok);
        assert!(detail.contains("does not contain"), "{detail}");
        let started = Instant::now();
        let (ok, detail) = http_probe(&url("/slow"), 200, None, Duration::from_millis(200)).await;
        assert!(!ok);
        assert!(detail.starts_with("timed out"), "{detail}");
        assert!(started.elapsed() < Duration::from_secs(2));
        h.abort();
    }

    #[tokio::test]
    async fn http_probe_on_a_closed_port_fails_with_the_error() {
        let port = closed_port();
        let (ok, detail) = http_probe(&format!("http://127.0.0.1:{port}/"), 200, None, T).await;
        assert!(!ok);
        assert!(detail.starts_with("connect"), "{detail}");
    }

    /// A port nobody listens on: bind, read the port, close.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn tcp_probe_open_and_closed() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let (ok, detail) = tcp_probe(&addr, T).await;
        assert!(ok, "{detail}");
        drop(l);
        let (ok, detail) = tcp_probe(&format!("127.0.0.1:{}", closed_port()), T).await;
        assert!(!ok);
        assert!(detail.contains("refused"), "{detail}");
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn command_probe_exit_codes() {
        let (ok, detail) = command_probe(&sh("exit 0"), 0, T).await;
        assert!(ok, "{detail}");
        let (ok, detail) = command_probe(&sh("exit 3"), 0, T).await;
        assert!(!ok);
        assert_eq!(detail, "exit 3, expected 0");
        let (ok, _) = command_probe(&sh("exit 3"), 3, T).await;
        assert!(ok);
        let (ok, detail) = command_probe(&["/nonexistent/probe".to_owned()], 0, T).await;
        assert!(!ok);
        assert!(detail.starts_with("cannot run"), "{detail}");
    }

    #[tokio::test]
    async fn command_probe_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 10 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let (ok, detail) = command_probe(&sh(&script), 0, Duration::from_millis(300)).await;
        assert!(!ok);
        assert!(detail.starts_with("timed out"), "{detail}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid written")
            .trim()
            .parse()
            .expect("pid");
        // The grandchild `sleep 10` is gone too (a zombie at worst until init reaps it).
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "sleep {pid} still running");
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/healthz?x=1").expect("ok"),
            HttpTarget {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                authority: "127.0.0.1:8080".into(),
                path_and_query: "/healthz?x=1".into()
            }
        );
        assert_eq!(
            parse_http_url("http://localhost").expect("ok").authority,
            "localhost:80"
        );
        assert!(
            parse_http_url("https://x/").is_err(),
            "control endpoints are plain"
        );
        let t = crate::config::parse_probe_url("https://[::1]/h", ProbeType::Http).expect("ok");
        assert_eq!(
            (t.scheme, t.host.as_str(), t.authority.as_str()),
            (Scheme::Https, "::1", "[::1]:443")
        );
        let t = crate::config::parse_probe_url("wss://h:9/ws", ProbeType::Websocket).expect("ok");
        assert_eq!((t.scheme, t.authority.as_str()), (Scheme::Wss, "h:9"));
        assert!(crate::config::parse_probe_url("ws://h/", ProbeType::Http).is_err());
        assert!(crate::config::parse_probe_url("https://h/", ProbeType::Websocket).is_err());
        assert!(parse_http_url("/just/a/path").is_err());
        assert!(parse_http_url("not a url").is_err());
    }
}
