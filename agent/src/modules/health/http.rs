//! The HTTP client of probes and local control endpoints: one HTTP/1.1 request over a fresh
//! connection (hyper), TLS for `https://` probe URLs; redirects are never followed and at
//! most `BODY_LIMIT` bytes of body are read. And the `http` probe itself: status, body text
//! and JSON assertions.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::seen::{Seen, BODY_LIMIT};
use super::{assert, cert, tls};
use crate::config::{parse_probe_url, HttpTarget, ProbeConfig, ProbeType, DEFAULT_EXPECT_STATUS};

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Up to `BODY_LIMIT` bytes (when asked for).
    pub body: Vec<u8>,
    /// The body was longer than `BODY_LIMIT`.
    pub truncated: bool,
}

/// One request: what to send.
pub struct Request<'a> {
    pub method: hyper::Method,
    pub body: &'a str,
    pub content_type: Option<&'a str>,
    pub want_body: bool,
}

/// One request to `target` over a fresh connection, TLS as probe `tls` says for an https
/// target (plain HTTP otherwise). Returns the server's certificate too, when TLS saw one.
pub async fn exchange(
    target: &HttpTarget,
    tls_of: Option<&ProbeConfig>,
    req: Request<'_>,
) -> (Result<Response, String>, Option<i64>) {
    let url = format!("{}{}", target.authority, target.path_and_query);
    let stream = match TcpStream::connect(&target.authority).await {
        Ok(s) => s,
        Err(e) => return (Err(format!("connect {}: {e}", target.authority)), None),
    };
    match (target.scheme.tls(), tls_of) {
        (true, Some(p)) => {
            let hs = tls::connect(p, &target.host, stream, b"http/1.1").await;
            let not_after = hs
                .server_cert
                .as_ref()
                .and_then(|c| cert::facts(c).ok())
                .map(|f| f.not_after_unix_ms);
            match hs.result {
                Ok(s) => (over(s, target, &url, req).await, not_after),
                Err(e) => (Err(e), not_after),
            }
        }
        (true, None) => (Err(format!("{url}: https is only for probes")), None),
        (false, _) => (over(stream, target, &url, req).await, None),
    }
}

/// The request over an established connection.
async fn over<S>(
    io: S,
    target: &HttpTarget,
    url: &str,
    req: Request<'_>,
) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let verb = req.method.to_string();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake with {}: {e}", target.authority))?;
    let driver = tokio::spawn(async move {
        // The connection ends with an error when we drop it early; nothing to report.
        let _ = conn.await;
    });
    let mut builder = hyper::Request::builder()
        .method(req.method)
        .uri(&target.path_and_query)
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::USER_AGENT, "ops-agent");
    if let Some(ct) = req.content_type {
        builder = builder.header(hyper::header::CONTENT_TYPE, ct);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(req.body.as_bytes())))
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let res = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{verb} {url}: {e}"));
    let out = match res {
        Err(e) => Err(e),
        Ok(res) => {
            let status = res.status().as_u16();
            if req.want_body {
                match read_prefix(res.into_body()).await {
                    Ok((body, truncated)) => Ok(Response {
                        status,
                        body,
                        truncated,
                    }),
                    Err(e) => Err(format!("reading body of {url}: {e}")),
                }
            } else {
                Ok(Response {
                    status,
                    body: Vec::new(),
                    truncated: false,
                })
            }
        }
    };
    driver.abort();
    out
}

/// Up to `BODY_LIMIT` bytes of a body, and whether there was more (a longer body is cut,
/// not an error; the rest is never read).
async fn read_prefix(mut body: hyper::body::Incoming) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return Ok((out, false)),
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    let room = BODY_LIMIT - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                    if data.len() > room {
                        return Ok((out, true));
                    }
                }
            }
        }
        if out.len() >= BODY_LIMIT {
            // Full: more is too much, an immediate end is not.
            return Ok(match body.frame().await {
                None => (out, false),
                Some(_) => (out, true),
            });
        }
    }
}

/// `type = "http"`: GET `url` (redirects not followed); success when the status is
/// `expect_status`, the body contains `body_contains` and every JSON assertion holds.
pub async fn http_probe(p: &ProbeConfig) -> Seen {
    let url = p.url.as_deref().unwrap_or_default();
    let target = match parse_probe_url(url, ProbeType::Http) {
        Ok(t) => t,
        Err(e) => return Seen::failed(e),
    };
    let expect = p.expect_status.unwrap_or(DEFAULT_EXPECT_STATUS);
    let req = Request {
        method: hyper::Method::GET,
        body: "",
        content_type: None,
        want_body: p.body_contains.is_some() || !p.json.is_empty(),
    };
    let (res, cert) = match tokio::time::timeout(p.timeout, exchange(&target, Some(p), req)).await {
        Err(_) => (Err(format!("timed out after {:?}", p.timeout)), None),
        Ok(r) => r,
    };
    let (success, detail) = match res {
        Err(e) => (false, e),
        Ok(r) => judge(p, expect, &r),
    };
    let detail = if p.insecure && target.scheme.tls() {
        format!("{detail} ({})", tls::INSECURE_NOTE)
    } else {
        detail
    };
    Seen {
        success,
        detail,
        cert_not_after_unix_ms: cert,
    }
}

/// The verdict on a response (pure).
pub fn judge(p: &ProbeConfig, expect: u16, r: &Response) -> (bool, String) {
    let status = r.status;
    if status != expect {
        let hint = if (300..400).contains(&status) {
            " (redirects are not followed)"
        } else {
            ""
        };
        return (false, format!("status {status}, expected {expect}{hint}"));
    }
    if let Some(needle) = &p.body_contains {
        if !String::from_utf8_lossy(&r.body).contains(needle.as_str()) {
            return (
                false,
                format!("status {status}, body does not contain {needle:?}"),
            );
        }
    }
    match assert::check(&p.json, &r.body, r.truncated) {
        Err(e) => (false, format!("status {status}, {e}")),
        Ok(()) => (true, format!("status {status}")),
    }
}
