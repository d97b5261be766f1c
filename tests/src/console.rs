//! The coordinator's web console under test: a users file with known tokens, the `[console]`
//! section, and an HTTP client that logs in and keeps its cookies (reqwest, no redirects
//! followed, so tests see every 303).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use sha2::{Digest, Sha256};

/// The console logins of the tests: (name, role, token).
pub const USERS: [(&str, &str, &str); 3] = [
    ("vic", "viewer", "vic-token-1"),
    ("olga", "operator", "olga-token-2"),
    ("ada", "admin", "ada-token-3"),
];

/// Writes `<dir>/console-users.toml` with [`USERS`] and returns the `[console]` section.
pub fn console_toml(dir: &Path) -> Result<String> {
    let mut text = String::new();
    for (name, role, token) in USERS {
        let sha = hex_sha256(token);
        text.push_str(&format!(
            "[[user]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{sha}\"\n\n"
        ));
    }
    let path = dir.join("console-users.toml");
    std::fs::write(&path, text)?;
    Ok(format!(
        "[console]\nusers_file = {}\n",
        toml::Value::String(path.display().to_string())
    ))
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One answer: status, headers, body.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> Result<String> {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .with_context(|| format!("no csrf field in {}", self.body))?
            + marker.len();
        let end = self.body[start..]
            .find('"')
            .context("unterminated csrf value")?;
        Ok(self.body[start..start + end].to_owned())
    }
}

/// A browser-like client of one coordinator's console: keeps cookies.
pub struct ConsoleClient {
    pub base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl ConsoleClient {
    pub fn new(addr: SocketAddr) -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(ConsoleClient {
            base: format!("http://{addr}"),
            http,
            cookies: BTreeMap::new(),
        })
    }

    /// A client of a console served over TLS, trusting only the CA in `ca_pem` and naming the
    /// server `localhost` (as the dev certificates do).
    pub fn new_tls(addr: SocketAddr, ca_pem: &Path) -> Result<Self> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem)?)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()?;
        Ok(ConsoleClient {
            base: format!("https://localhost:{}", addr.port()),
            http,
            cookies: BTreeMap::new(),
        })
    }

    /// The cookies this client holds, by name.
    pub fn cookies(&self) -> &BTreeMap<String, String> {
        &self.cookies
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or("");
            if let Some((k, val)) = first.split_once('=') {
                if val.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), val.to_owned());
                }
            }
        }
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Result<Page> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.keep_cookies(&headers);
        let body = resp.text().await?;
        Ok(Page {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Page> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        self.finish(resp).await
    }

    /// POSTs a form; `origin` is sent as the `Origin` header (a browser sends its own).
    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Result<Page> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.with_context(|| format!("POST {path}"))?;
        self.finish(resp).await
    }

    /// Logs in as `name` with `token`; the answer of the login POST.
    pub async fn try_login(&mut self, name: &str, token: &str) -> Result<Page> {
        let form = self.get("/console/login").await?;
        let csrf = form.csrf()?;
        let origin = self.base.clone();
        self.post(
            "/console/login",
            &[("name", name), ("token", token), ("csrf", &csrf)],
            Some(&origin),
        )
        .await
    }

    /// Logs in as one of [`USERS`].
    pub async fn login(&mut self, name: &str) -> Result<()> {
        let Some((_, _, token)) = USERS.iter().find(|u| u.0 == name) else {
            bail!("no console user {name}");
        };
        let page = self.try_login(name, token).await?;
        if page.status != 303 || page.header("location") != "/console/fleet" {
            bail!("login as {name}: {} {}", page.status, page.body);
        }
        Ok(())
    }

    /// An SSE request to the event stream (`Last-Event-ID` if given), still streaming.
    pub async fn events(&self, query: &str, last_id: Option<u64>) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .get(format!("{}/console/events/stream?{query}", self.base))
            .header(COOKIE, self.cookie_header())
            .timeout(std::time::Duration::from_secs(600));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await?;
        if resp.status().as_u16() != 200 {
            bail!("event stream: {}", resp.status());
        }
        Ok(resp)
    }
}

/// Reads SSE events from `resp` until `n` events with an `id:` arrived; their ids and data.
pub async fn read_events(resp: &mut reqwest::Response, n: usize) -> Result<Vec<(u64, String)>> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(60), resp.chunk())
            .await
            .context("no event within 60 s")??
            .context("the event stream ended")?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf[..end].to_owned();
            buf.drain(..end + 2);
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(id) = id {
                out.push((id, data));
            }
        }
    }
    Ok(out)
}

/// Waits (at most `within`) for an SSE comment line (`:...`, a keepalive) on `resp`; how long
/// it took.
pub async fn read_keepalive(
    resp: &mut reqwest::Response,
    within: std::time::Duration,
) -> Result<std::time::Duration> {
    let started = std::time::Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .with_context(|| format!("no keepalive within {within:?}"))??
            .context("the event stream ended")?;
        let text = String::from_utf8_lossy(&chunk);
        if text.lines().any(|l| l.starts_with(':')) {
            return Ok(started.elapsed());
        }
    }
}
