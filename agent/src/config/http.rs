//! `[http]`: the agent's own HTTP endpoint (/healthz, /readyz, /metrics and the admin routes).
//! Absent section = no listener.

use std::net::SocketAddr;

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
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_admin() -> bool {
    false
}

impl HttpConfig {
    /// Whether the admin routes are served.
    pub fn admin_enabled(&self) -> bool {
        self.admin || self.listen.ip().is_loopback()
    }
}
