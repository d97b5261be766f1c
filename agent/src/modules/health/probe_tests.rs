//! The probes against real local servers on loopback: HTTPS with a dev CA (rcgen) through
//! `ca_file`, the system roots and `insecure`; a JSON endpoint flipping a field; a slow
//! endpoint crossing the latency bound; a certificate with 5 days left; a WebSocket server
//! that stops answering (ws and wss); and what a probe must not do (follow a redirect, read
//! past its body limit).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use futures::{SinkExt, StreamExt};
use opsfleet_proto::pb;
use tokio_tungstenite::tungstenite::Message;

use super::probe::run_probe;
use super::*;
use crate::config::{Comparison, JsonAssertion, LatencyWindow, ProbeConfig, ProbeType};

/// A dev CA and a server certificate for `localhost` / `127.0.0.1` it signed, with
/// `days_left` days (and two hours) to live, written as PEM files into `dir`.
pub struct DevPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn dev_pki(dir: &Path, days_left: i64) -> DevPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "opsfleet probe test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "probe-target");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days_left) + time::Duration::hours(2);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let pki = DevPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).expect("write ca");
    std::fs::write(&pki.cert, cert.pem()).expect("write cert");
    std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
    pki
}

/// Serves `app` on loopback, over TLS with `pki` when given.
async fn serve(app: axum::Router, pki: Option<&DevPki>) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let tls = pki.map(|p| opsfleet_httpserve::acceptor(&p.cert, &p.key).expect("acceptor"));
    tokio::spawn(opsfleet_httpserve::serve(
        tcp,
        tls,
        app,
        std::future::pending(),
    ));
    addr
}

fn http(url: &str) -> ProbeConfig {
    ProbeConfig {
        url: Some(url.to_owned()),
        timeout: Duration::from_secs(3),
        ..ProbeConfig::new("t", ProbeType::Http)
    }
}

#[tokio::test]
async fn https_with_a_dev_ca_passes_with_ca_file_fails_without_and_passes_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dev_pki(dir.path(), 5);
    let app = axum::Router::new().route("/health", get(|| async { "ok" }));
    let addr = serve(app, Some(&pki)).await;
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/health", addr.port());
        let mut p = http(&url);
        p.ca_file = Some(pki.ca.clone());
        p.body_contains = Some("ok".to_owned());
        let o = run_probe(&p).await;
        assert!(o.success, "{host} with ca_file: {}", o.detail);
        assert_eq!(o.detail, "status 200");
        let left = cert::days_left(
            o.cert_not_after_unix_ms.expect("cert seen"),
            probe::now_unix_ms(),
        );
        assert_eq!(left, 5, "the server certificate's days");

        p.ca_file = None;
        let o = run_probe(&p).await;
        assert!(!o.success, "the system roots do not know a dev CA");
        assert!(
            o.detail.contains("UnknownIssuer") || o.detail.contains("no system root"),
            "{}",
            o.detail
        );
        assert!(o.cert_not_after_unix_ms.is_some(), "seen even when refused");

        p.insecure = true;
        let o = run_probe(&p).await;
        assert!(o.success, "insecure: {}", o.detail);
        assert_eq!(o.detail, format!("status 200 ({})", tls::INSECURE_NOTE));
    }
    // Another CA's file does not vouch for this server.
    let other = tempfile::tempdir().expect("tempdir");
    let other = dev_pki(other.path(), 30);
    let mut p = http(&format!("https://localhost:{}/health", addr.port()));
    p.ca_file = Some(other.ca.clone());
    let o = run_probe(&p).await;
    // (Same CA name, other key: webpki finds the name and refuses the signature.)
    assert!(
        !o.success && o.detail.contains("invalid peer certificate"),
        "{}",
        o.detail
    );
    // A missing CA file is said.
    p.ca_file = Some(dir.path().join("missing.pem"));
    let o = run_probe(&p).await;
    assert!(
        !o.success && o.detail.contains("cannot open"),
        "{}",
        o.detail
    );
    // Plain HTTP to a TLS port fails, it does not hang.
    let o = run_probe(&http(&format!("http://127.0.0.1:{}/health", addr.port()))).await;
    assert!(!o.success, "{}", o.detail);
}

