//! The HTTPS listener of the agents' and coordinators' HTTP endpoints (`[http] tls_cert` +
//! `tls_key`): the PEM files loaded into a rustls server config (ring provider, the one
//! async-nats uses), and an axum [`Listener`] that completes handshakes concurrently, so a
//! client that never finishes its handshake holds up nobody else.

use opsfleet_report::ErrorChain;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client must finish its TLS handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the endpoint's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("cannot read the certificate chain {path}")]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("certificate file {path} holds no certificate")]
    NoCert { path: PathBuf },
    #[error("cannot read the private key {path}")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("certificate {cert} and key {key} do not make a TLS server config")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Problems of a `tls_cert` / `tls_key` pair as `(key, reason)`; empty when valid.
pub fn pair_problems(cert: Option<&Path>, key: Option<&Path>) -> Vec<(String, String)> {
    match (cert, key) {
        (Some(_), None) => vec![("tls_key".into(), "`tls_cert` needs `tls_key`".into())],
        (None, Some(_)) => vec![("tls_cert".into(), "`tls_key` needs `tls_cert`".into())],
        _ => Vec::new(),
    }
}

/// Loads a PEM certificate chain and private key into a TLS acceptor (HTTP/1.1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, HttpsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|source| HttpsError::Cert {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(HttpsError::NoCert {
            path: cert.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| HttpsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let config_err = |source| HttpsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(config_err)?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(config_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP listener whose connections are TLS-wrapped; serve it with `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp` in a background task; each handshake runs in its own task.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(error = %ErrorChain(&e), "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %ErrorChain(&e), "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The acceptor task only ends when this listener drops.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `router` on `tcp` until `shutdown`, over TLS when `tls` is given.
pub async fn serve(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Handlers may read the peer address (`ConnectInfo<PeerAddr>`), e.g. to slow failed
    // logins per address.
    let app = router.into_make_service_with_connect_info::<PeerAddr>();
    match tls {
        None => axum::serve(tcp, app).with_graceful_shutdown(shutdown).await,
        Some(acceptor) => {
            axum::serve(TlsListener::new(tcp, acceptor)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The address of the peer of a connection, for handlers (`ConnectInfo<PeerAddr>`), over
/// plain TCP and TLS alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_and_key_go_together() {
        let (c, k) = (Path::new("c.pem"), Path::new("k.pem"));
        assert!(pair_problems(None, None).is_empty());
        assert!(pair_problems(Some(c), Some(k)).is_empty());
        assert_eq!(pair_problems(Some(c), None)[0].0, "tls_key");
        assert_eq!(pair_problems(None, Some(k))[0].0, "tls_cert");
    }

    #[test]
    fn unreadable_files_name_the_path() {
        let err = acceptor(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("cannot read the certificate chain /nonexistent/c.pem")
        );
    }
}
