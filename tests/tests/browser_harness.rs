//! The headless-browser harness (`opsfleet_tests::browser`) against real pages: a small axum
//! page of the test's own under a strict CSP (form, button, external JS), phone width with and
//! without sideways overflow, the real coordinator's `/healthz` over HTTPS with a self-signed
//! certificate, and no browser process left behind after a close, a drop or a panic.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use opsfleet_tests::browser::{live_in_group, live_naming, png, Browser, BrowserSpec};
use opsfleet_tests::{wait_until_default, Cluster, CoordinatorSpec};

const WAIT: Duration = Duration::from_secs(30);
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'";

const INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>harness page</title></head>
<body>
<form id="f"><label>Name <input id="name" name="name"></label>
<button id="greet" type="button">Greet</button></form>
<p id="out">waiting</p>
<script src="/app.js"></script>
<script>document.title = "inline script ran";</script>
</body></html>"#;

const APP_JS: &str = r#"document.getElementById("greet").addEventListener("click", function () {
  document.getElementById("out").textContent = "hello " + document.getElementById("name").value;
});"#;

const WIDE: &str = r#"<!doctype html><html><head><meta name="viewport" content="width=device-width">
<link rel="stylesheet" href="/wide.css"></head>
<body><table><tr><td>host</td><td>web-01.example.internal</td><td>disk /var 93%</td>
<td>modules disk,log,systemd</td><td>last event 2s ago</td></tr></table></body></html>"#;
const WIDE_CSS: &str = "table { width: 1200px; }";

const NARROW: &str = r#"<!doctype html><html><head><meta name="viewport" content="width=device-width">
</head><body><p>web-01 is up; /var is 93% full; the last event came 2 s ago, and this sentence
wraps to the width of a phone instead of overflowing it.</p></body></html>"#;

