//! `type = "websocket"`: connect (`ws://`, or `wss://` through the probes' TLS), send a
//! keepalive (a ping frame, or `send_text`) and expect its answer (the pong, or a text
//! message containing `expect_text`) within the timeout. Messages are capped at
//! `BODY_LIMIT`.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::seen::{Seen, BODY_LIMIT};
use super::{cert, tls};
use crate::config::{parse_probe_url, ProbeConfig, ProbeType};

/// The payload of the probe's ping frame.
const PING: &[u8] = b"ops-agent";

/// Runs the probe within its timeout.
pub async fn ws_probe(p: &ProbeConfig) -> Seen {
    let mut cert_seen = None;
    let seen = tokio::time::timeout(p.timeout, attempt(p, &mut cert_seen)).await;
    let (success, detail) = match seen {
        Err(_) => (false, format!("no answer within {:?}", p.timeout)),
        Ok(Err(e)) => (false, e),
        Ok(Ok(d)) => (true, d),
    };
    let detail = if p.insecure && p.uses_tls() {
        format!("{detail} ({})", tls::INSECURE_NOTE)
    } else {
        detail
    };
    Seen {
        success,
        detail,
        cert_not_after_unix_ms: cert_seen,
    }
}

async fn attempt(p: &ProbeConfig, cert_seen: &mut Option<i64>) -> Result<String, String> {
    let url = p.url.as_deref().unwrap_or_default();
    let target = parse_probe_url(url, ProbeType::Websocket)?;
    let tcp = TcpStream::connect(&target.authority)
        .await
        .map_err(|e| format!("connect {}: {e}", target.authority))?;
    if target.scheme.tls() {
        let hs = tls::connect(p, &target.host, tcp, b"http/1.1").await;
        *cert_seen = hs
            .server_cert
            .as_ref()
            .and_then(|c| cert::facts(c).ok())
            .map(|f| f.not_after_unix_ms);
        keepalive(p, url, hs.result?).await
    } else {
        keepalive(p, url, tcp).await
    }
}

/// The handshake, the keepalive and its answer over `io`.
async fn keepalive<S>(p: &ProbeConfig, url: &str, io: S) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(BODY_LIMIT))
        .max_frame_size(Some(BODY_LIMIT));
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, io, Some(config))
        .await
        .map_err(|e| format!("WebSocket handshake with {url}: {e}"))?;
    let sent = match &p.send_text {
        Some(text) => Message::Text(text.as_str().into()),
        None => Message::Ping(PING.into()),
    };
    ws.send(sent)
        .await
        .map_err(|e| format!("sending the keepalive: {e}"))?;
    loop {
        let msg = match ws.next().await {
            None => return Err("connection closed before an answer".to_owned()),
            Some(Err(e)) => return Err(format!("reading the answer: {e}")),
            Some(Ok(m)) => m,
        };
        match (&p.send_text, msg) {
            (None, Message::Pong(payload)) if payload.as_ref() == PING => {
                return Ok("pong".to_owned());
            }
            (Some(_), Message::Text(t)) => {
                return match &p.expect_text {
                    Some(want) if !t.as_str().contains(want.as_str()) => Err(format!(
                        "answer {:?} does not contain {want:?}",
                        clip(t.as_str())
                    )),
                    _ => Ok(format!("answered {:?}", clip(t.as_str()))),
                };
            }
            (_, Message::Close(frame)) => {
                return Err(format!(
                    "closed by the server{}",
                    frame.map_or(String::new(), |f| format!(": {} {}", f.code, f.reason))
                ));
            }
            // Pings are answered by the library; other frames are not the answer.
            _ => {}
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}
