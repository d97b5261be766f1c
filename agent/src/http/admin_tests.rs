//! The admin routes on a real 0600 Unix socket and on a real token-guarded TCP listener, driving
//! a real runner: what they do, and what they refuse (kind changes and new command probes
//! whatever the policy says, browser Origins, missing or wrong tokens, foreign Host headers).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{parse_str, HttpConfig};
use crate::outbox::Outbox;
use crate::runner::control::ControlHandle;
use crate::runner::{Runner, StatusBoard};

/// The file config: a heartbeat and a health module, with a policy as open as it gets (the
/// admin routes must refuse kind changes and command probes anyway).
const FILE: &str = r#"
host = "web-01"
[[modules]]
type = "heartbeat"
name = "hb"
interval = "20ms"
[[modules]]
type = "health"
name = "svc"
interval = "1h"
[policy]
allow_kind_change = true
allow_command_probes = true
"#;

struct Node {
    control: ControlHandle,
    board: StatusBoard,
    outbox: Arc<Outbox>,
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

fn node(dir: &Path) -> Node {
    let cfg = parse_str(FILE).expect("config");
    let outbox =
        Arc::new(Outbox::open(&dir.join("agent.sled"), "web-01", 1000).expect("open outbox"));
    let runner = Runner::from_config("web-01", outbox.clone(), Arc::new(Notify::new()), &cfg);
    let (control, board) = (runner.control(), runner.status());
    let cancel = CancellationToken::new();
    let run = tokio::spawn(runner.run(cancel.clone()));
    Node {
        control,
        board,
        outbox,
        cancel,
        run,
    }
}

impl Node {
    async fn stop(self) {
        self.cancel.cancel();
        self.run.await.expect("runner");
    }

    fn state(&self, name: &str) -> opsfleet_proto::pb::ModuleRunState {
        self.board
            .slots()
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.state)
            .expect("module")
    }
}

/// One HTTP/1.1 request over `stream` (closed after the answer): status and body.
async fn raw<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

async fn over_socket(
    path: &Path,
    method: &str,
    url: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect to the admin socket");
    let mut headers = vec![("Host", "localhost")];
    headers.extend_from_slice(extra);
    raw(stream, method, url, &headers, body).await
}

