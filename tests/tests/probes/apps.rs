//! What the probes of the agent under test look at, shared by `probes.rs` and
//! `prometheus.rs`: a dev CA with a server certificate 5 days (and 2 h) from expiry, and an
//! axum app served on loopback (over TLS when asked).

use std::path::{Path, PathBuf};

use anyhow::Result;

/// A dev CA and a server certificate for localhost it signed, 5 days (and 2 h) to live:
/// `(ca.pem, server.pem, server.key)` in `dir`.
pub fn dev_pki(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "opsfleet probes test CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(5) + time::Duration::hours(2);
    let cert = params.signed_by(&key, &issuer)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// Serves `app` on loopback (TLS when `tls` is given); returns the port.
pub async fn serve(app: axum::Router, tls: Option<(&Path, &Path)>) -> Result<u16> {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = tcp.local_addr()?.port();
    let acceptor = match tls {
        Some((cert, key)) => Some(opsfleet_httpserve::acceptor(cert, key)?),
        None => None,
    };
    tokio::spawn(opsfleet_httpserve::serve(
        tcp,
        acceptor,
        app,
        std::future::pending(),
    ));
    Ok(port)
}
