//! `[http] tls_cert` + `tls_key`: the real agent serves /healthz and /readyz over HTTPS (rustls,
//! ring) with a certificate from `scripts/dev-certs.sh`, verified against the dev CA, and a
//! plain-HTTP request to the same port gets no HTTP answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::generate_secrets;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn https_get(addr: SocketAddr, ca: &std::path::Path, path: &str) -> Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await
        .context("TLS handshake with the agent failed")?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

async fn plain_get(addr: SocketAddr) -> Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut buf)).await;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_its_probes_over_tls() {
    Cluster::run("http-tls", async |c: &mut Cluster| {
        let secrets = c.dir().join("secrets");
        generate_secrets(&secrets)?;
        let tls = secrets.join("tls");
        let http = format!(
            "\n[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            tls.join("server.pem").display(),
            tls.join("server-key.pem").display()
        );
        c.add_agent(AgentSpec::new("web-01").modules_toml(&http))?;
        let addr: SocketAddr = {
            let agent = c.agent("web-01")?;
            wait_until_default("the agent to bind its HTTPS endpoint", async || {
                agent.proc_mut().check_running()?;
                let log = agent.proc().log_since_start();
                let line = log.lines().find(|l| l.contains("http endpoint bound"));
                Ok(line.and_then(|l| {
                    let rest = l.split("addr=").nth(1)?;
                    rest.split_whitespace().next()?.parse().ok()
                }))
            })
            .await?
        };
        let ok = https_get(addr, &tls.join("ca.pem"), "/healthz").await?;
        ensure!(
            ok.starts_with("HTTP/1.1 200"),
            "GET /healthz over TLS: {ok}"
        );
        let ready = https_get(addr, &tls.join("ca.pem"), "/readyz").await?;
        ensure!(
            ready.starts_with("HTTP/1.1"),
            "GET /readyz over TLS: {ready}"
        );
        let plain = plain_get(addr).await?;
        ensure!(
            !plain.starts_with("HTTP/1.1 200"),
            "plain HTTP got an answer: {plain}"
        );
        // A client that does not trust the dev CA refuses the endpoint.
        let other = c.dir().join("other");
        generate_secrets(&other)?;
        let untrusted = https_get(addr, &other.join("tls/ca.pem"), "/healthz").await;
        ensure!(
            untrusted.is_err(),
            "a client trusting another CA accepted the endpoint"
        );
        Ok(())
    })
    .await;
}