fn module(probes: Vec<ProbeConfig>) -> HealthModule {
    HealthModule::new(&HealthConfig {
        name: None,
        interval: Duration::from_secs(5),
        probes,
    })
}

fn health_events(bodies: &[pb::event::Body]) -> Vec<pb::HealthCheck> {
    bodies
        .iter()
        .filter_map(|b| match b {
            pb::event::Body::Health(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

const READY: i32 = pb::HealthStatus::Ready as i32;
const FAILED: i32 = pb::HealthStatus::Failed as i32;

#[tokio::test]
async fn a_json_field_flipping_fails_the_check_naming_pointer_expected_and_seen() {
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let app = axum::Router::new().route(
        "/health",
        get(move || {
            let ready = flag.load(Ordering::SeqCst);
            async move {
                axum::Json(serde_json::json!({
                    "telegram": { "status": if ready { "ready" } else { "reconnecting" } },
                    "queue": { "depth": 7 }
                }))
            }
        }),
    );
    let addr = serve(app, None).await;
    let mut p = http(&format!("http://{addr}/health"));
    p.json = vec![
        JsonAssertion::new("/telegram/status", Comparison::Equals("ready".into())),
        JsonAssertion::new("/queue/depth", Comparison::Lt(100.0)),
    ];
    p.failed_after = 1;
    let mut m = module(vec![p]);
    let ctx = ModuleCtx::empty();
    let ev = health_events(&m.run_once(&ctx).await.expect("run"));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].status, READY, "{}", ev[0].detail);
    up.store(false, Ordering::SeqCst);
    let ev = health_events(&m.run_once(&ctx).await.expect("run"));
    assert_eq!(ev[0].status, FAILED);
    assert_eq!(
        ev[0].detail,
        "status 200, json /telegram/status: expected equals \"ready\", seen \"reconnecting\""
    );
    up.store(true, Ordering::SeqCst);
    let ev = health_events(&m.run_once(&ctx).await.expect("run"));
    assert_eq!((ev[0].previous, ev[0].status), (FAILED, READY));
}

#[tokio::test]
async fn a_slow_endpoint_is_its_own_condition_while_the_check_stays_ready() {
    let delay = Arc::new(AtomicU64::new(0));
    let d = delay.clone();
    let app = axum::Router::new().route(
        "/health",
        get(move || {
            let ms = d.load(Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "ok"
            }
        }),
    );
    let addr = serve(app, None).await;
    let mut p = http(&format!("http://{addr}/health"));
    p.latency_p95 = Some(Duration::from_millis(500));
    p.latency_window = Some(LatencyWindow::Probes(3));
    let mut m = module(vec![p]);
    let ctx = ModuleCtx::empty();
    let ev = health_events(&m.run_once(&ctx).await.expect("run"));
    assert!(ev[0].status == READY && !ev[0].slow);
    assert_eq!(ev[0].latency_bound_ms, 500);
    for _ in 0..3 {
        assert!(
            m.run_once(&ctx).await.expect("run").is_empty(),
            "fast and steady"
        );
    }
    delay.store(1200, Ordering::SeqCst);
    let ev = health_events(&m.run_once(&ctx).await.expect("run"));
    assert_eq!(ev.len(), 1, "one slow probe makes the p95 of 3");
    assert!(ev[0].slow, "{:?}", ev[0]);
    assert_eq!((ev[0].previous, ev[0].status), (READY, READY));
    assert!(ev[0].latency_p95_ms >= 1200, "{:?}", ev[0]);
    assert!(m.health()[0].slow, "heartbeats say slow");
    delay.store(0, Ordering::SeqCst);
    let mut cleared = false;
    for _ in 0..3 {
        let ev = health_events(&m.run_once(&ctx).await.expect("run"));
        if let Some(e) = ev.first() {
            assert!(!e.slow);
            cleared = true;
        }
    }
    assert!(cleared, "three fast probes push the slow one out");
    assert!(!m.health()[0].slow);
}

#[tokio::test]
async fn certificates_with_five_days_left_warn_or_crit_as_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dev_pki(dir.path(), 5);
    let app = axum::Router::new().route("/", get(|| async { "ok" }));
    let addr = serve(app, Some(&pki)).await;
    let mut file_warn = ProbeConfig::new("file_warn", ProbeType::Cert);
    file_warn.path = Some(pki.cert.clone());
    file_warn.warn_days = Some(10);
    file_warn.crit_days = Some(3);
    let mut file_crit = ProbeConfig::new("file_crit", ProbeType::Cert);
    file_crit.path = Some(pki.cert.clone());
    let mut url_warn = http(&format!("https://localhost:{}/", addr.port()));
    url_warn.name = "url_warn".to_owned();
    url_warn.ca_file = Some(pki.ca.clone());
    url_warn.warn_days = Some(14);
    url_warn.crit_days = Some(3);
    let mut plain = http(&format!("https://localhost:{}/", addr.port()));
    plain.name = "no_days".to_owned();
    plain.ca_file = Some(pki.ca.clone());
    let mut m = module(vec![file_warn, file_crit, url_warn, plain]);
    let ev = health_events(&m.run_once(&ModuleCtx::empty()).await.expect("run"));
    let level = |name: &str| {
        let e = ev.iter().find(|e| e.check == name).expect(name);
        assert_eq!(e.status, READY, "{}", e.detail);
        (
            e.cert_level,
            cert::days_left(e.cert_not_after_unix_ms, probe::now_unix_ms()),
        )
    };
    assert_eq!(level("file_warn"), (pb::CertLevel::Warn as i32, 5));
    assert_eq!(
        level("file_crit"),
        (pb::CertLevel::Crit as i32, 5),
        "default crit_days 7"
    );
    assert_eq!(level("url_warn"), (pb::CertLevel::Warn as i32, 5));
    assert_eq!(
        level("no_days").0,
        pb::CertLevel::Unspecified as i32,
        "not asked"
    );
    let file_detail = &ev
        .iter()
        .find(|e| e.check == "file_warn")
        .expect("e")
        .detail;
    assert!(
        file_detail.contains("CN=probe-target") && file_detail.contains("5 day(s) left"),
        "{file_detail}"
    );
    // Steady levels make no new event; the heartbeat line carries them.
    assert!(m
        .run_once(&ModuleCtx::empty())
        .await
        .expect("run")
        .is_empty());
    assert_eq!(m.health()[1].cert_level, pb::CertLevel::Crit as i32);
}

/// A WebSocket server (over TLS with `pki`) that answers pings and `ping` texts with `pong`
/// while `answering`; otherwise it completes the handshake and then reads nothing.
async fn ws_server(answering: Arc<AtomicBool>, pki: Option<&DevPki>) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let tls = pki.map(|p| opsfleet_httpserve::acceptor(&p.cert, &p.key).expect("acceptor"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let answering = answering.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            ws_session(s, answering).await;
                        }
                    }
                    None => ws_session(stream, answering).await,
                }
            });
        }
    });
    addr
}

