//! `[http]`: the agent's own HTTP endpoint (/healthz, /readyz, /metrics on TCP) and its admin
//! routes (on a Unix socket, 0600; on TCP only when asked, behind a bearer token). Absent
//! section = no listener at all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:9464` (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Removed (it served the admin routes unauthenticated on TCP); kept only to say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// Unix socket of the admin routes (`POST /modules/<name>/<action>`), created with mode
    /// 0600; default `<data_dir>/admin.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_socket: Option<PathBuf>,
    /// Also serve the admin routes on `listen`, each request with
    /// `Authorization: Bearer <token from admin_token_file>`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub admin_tcp: bool,
    /// File holding the bearer token of `admin_tcp` (not readable by group or others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
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
fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            admin: None,
            admin_socket: None,
            admin_tcp: false,
            admin_token_file: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl HttpConfig {
    /// Problems as `(key, reason)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out =
            opsfleet_httpserve::pair_problems(self.tls_cert.as_deref(), self.tls_key.as_deref());
        if self.admin.is_some() {
            out.push((
                "admin".to_owned(),
                "is no longer supported: the admin routes are served on the Unix socket \
                 `admin_socket` (default <data_dir>/admin.sock); for TCP set `admin_tcp = true` \
                 and `admin_token_file`"
                    .to_owned(),
            ));
        }
        if let Some(p) = &self.admin_socket {
            if !p.is_absolute() {
                out.push((
                    "admin_socket".to_owned(),
                    format!("must be an absolute path: {p:?}"),
                ));
            }
        }
        match &self.admin_token_file {
            Some(p) if !p.is_absolute() => out.push((
                "admin_token_file".to_owned(),
                format!("must be an absolute path: {p:?}"),
            )),
            None if self.admin_tcp => out.push((
                "admin_token_file".to_owned(),
                "is required with `admin_tcp = true` (the bearer token of the admin routes)"
                    .to_owned(),
            )),
            _ => {}
        }
        if self.admin_tcp && !self.listen.ip().is_loopback() && self.tls_cert.is_none() {
            out.push((
                "admin_tcp".to_owned(),
                format!(
                    "on a non-loopback address ({}) needs `tls_cert` and `tls_key`: the bearer \
                     token would cross the network in clear text",
                    self.listen
                ),
            ));
        }
        out
    }

    /// The admin socket's path: `admin_socket`, else `<data_dir>/admin.sock`.
    pub fn admin_socket_path(&self, data_dir: &Path) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| data_dir.join("admin.sock"))
    }
}