/// Serves the test pages on a loopback port until the test ends.
async fn serve_pages() -> Result<SocketAddr> {
    let csp = |ct: &'static str, body: &'static str| {
        move || async move {
            (
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CONTENT_SECURITY_POLICY, CSP),
                ],
                body,
            )
                .into_response()
        }
    };
    let app = Router::new()
        .route("/", get(csp("text/html; charset=utf-8", INDEX)))
        .route("/app.js", get(csp("text/javascript", APP_JS)))
        .route("/wide", get(csp("text/html; charset=utf-8", WIDE)))
        .route("/wide.css", get(csp("text/css", WIDE_CSS)))
        .route("/narrow", get(csp("text/html; charset=utf-8", NARROW)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// The screenshot at `path` is a PNG of `width`×`height` pixels.
fn check_png(path: &Path, width: u32, height: u32) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = png::size(&bytes).context("the screenshot file is not a PNG")?;
    ensure!(
        size == (width, height),
        "screenshot is {size:?}, the window {width}x{height}"
    );
    Ok(())
}

/// Comm names of the live processes of a browser: its process group (chromedriver, chromium
/// and its helpers) and any process naming its temp dir.
fn browser_commands(pgid: i32, dir: &str) -> Vec<String> {
    let mut pids = live_in_group(pgid);
    pids.extend(live_naming(dir));
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .map(|c| c.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_leaves_no_process_behind() -> Result<()> {
    let mut times = Vec::new();
    for round in 0..3 {
        let b = Browser::start().await?;
        times.push(b.started_in());
        let (pgid, dir) = (b.pgid(), b.dir().display().to_string());
        let running = browser_commands(pgid, &dir);
        ensure!(
            running.iter().any(|c| c == "chromedriver")
                && running.iter().any(|c| c.starts_with("chromium")),
            "round {round}: expected chromedriver and chromium: {running:?}"
        );
        // Chromium's crash handler runs in a session of its own, outside the group: it is
        // found (and killed) by the temp dir it names, since HOME is in there.
        let outside: Vec<String> = live_naming(&dir)
            .into_iter()
            .filter(|pid| !live_in_group(pgid).contains(pid))
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .map(|c| c.trim().to_owned())
            .collect();
        ensure!(
            outside.iter().all(|c| c == "chrome_crashpad"),
            "round {round}: unexpected processes outside the group: {outside:?}"
        );
        if round == 0 {
            b.close().await?;
        } else {
            // Dropped without close: the drop kills them all the same.
            drop(b);
        }
        let left = browser_commands(pgid, &dir);
        ensure!(left.is_empty(), "round {round}: left behind: {left:?}");
    }
    times.sort();
    eprintln!(
        "chromedriver + chromium start times: {times:?}, median {:?}",
        times[1]
    );

    // A test that panics with a browser open leaves nothing either.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let b = Browser::start().await.expect("browser starts");
        let _ = tx.send((b.pgid(), b.dir().display().to_string()));
        panic!("a test failing with its browser open");
    });
    ensure!(task.await.is_err(), "the task should have panicked");
    let (pgid, dir) = rx.await.context("the panicking task sent no pgid")?;
    let left = browser_commands(pgid, &dir);
    ensure!(left.is_empty(), "after a panic: left behind {left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_a_form_under_a_strict_csp() -> Result<()> {
    let addr = serve_pages().await?;
    let shots = tempfile::tempdir()?;
    let b = Browser::start_with(BrowserSpec::new().window(1024, 700)).await?;
    b.goto(&format!("http://{addr}/")).await?;
    b.wait_for("#greet", WAIT).await?;
    // The CSP holds in this browser: the inline script did not run, the one from /app.js did
    // (the click below works only through it).
    let title = b.eval_js("return document.title;").await?;
    ensure!(
        title == "harness page",
        "inline script ran despite the CSP: {title}"
    );

    b.fill("#name", "first").await?;
    b.fill("#name", "operator").await?;
    b.click("#greet").await?;
    let text = b.wait_text("#out", "hello operator", WAIT).await?;
    ensure!(
        text == "hello operator",
        "filled text not replaced: {text:?}"
    );
    ensure!(b.text("#out").await? == "hello operator");

    let v = b
        .eval_js("return {answer: 6 * 7, inputs: document.querySelectorAll('input').length};")
        .await?;
    ensure!(
        v["answer"] == 42 && v["inputs"] == 1,
        "eval_js returned {v}"
    );
    ensure!(!b.horizontal_overflow().await?, "the form page overflows");
    ensure!(b.count("form input, form button").await? == 2);
    ensure!(b.attr("#greet", "type").await?.as_deref() == Some("button"));
    ensure!(b.attr("#greet", "data-none").await?.is_none());

    let shot = shots.path().join("form.png");
    let size = b.screenshot(&shot).await?;
    ensure!(size == (1024, 700), "screenshot size {size:?}");
    check_png(&shot, 1024, 700)?;

    // Waits are bounded and say what the page showed.
    let missing = b.wait_for("#no-such-thing", Duration::from_secs(1)).await;
    let err = format!("{:#}", missing.err().context("found a missing element")?);
    ensure!(
        err.contains("#no-such-thing") && err.contains("hello operator"),
        "unhelpful error: {err}"
    );
    let never = b.wait_text("#out", "goodbye", Duration::from_secs(1)).await;
    ensure!(
        never.is_err(),
        "wait_text matched text the page never showed"
    );
    b.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sees_sideways_overflow_at_phone_width() -> Result<()> {
    let addr = serve_pages().await?;
    let shots = tempfile::tempdir()?;
    let b = Browser::start().await?;
    b.set_window_size(390, 844).await?;
    let inner = b
        .eval_js("return [window.innerWidth, window.innerHeight];")
        .await?;
    ensure!(inner == serde_json::json!([390, 844]), "viewport {inner}");

    b.goto(&format!("http://{addr}/wide")).await?;
    b.wait_for("table", WAIT).await?;
    ensure!(
        b.horizontal_overflow().await?,
        "a 1200 px table fits 390 px?"
    );
    b.goto(&format!("http://{addr}/narrow")).await?;
    b.wait_text("p", "wraps", WAIT).await?;
    ensure!(!b.horizontal_overflow().await?, "wrapping text overflows");

    let shot = shots.path().join("phone.png");
    b.screenshot(&shot).await?;
    check_png(&shot, 390, 844)?;
    b.close().await
}

/// A self-signed certificate for localhost and 127.0.0.1 (no CA the browser knows).
fn self_signed(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join("self.pem"), dir.join("self-key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("cannot run openssl")?;
    ensure!(
        out.status.success(),
        "openssl req -x509 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((cert, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_coordinators_healthz_over_self_signed_tls() {
    Cluster::run("browser-tls", async |c: &mut Cluster| {
        let (cert, key) = self_signed(c.dir())?;
        let http = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        );
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&http))?;
        let addr = {
            let blue = c.coordinator("blue")?;
            wait_until_default("the coordinator's HTTPS endpoint", async || {
                blue.proc_mut().check_running()?;
                Ok(blue.http_addr())
            })
            .await?
        };
        let url = format!("https://localhost:{}/healthz", addr.port());

        let b = Browser::start_with(BrowserSpec::new().accept_insecure_certs()).await?;
        b.goto(&url).await?;
        let body = b.wait_text("body", "\"name\":\"blue\"", WAIT).await?;
        let probe: serde_json::Value = serde_json::from_str(body.trim())
            .with_context(|| format!("/healthz in the browser is not JSON: {body}"))?;
        ensure!(probe["color"] == "blue", "probe {probe}");
        ensure!(
            b.current_url().await?.starts_with("https://"),
            "not over HTTPS"
        );
        b.close().await?;

        // Without accept_insecure_certs the same page is refused: the option is what lets the
        // browser in, not a page that would load anyway.
        let strict = Browser::start().await?;
        let refused = match strict.goto(&url).await {
            Err(e) => format!("{e:#}"),
            Ok(()) => strict.describe_page().await,
        };
        ensure!(
            !refused.contains("\"name\":\"blue\""),
            "a browser verifying certificates read the self-signed endpoint: {refused}"
        );
        ensure!(
            refused.contains("ERR_CERT")
                || refused.contains("insecure")
                || refused.contains("privacy"),
            "unexpected refusal: {refused}"
        );
        strict.close().await
    })
    .await;
}