async fn ws_session<S>(stream: S, answering: Arc<AtomicBool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    if !answering.load(Ordering::SeqCst) {
        // Hung: holds the connection, reads (and so answers) nothing.
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            if t.as_str() == "ping" && ws.send(Message::Text("pong".into())).await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_websocket_that_stops_answering_fails_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dev_pki(dir.path(), 60);
    let answering = Arc::new(AtomicBool::new(true));
    let plain = ws_server(answering.clone(), None).await;
    let tls = ws_server(answering.clone(), Some(&pki)).await;
    let ws = |url: String| ProbeConfig {
        url: Some(url),
        timeout: Duration::from_secs(2),
        ..ProbeConfig::new("dash", ProbeType::Websocket)
    };
    let ping = ws(format!("ws://{plain}/ws"));
    let mut text = ws(format!("ws://{plain}/ws"));
    text.send_text = Some("ping".to_owned());
    text.expect_text = Some("pong".to_owned());
    let mut wrong = text.clone();
    wrong.expect_text = Some("hello".to_owned());
    let mut secure = ws(format!("wss://localhost:{}/ws", tls.port()));
    secure.ca_file = Some(pki.ca.clone());
    secure.warn_days = Some(90);
    let mut untrusted = secure.clone();
    untrusted.ca_file = None;

    let o = run_probe(&ping).await;
    assert!(o.success && o.detail == "pong", "{}", o.detail);
    let o = run_probe(&text).await;
    assert!(o.success && o.detail == "answered \"pong\"", "{}", o.detail);
    let o = run_probe(&wrong).await;
    assert!(
        !o.success && o.detail.contains("does not contain \"hello\""),
        "{}",
        o.detail
    );
    let o = run_probe(&secure).await;
    assert!(o.success, "wss: {}", o.detail);
    assert!(o.cert_not_after_unix_ms.is_some());
    let o = run_probe(&untrusted).await;
    assert!(!o.success, "wss without the CA: {}", o.detail);

    answering.store(false, Ordering::SeqCst);
    for p in [&ping, &text, &secure] {
        let started = std::time::Instant::now();
        let o = run_probe(p).await;
        assert!(!o.success, "{}", o.detail);
        assert!(o.detail.starts_with("no answer within 2s"), "{}", o.detail);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // The module turns it into a failed check.
    let mut hung = ping.clone();
    hung.failed_after = 1;
    let mut m = module(vec![hung]);
    let ev = health_events(&m.run_once(&ModuleCtx::empty()).await.expect("run"));
    assert_eq!(ev[0].status, FAILED);
    assert_eq!(ev[0].probe, "websocket");
}

#[tokio::test]
async fn a_probe_follows_no_redirect_and_reads_no_more_than_its_limit() {
    let elsewhere_hits = Arc::new(AtomicUsize::new(0));
    let hits = elsewhere_hits.clone();
    let elsewhere = serve(
        axum::Router::new().route(
            "/",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { axum::Json(serde_json::json!({ "status": "ready" })) }
            }),
        ),
        None,
    )
    .await;
    let target = format!("http://{elsewhere}/");
    let big = format!(
        "{{\"status\":\"ready\",\"pad\":\"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let addr = serve(
        axum::Router::new()
            .route(
                "/moved",
                get(move || {
                    let to = target.clone();
                    async move { axum::response::Redirect::temporary(&to) }
                }),
            )
            .route(
                "/big",
                get(move || {
                    let body = big.clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            ),
        None,
    )
    .await;
    let mut p = http(&format!("http://{addr}/moved"));
    p.json = vec![JsonAssertion::new(
        "/status",
        Comparison::Equals("ready".into()),
    )];
    let o = run_probe(&p).await;
    assert!(!o.success);
    assert_eq!(
        o.detail,
        "status 307, expected 200 (redirects are not followed)"
    );
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "the other host saw nothing"
    );

    p.url = Some(format!("http://{addr}/big"));
    let o = run_probe(&p).await;
    assert!(!o.success);
    assert!(o.detail.contains("body longer than 64 KiB"), "{}", o.detail);
    let mut tail = http(&format!("http://{addr}/big"));
    tail.body_contains = Some("\"}".to_owned());
    let o = run_probe(&tail).await;
    assert!(
        !o.success,
        "the end of a 100 KiB body is past the limit: {}",
        o.detail
    );
}
