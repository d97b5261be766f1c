//! `[http]`: the agent's own HTTP endpoint (/healthz, /readyz, /metrics and the admin routes).
//! Absent section = no listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:9464` (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve `POST /modules/<name>/{pause,resume,disable,enable}` on a non-loopback address
    /// too. On a loopback address they are always served.
    #[serde(default = "default_admin")]
    pub admin: bool,
    /// PEM certificate chain: with `tls_key`, the endpoint serves HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_admin() -> bool {
    false
}

impl HttpConfig {
    /// Problems as `(key, reason)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        opsfleet_bus::https::pair_problems(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// Whether the admin routes are served.
    pub fn admin_enabled(&self) -> bool {
        self.admin || self.listen.ip().is_loopback()
    }
}
