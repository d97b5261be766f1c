//! A real headless browser for the tests: Debian's Chromium driven over WebDriver
//! (`fantoccini`) through a chromedriver of the test's own, with bounded helpers (`goto`,
//! `wait_for`, `wait_text`, `fill`, `click`, `screenshot`, `eval_js`, ...) and nothing left
//! running after the test, also on panic (see [`driver`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use opsfleet_tests::browser::{Browser, BrowserSpec};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let b = Browser::start_with(BrowserSpec::new().window(390, 844).accept_insecure_certs()).await?;
//! b.goto("https://127.0.0.1:8443/").await?;
//! b.fill("#token", "s3cret").await?;
//! b.click("button[type=submit]").await?;
//! b.wait_text("h1", "Fleet", Duration::from_secs(30)).await?;
//! assert!(!b.horizontal_overflow().await?);
//! b.close().await?;
//! # Ok(())
//! # }
//! ```

pub mod driver;
pub mod png;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub use driver::{check_installed, live_in_group, live_naming, Driver, CHROMEDRIVER, CHROMIUM};

/// Bound of one WebDriver command (a page load included): generous for a loaded 2-core machine.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a page may take to load before `goto` fails.
pub const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a script run by [`Browser::eval_js`] may take.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening the session (starting Chromium) may take.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Interval of the polling waits.
pub const POLL: Duration = Duration::from_millis(100);

/// How the browser starts.
#[derive(Debug, Clone)]
pub struct BrowserSpec {
    pub width: u32,
    pub height: u32,
    /// Accept any TLS certificate (a coordinator's `[http]` with a self-signed or dev-CA one).
    pub accept_insecure_certs: bool,
}

impl Default for BrowserSpec {
    fn default() -> Self {
        BrowserSpec {
            width: 1280,
            height: 800,
            accept_insecure_certs: false,
        }
    }
}

impl BrowserSpec {
    /// 1280×800, certificates verified.
    pub fn new() -> Self {
        BrowserSpec::default()
    }

