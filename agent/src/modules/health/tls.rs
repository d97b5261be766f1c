//! TLS for HTTPS and WSS probes (rustls on ring): the trust roots (the system's, loaded once
//! on first use, or a probe's `ca_file`), or none with `insecure`; the server's certificate
//! recorded in every case, so its expiry is known even when verification refuses it.

use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{
    ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use tokio_rustls::TlsConnector;

use crate::config::ProbeConfig;

/// Largest CA or certificate file a probe reads.
pub const PEM_LIMIT: u64 = 1024 * 1024;

/// Detail suffix of a probe that does not verify the server.
pub const INSECURE_NOTE: &str = "insecure: certificate not verified";

/// The system's roots, read once on the first HTTPS probe without `ca_file` (agents without
/// one never pay for them).
static SYSTEM_ROOTS: OnceCell<Result<Arc<RootCertStore>, String>> = OnceCell::const_new();

async fn system_roots() -> Result<Arc<RootCertStore>, String> {
    SYSTEM_ROOTS
        .get_or_init(|| async {
            tokio::task::spawn_blocking(load_system_roots)
                .await
                .unwrap_or_else(|e| Err(format!("loading the system roots: {e}")))
        })
        .await
        .clone()
}

fn load_system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "no system root certificates found ({}); set ca_file",
            if why.is_empty() {
                "empty store".to_owned()
            } else {
                why.join("; ")
            }
        ));
    }
    tracing::debug!(roots = added, "system root certificates loaded");
    Ok(Arc::new(roots))
}

/// Reads a PEM file of at most `PEM_LIMIT` bytes.
pub async fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(PEM_LIMIT + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > PEM_LIMIT {
        return Err(format!(
            "{} is larger than {PEM_LIMIT} bytes; not a PEM file",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The certificates of a PEM text, in order.
pub fn pem_certs(bytes: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(bytes)
        .filter_map(Result::ok)
        .collect()
}

async fn ca_roots(path: &std::path::Path) -> Result<Arc<RootCertStore>, String> {
    let bytes = read_pem(path).await?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(pem_certs(&bytes));
    if added == 0 {
        return Err(format!("ca_file {}: no certificate in it", path.display()));
    }
    Ok(Arc::new(roots))
}

/// Verifies through webpki (or not at all, for `insecure`) and keeps the server's
/// certificate.
#[derive(Debug)]
struct Recording {
    verify: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(end_entity.clone().into_owned());
        match &self.verify {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection and the server certificate it saw (also when it failed).
pub struct Handshake {
    pub result: Result<TlsStream<TcpStream>, String>,
    pub server_cert: Option<CertificateDer<'static>>,
}

/// Handshakes with `host` over `tcp` as probe `p` says (roots, `ca_file` or `insecure`),
/// offering `alpn`.
pub async fn connect(p: &ProbeConfig, host: &str, tcp: TcpStream, alpn: &[u8]) -> Handshake {
    let failed = |e: String| Handshake {
        result: Err(e),
        server_cert: None,
    };
    let provider = Arc::new(ring::default_provider());
    let verify = if p.insecure {
        None
    } else {
        let roots = match &p.ca_file {
            Some(path) => ca_roots(path).await,
            None => system_roots().await,
        };
        let roots = match roots {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        match WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build() {
            Ok(v) => Some(v),
            Err(e) => return failed(format!("TLS verifier: {e}")),
        }
    };
    let recorder = Arc::new(Recording {
        verify,
        provider: provider.clone(),
        seen: Mutex::new(None),
    });
    let config =
        match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(b) => b,
            Err(e) => return failed(format!("TLS config: {e}")),
        };
    let mut config = config
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = match ServerName::try_from(host.to_owned()) {
        Ok(n) => n,
        Err(e) => return failed(format!("{host:?} is not a TLS server name: {e}")),
    };
    let result = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {host}: {e}"));
    let server_cert = recorder
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    Handshake {
        result,
        server_cert,
    }
}
