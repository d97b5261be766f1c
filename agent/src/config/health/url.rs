//! The URLs of probes and local control endpoints: `http://` everywhere, plus `https://` for
//! HTTP probes and `ws://` / `wss://` for WebSocket probes.

use hyper::Uri;

use super::ProbeType;

/// The scheme of a parsed URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Ws,
    Wss,
}

impl Scheme {
    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Wss)
    }

    fn default_port(self) -> u16 {
        if self.tls() {
            443
        } else {
            80
        }
    }

    fn parse(s: &str) -> Option<Scheme> {
        match s {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            "ws" => Some(Scheme::Ws),
            "wss" => Some(Scheme::Wss),
            _ => None,
        }
    }
}

/// A parsed `scheme://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub scheme: Scheme,
    /// The host as TLS names it (no brackets around an IPv6 address).
    pub host: String,
    /// `host:port` (the port made explicit).
    pub authority: String,
    pub path_and_query: String,
}

/// Accepts `http://` URLs with a host (local control endpoints, POSTs): no TLS.
pub fn parse_http_url(url: &str) -> Result<HttpTarget, String> {
    parse(url, &[Scheme::Http], "http://")
}

/// The URL of a probe of type `probe`: `http://` or `https://` for http, `ws://` or `wss://`
/// for websocket.
pub fn parse_probe_url(url: &str, probe: ProbeType) -> Result<HttpTarget, String> {
    match probe {
        ProbeType::Websocket => parse(url, &[Scheme::Ws, Scheme::Wss], "ws:// or wss://"),
        _ => parse(url, &[Scheme::Http, Scheme::Https], "http:// or https://"),
    }
}

fn parse(url: &str, allowed: &[Scheme], said: &str) -> Result<HttpTarget, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        None => return Err(format!("{url:?} needs a scheme ({said})")),
        Some(s) => match Scheme::parse(s).filter(|s| allowed.contains(s)) {
            Some(scheme) => scheme,
            None => return Err(format!("scheme {s:?} not supported here; only {said}")),
        },
    };
    let Some(auth) = uri.authority() else {
        return Err(format!("{url:?} has no host"));
    };
    if auth.host().is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if auth.as_str().contains('@') {
        return Err(format!(
            "{url:?} carries credentials; probes send none (use a local endpoint without them)"
        ));
    }
    let port = auth.port_u16().unwrap_or(scheme.default_port());
    let authority = format!("{}:{port}", auth.host());
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path_and_query = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    Ok(HttpTarget {
        scheme,
        host,
        authority,
        path_and_query,
    })
}