fn rules_of(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    v["rules"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

const COMMAND_PROBE: &str = "type = \"health\"\nname = \"svc\"\ninterval = \"1h\"\n\
    [[probes]]\nname = \"pwn\"\ntype = \"command\"\nargv = [\"/bin/sh\", \"-c\", \"id\"]\n";

#[tokio::test]
async fn admin_socket_is_private_and_refuses_what_the_admin_surface_may_not_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path());
    let path = dir.path().join("run/admin.sock");
    // A stale socket from an earlier life is replaced.
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    let socket = bind_admin_socket(&path).expect("bind");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["admin.sock"], "no staging directory left");
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve_admin_socket(
        socket,
        n.control.clone(),
        cancel.clone(),
    ));

    let (code, body) = over_socket(&path, "POST", "/modules/hb/pause", &[], "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(n.state("hb"), opsfleet_proto::pb::ModuleRunState::Paused);
    assert_eq!(
        over_socket(&path, "POST", "/modules/nope/pause", &[], "")
            .await
            .0,
        404
    );
    assert_eq!(
        over_socket(&path, "POST", "/modules/hb/explode", &[], "")
            .await
            .0,
        404
    );
    assert_eq!(
        over_socket(&path, "GET", "/modules/hb/resume", &[], "")
            .await
            .0,
        405
    );
    let bad = "type = \"heartbeat\"\nname = \"hb\"\ninterval = \"0s\"\n";
    let (code, body) = over_socket(&path, "POST", "/modules/hb/reconfigure", &[], bad).await;
    assert_eq!(code, 422, "{body}");
    let good = "type = \"heartbeat\"\nname = \"hb\"\ninterval = \"25ms\"\n";
    let (code, body) = over_socket(&path, "POST", "/modules/hb/reconfigure", &[], good).await;
    assert_eq!(code, 200, "{body}");

    // A kind change and a new command probe: refused although [policy] allows both.
    let kind = "type = \"disk\"\nname = \"hb\"\npaths = [\"/\"]\n";
    let (code, body) = over_socket(&path, "POST", "/modules/hb/reconfigure", &[], kind).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(rules_of(&body), ["policy.allow_kind_change"], "{body}");
    let (code, body) = over_socket(
        &path,
        "POST",
        "/modules/svc/reconfigure",
        &[],
        COMMAND_PROBE,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(rules_of(&body), ["policy.allow_command_probes"], "{body}");
    // A browser's request is refused before it does anything.
    let (code, body) = over_socket(
        &path,
        "POST",
        "/modules/hb/resume",
        &[("Origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(n.state("hb"), opsfleet_proto::pb::ModuleRunState::Paused);

    cancel.cancel();
    server.await.expect("join").expect("served");
    assert!(!path.exists(), "the socket is removed at stop");
    // Something that is not a socket is never replaced.
    std::fs::write(&path, b"precious").expect("file");
    assert!(matches!(
        bind_admin_socket(&path),
        Err(HttpError::Socket { .. })
    ));
    assert_eq!(std::fs::read(&path).expect("kept"), b"precious");
    n.stop().await;
}

#[tokio::test]
async fn admin_over_tcp_needs_the_token_a_local_host_and_no_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path());
    let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let state = HttpState {
        outbox: n.outbox.clone(),
        max_events: 1000,
        nats_connected: Arc::new(|| true),
        metrics: None,
        admin: Some(AdminTcp {
            control: n.control.clone(),
            guard: TcpGuard::new("s3cret-token".to_owned(), addr),
        }),
    };
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve(listener, state, cancel.clone()));
    let host = addr.to_string();
    let call = |headers: Vec<(&'static str, String)>| {
        let host = host.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut all: Vec<(&str, &str)> = Vec::new();
            if !headers.iter().any(|(k, _)| *k == "Host") {
                all.push(("Host", host.as_str()));
            }
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            raw(stream, "POST", "/modules/hb/pause", &all, "").await
        }
    };
    let bearer = |t: &str| ("Authorization", format!("Bearer {t}"));
    let running = opsfleet_proto::pb::ModuleRunState::Running;

    let (code, body) = call(vec![]).await;
    assert_eq!(code, 401, "no token: {body}");
    let (code, body) = call(vec![bearer("guess")]).await;
    assert_eq!(code, 401, "wrong token: {body}");
    let (code, body) = call(vec![
        bearer("s3cret-token"),
        ("Host", format!("evil.example:{}", addr.port())),
    ])
    .await;
    assert_eq!(code, 403, "foreign Host (DNS rebinding): {body}");
    let (code, body) = call(vec![
        bearer("s3cret-token"),
        ("Origin", "http://evil.example".to_owned()),
    ])
    .await;
    assert_eq!(code, 403, "browser Origin: {body}");
    assert_eq!(n.state("hb"), running, "nothing refused changed anything");

    let (code, body) = call(vec![bearer("s3cret-token")]).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(vec![
        bearer("s3cret-token"),
        ("Host", format!("localhost:{}", addr.port())),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(n.state("hb"), opsfleet_proto::pb::ModuleRunState::Paused);
    // The public routes need nothing.
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    assert_eq!(raw(stream, "GET", "/healthz", &[], "").await.0, 200);

    cancel.cancel();
    server.await.expect("join").expect("served");
    n.stop().await;
}

#[test]
fn host_headers_that_name_this_endpoint() {
    let local: std::net::SocketAddr = "127.0.0.1:9464".parse().expect("addr");
    let any: std::net::SocketAddr = "0.0.0.0:9464".parse().expect("addr");
    let lan: std::net::SocketAddr = "10.0.0.5:9464".parse().expect("addr");
    for ok in [
        "localhost",
        "LOCALHOST:9464",
        "127.0.0.1:9464",
        "127.0.0.2",
        "[::1]:9464",
        "[::1]",
    ] {
        assert!(host_allowed(ok, local), "{ok}");
    }
    for bad in [
        "",
        "evil.example",
        "evil.example:9464",
        "127.0.0.1.nip.io",
        "10.0.0.5",
        "[::1]x",
        "localhost:http",
    ] {
        assert!(!host_allowed(bad, local), "{bad}");
    }
    assert!(host_allowed("10.0.0.5:9464", lan));
    assert!(!host_allowed("10.0.0.6:9464", lan));
    assert!(
        host_allowed("192.168.1.9", any),
        "any IP literal on 0.0.0.0"
    );
    assert!(!host_allowed("web-01.internal", any));
}

#[test]
fn the_token_file_must_be_private_and_not_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "  t0ken\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = load_token(&path).expect_err("world-readable");
    assert!(err.to_string().contains("mode 0644"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(load_token(&path).expect("private"), "t0ken");
    std::fs::write(&path, "\n").expect("write");
    assert!(load_token(&path).is_err(), "empty");
    assert!(load_token(&dir.path().join("missing")).is_err());
}

#[test]
fn admin_config_problems() {
    let problems = |toml: &str| -> Vec<String> {
        let cfg: HttpConfig = toml::from_str(toml).expect("parses");
        cfg.problems().into_iter().map(|(k, _)| k).collect()
    };
    assert!(problems("listen = \"127.0.0.1:9464\"").is_empty());
    assert_eq!(problems("admin = true"), ["admin"]);
    assert_eq!(problems("admin_tcp = true"), ["admin_token_file"]);
    assert_eq!(
        problems("admin_tcp = true\nadmin_token_file = \"t\"\nadmin_socket = \"s\""),
        ["admin_socket", "admin_token_file"]
    );
    assert_eq!(
        problems("listen = \"0.0.0.0:9464\"\nadmin_tcp = true\nadmin_token_file = \"/t\""),
        ["admin_tcp"]
    );
    let cfg = HttpConfig::default();
    assert_eq!(
        cfg.admin_socket_path(Path::new("/var/lib/ops-agent")),
        Path::new("/var/lib/ops-agent/admin.sock")
    );
}