    /// The viewport size in CSS pixels.
    pub fn window(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    pub fn accept_insecure_certs(mut self) -> Self {
        self.accept_insecure_certs = true;
        self
    }

    /// Chromium's command line: headless, no sandbox (the tests run as root), and no traffic
    /// beyond loopback (every other host goes to a dead proxy and resolves to nothing).
    pub fn chromium_args(&self, profile: &Path) -> Vec<String> {
        vec![
            "--headless=new".into(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={},{}", self.width, self.height),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-extensions".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-default-apps".into(),
            "--disable-domain-reliability".into(),
            "--disable-client-side-phishing-detection".into(),
            "--metrics-recording-only".into(),
            "--no-pings".into(),
            "--hide-scrollbars".into(),
            "--proxy-server=http://127.0.0.1:9".into(),
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1".into(),
        ]
    }

    fn capabilities(&self, profile: &Path) -> serde_json::Map<String, Value> {
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": self.accept_insecure_certs,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": self.chromium_args(profile),
            },
        });
        match caps {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// One headless Chromium session with its own chromedriver and profile dir. Dropping it kills
/// chromedriver and every browser process (one process group); [`Browser::close`] also ends
/// the WebDriver session first and checks nothing is left.
#[derive(Debug)]
pub struct Browser {
    client: Option<Client>,
    driver: Driver,
    started_in: Duration,
    // Dropped last: the profile dir outlives the processes using it.
    dir: tempfile::TempDir,
}

impl Browser {
    /// [`BrowserSpec::default`]: 1280×800, certificates verified.
    pub async fn start() -> Result<Browser> {
        Browser::start_with(BrowserSpec::default()).await
    }

    pub async fn start_with(spec: BrowserSpec) -> Result<Browser> {
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("opsfleet-browser-")
            .tempdir()
            .context("cannot create the browser's temp dir")?;
        let profile = dir.path().join("profile");
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("cannot create {}", profile.display()))?;
        let driver = Driver::start(dir.path()).await?;
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(spec.capabilities(&profile));
        let url = driver.url();
        let client = match tokio::time::timeout(SESSION_TIMEOUT, builder.connect(&url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => bail!(
                "chromedriver could not open a Chromium session: {e}; chromedriver log tail:\n{}",
                driver.log_tail(30)
            ),
            Err(_) => bail!(
                "Chromium did not start within {SESSION_TIMEOUT:?}; chromedriver log tail:\n{}",
                driver.log_tail(30)
            ),
        };
        let mut browser = Browser {
            client: Some(client),
            driver,
            started_in: Duration::ZERO,
            dir,
        };
        browser
            .cmd(
                "set the timeouts",
                browser.client()?.update_timeouts(TimeoutConfiguration::new(
                    Some(SCRIPT_TIMEOUT),
                    Some(PAGE_LOAD_TIMEOUT),
                    Some(Duration::ZERO),
                )),
            )
            .await?;
        browser.set_window_size(spec.width, spec.height).await?;
        browser.started_in = t0.elapsed();
        Ok(browser)
    }

    /// From `start` to a usable session: chromedriver up and Chromium started.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The process group of chromedriver and its Chromium processes.
    pub fn pgid(&self) -> i32 {
        self.driver.pgid()
    }

    /// Live processes of this browser (chromedriver, Chromium and its helpers).
    pub fn processes(&self) -> Vec<i32> {
        self.driver.live()
    }

    /// The temp dir holding the profile and chromedriver's log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The underlying WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> Result<&Client> {
        self.client
            .as_ref()
            .context("the browser session is closed")
    }

    /// Runs one WebDriver command within [`COMMAND_TIMEOUT`].
    async fn cmd<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, CmdError>>,
    ) -> Result<T> {
        match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => bail!("browser: {what}: {}", describe_error(&e)),
            Err(_) => bail!("browser: {what}: no answer within {COMMAND_TIMEOUT:?}"),
        }
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.cmd(&format!("open {url}"), self.client()?.goto(url))
            .await
    }

    pub async fn current_url(&self) -> Result<String> {
        Ok(self
            .cmd("read the URL", self.client()?.current_url())
            .await?
            .to_string())
    }

    /// The first element matching `css`, now.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let found = self
            .cmd(
                &format!("find `{css}`"),
                self.client()?.find(Locator::Css(css)),
            )
            .await;
        match found {
            Ok(el) => Ok(el),
            Err(e) => Err(e.context(self.describe_page().await)),
        }
    }

    /// Every element matching `css`, now (possibly none).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        self.cmd(
            &format!("find all `{css}`"),
            self.client()?.find_all(Locator::Css(css)),
        )
        .await
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> Result<usize> {
        Ok(self.find_all(css).await?.len())
    }

    /// The attribute `name` of the first element matching `css` (`None` when it has none).
    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>> {
        let el = self.find(css).await?;
        self.cmd(&format!("read `{name}` of `{css}`"), el.attr(name))
            .await
    }

    /// Polls until an element matches `css` (at most `timeout`).
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let start = Instant::now();
        loop {
            if let Some(el) = self.find_all(css).await?.into_iter().next() {
                return Ok(el);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "no element matches `{css}` after {timeout:?}; {}",
                    self.describe_page().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until the text of the first element matching `css` contains `contains` (at most
    /// `timeout`); returns that text.
    pub async fn wait_text(&self, css: &str, contains: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let mut last = None;
        loop {
            if let Some(el) = self.find_all(css).await?.into_iter().next() {
                // The element may be replaced between find and read: not yet, not an error.
                if let Ok(Ok(text)) = tokio::time::timeout(COMMAND_TIMEOUT, el.text()).await {
                    if text.contains(contains) {
                        return Ok(text);
                    }
                    last = Some(text);
                }
            }
            if start.elapsed() >= timeout {
                bail!(
                    "the text of `{css}` did not contain {contains:?} after {timeout:?} (last: \
                     {last:?}); {}",
                    self.describe_page().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Clears the input matching `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.cmd(&format!("clear `{css}`"), el.clear()).await?;
        self.cmd(&format!("type into `{css}`"), el.send_keys(text))
            .await
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.cmd(&format!("click `{css}`"), el.click()).await
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String> {
        let el = self.find(css).await?;
        self.cmd(&format!("read the text of `{css}`"), el.text())
            .await
    }

    /// Writes a PNG of the viewport to `path`; returns its width and height in pixels.
    pub async fn screenshot(&self, path: &Path) -> Result<(u32, u32)> {
        let bytes = self
            .cmd("take a screenshot", self.client()?.screenshot())
            .await?;
        let size = png::size(&bytes).context("the screenshot is not a PNG")?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(size)
    }

    /// Resizes the window so that the viewport (`window.innerWidth` × `innerHeight`, what a
    /// page lays out in and a screenshot shows) is `width`×`height` CSS pixels: headless
    /// Chromium counts a window frame in the window size, so the frame is measured and added.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        let client = self.client()?;
        let what = format!("resize the window to a {width}x{height} viewport");
        let (mut outer_w, mut outer_h) = (width, height);
        let mut seen = Vec::new();
        for _ in 0..4 {
            self.cmd(&what, client.set_window_size(outer_w, outer_h))
                .await?;
            let (iw, ih) = self.settled_viewport().await?;
            if (iw, ih) == (width, height) {
                return Ok(());
            }
            let rect = client.get_window_rect().await.ok();
            seen.push(format!(
                "window {outer_w}x{outer_h} (rect {rect:?}) -> viewport {iw}x{ih}"
            ));
            let fix = |outer: u32, want: u32, got: u32| {
                u32::try_from(i64::from(outer) + i64::from(want) - i64::from(got)).unwrap_or(1)
            };
            (outer_w, outer_h) = (fix(outer_w, width, iw), fix(outer_h, height, ih));
        }
        bail!("{what}: did not get there ({})", seen.join("; "))
    }

    /// The viewport once a resize has taken effect: the same in two reads in a row.
    async fn settled_viewport(&self) -> Result<(u32, u32)> {
        let mut last = self.viewport().await?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(POLL).await;
            let now = self.viewport().await?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// `window.innerWidth` and `innerHeight`.
    pub async fn viewport(&self) -> Result<(u32, u32)> {
        let v = self
            .eval_js("return [window.innerWidth, window.innerHeight];")
            .await?;
        let dim = |i: usize| {
            v.get(i)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        dim(0)
            .zip(dim(1))
            .with_context(|| format!("the viewport size read as {v}"))
    }

    /// Runs `script` as a function body in the page (so it `return`s its value) and gives back
    /// what it returned. WebDriver scripts are not subject to the page's CSP.
    pub async fn eval_js(&self, script: &str) -> Result<Value> {
        self.cmd("run a script", self.client()?.execute(script, Vec::new()))
            .await
    }

    /// The page is wider than the viewport (a phone user would have to scroll sideways).
    pub async fn horizontal_overflow(&self) -> Result<bool> {
        let v = self
            .eval_js("return document.documentElement.scrollWidth > window.innerWidth;")
            .await?;
        v.as_bool()
            .with_context(|| format!("the overflow check returned {v}"))
    }

    /// The URL, the title and the start of the body's text, for error messages.
    pub async fn describe_page(&self) -> String {
        let script = "return [location.href, document.title, \
                      (document.body ? document.body.innerText : '').slice(0, 1500)];";
        let Ok(client) = self.client() else {
            return "the session is closed".into();
        };
        match tokio::time::timeout(Duration::from_secs(10), client.execute(script, Vec::new()))
            .await
        {
            Ok(Ok(Value::Array(v))) if v.len() == 3 => format!(
                "page {} (title {}), text:\n{}",
                v[0],
                v[1],
                v[2].as_str().unwrap_or_default()
            ),
            Ok(Ok(other)) => format!("page: {other}"),
            Ok(Err(e)) => format!("(could not read the page: {e})"),
            Err(_) => "(the page did not answer)".into(),
        }
    }

    /// Ends the WebDriver session, then kills chromedriver's process group and checks that no
    /// process of it is left.
    pub async fn close(mut self) -> Result<()> {
        if let Some(client) = self.client.take() {
            // A session that does not close in time is killed below all the same.
            let _ = tokio::time::timeout(Duration::from_secs(15), client.close()).await;
        }
        self.driver.kill();
        let left = self.driver.live();
        if !left.is_empty() {
            bail!("browser processes left after close: {left:?}");
        }
        Ok(())
    }
}

/// A WebDriver error as its status and message (without chromedriver's stack of addresses).
fn describe_error(e: &CmdError) -> String {
    match e {
        CmdError::Standard(w) => format!("{:?}: {}", w.error, w.message),
        other => other.to_string(),
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- chromedriver log tail ({}) ---\n{}",
                self.driver.log_path().display(),
                self.driver.log_tail(20)
            );
        }
        // Before the temp dir goes: nothing may still write into the profile.
        self.driver.kill();
        self.client = None;
    }
}
