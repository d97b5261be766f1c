//! Certificate rotation without a new CA, on the shipped 3-node cluster config with mutual TLS:
//! `scripts/dev-certs.sh --rotate` issues new leaves from the existing CAs and keeps the CAs,
//! nkeys and route password; each node is then reloaded in turn (`nats-server --signal reload`,
//! i.e. SIGHUP, what `systemctl reload nats-server` sends) and serves the new certificate
//! while a client publishes to an R3 stream throughout without a single failure. During the
//! overlap old and new client certificates are both accepted, on rolled and unrolled nodes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use opsfleet_bus::{ConnectMode, NatsConfig, TlsConfig, TopologyConfig};
use opsfleet_proto::subjects;
use opsfleet_tests::secure::{repo_root, SecureClusterNodes};
use opsfleet_tests::wait_until;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncBufReadExt;

fn sha(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(bytes)))
}

/// The certificate a NATS node presents: read its INFO line, then do the TLS handshake the
/// protocol asks for with `client` (cert, key) as the client certificate.
async fn served_certificate(port: u16, ca: &Path, client: (&Path, &Path)) -> Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let chain = CertificateDer::pem_file_iter(client.0)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(client.1)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut reader = tokio::io::BufReader::new(tcp);
    let mut info = String::new();
    reader.read_line(&mut info).await?;
    ensure!(info.starts_with("INFO"), "no INFO from the node: {info:?}");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector
        .connect(ServerName::try_from("localhost")?, reader.into_inner())
        .await
        .context("TLS handshake with the node failed")?;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .context("the node presented no certificate")?;
    Ok(leaf.as_ref().to_vec())
}

fn der_of(pem: &Path) -> Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_file(pem)?.as_ref().to_vec())
}

fn identity(urls: &[String], secrets: &Path, who: &str, cert_dir: &Path, cert: &str) -> NatsConfig {
    NatsConfig {
        urls: urls.to_vec(),
        nkey: Some(secrets.join(format!("nkeys/{who}.nk"))),
        inbox_prefix: Some(format!("_INBOX.{who}")),
        tls: Some(TlsConfig {
            ca: Some(secrets.join("tls/ca.pem")),
            cert: Some(cert_dir.join(format!("{cert}.pem"))),
            key: Some(cert_dir.join(format!("{cert}-key.pem"))),
        }),
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// A viewer (vera) connects with `cert_dir`'s operator certificate and reads stream info.
async fn viewer_reads(urls: &[String], secrets: &Path, cert_dir: &Path) -> Result<()> {
    let cfg = identity(urls, secrets, "vera", cert_dir, "operator");
    let client = opsfleet_bus::connect(&cfg, "rotation probe", ConnectMode::FailFast).await?;
    let js = opsfleet_bus::jetstream(client, &cfg);
    js.get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| anyhow!("vera cannot read OPS_EVENTS' info: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_rotate_under_the_same_ca_with_a_rolling_reload_and_no_failed_publish() -> Result<()>
{
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-cert-rotation-")
        .tempdir()?;
    let mut nodes = SecureClusterNodes::start(tmp.path(), &["nats-1", "nats-2", "nats-3"]).await?;
    let secrets = nodes.secrets.clone();
    let tls = secrets.join("tls");
    let urls: Vec<String> = nodes.nodes.iter().map(|n| n.url()).collect();
    let ports: Vec<u16> = nodes.nodes.iter().map(|n| n.port()).collect();

    // A coordinator's connection publishing to an R3 stream for the whole rotation.
    let blue = identity(&urls, &secrets, "blue", &tls, "coordinator");
    let client = opsfleet_bus::connect(&blue, "rotation publisher", ConnectMode::FailFast).await?;
    let js = opsfleet_bus::jetstream(client, &blue);
    let topology = TopologyConfig {
        replicas: 3,
        ..Default::default()
    };
    wait_until(
        "the R3 topology",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || Ok(opsfleet_bus::ensure_topology(&js, &topology).await.ok()),
    )
    .await?;
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let publisher = {
        let (stop, ok, failed, js) = (stop.clone(), ok.clone(), failed.clone(), js.clone());
        tokio::spawn(async move {
            // Bounded: 10 minutes of publishes at most.
            for n in 0..6000u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let acked = match js
                    .publish(
                        subjects::command_subject("rotation-probe"),
                        n.to_string().into(),
                    )
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                let counter = if acked { &ok } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // 1. Rotate: new leaves, the same CAs, nkeys and route password.
    let kept: Vec<PathBuf> = [
        "tls/ca.pem",
        "tls/ca-key.pem",
        "tls/client-ca.pem",
        "route.conf",
        "nkeys.conf",
        "nkeys/blue.nk",
        "nkeys/vera.nk",
    ]
    .iter()
    .map(|f| secrets.join(f))
    .collect();
    let before: Vec<String> = kept.iter().map(|p| sha(p)).collect::<Result<_>>()?;
    let old_server = der_of(&tls.join("server.pem"))?;
    let status = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/dev-certs.sh"))
        .arg(&secrets)
        .arg("--rotate")
        .status()?;
    ensure!(status.success(), "dev-certs.sh --rotate failed: {status}");
    for (path, sum) in kept.iter().zip(&before) {
        ensure!(
            &sha(path)? == sum,
            "{} changed in a rotation",
            path.display()
        );
    }
    let new_server = der_of(&tls.join("server.pem"))?;
    ensure!(
        new_server != old_server,
        "the server certificate was not reissued"
    );
    let previous = std::fs::read_dir(&tls)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("previous-"))
        })
        .context("no tls/previous-* with the old leaves")?;
    ensure!(der_of(&previous.join("server.pem"))? == old_server);

    // 2. Overlap, nothing reloaded yet: the nodes serve the old leaf, and a client with the
    // new leaf is accepted (same client CA).
    let new_client = (tls.join("operator.pem"), tls.join("operator-key.pem"));
    for port in &ports {
        let served =
            served_certificate(*port, &tls.join("ca.pem"), (&new_client.0, &new_client.1)).await?;
        ensure!(
            served == old_server,
            "node on {port} serves a new certificate before its reload"
        );
    }
    viewer_reads(&urls, &secrets, &tls).await?;

    // 3. Roll: reload one node at a time; each serves the new leaf, the stream stays current.
    for (i, port) in ports.iter().enumerate() {
        nodes.nodes[i]
            .proc_mut()
            .signal(nix::sys::signal::Signal::SIGHUP)?;
        wait_until(
            &format!("node {} to serve the new certificate", i + 1),
            Duration::from_secs(30),
            Duration::from_millis(200),
            async || {
                let served =
                    served_certificate(*port, &tls.join("ca.pem"), (&new_client.0, &new_client.1))
                        .await?;
                Ok((served == new_server).then_some(()))
            },
        )
        .await?;
        wait_until(
            "every replica of OPS_CMDS to be current",
            Duration::from_secs(60),
            Duration::from_millis(500),
            async || {
                let Ok(mut s) = js.get_stream(subjects::COMMANDS_STREAM).await else {
                    return Ok(None);
                };
                let Ok(info) = s.info().await else {
                    return Ok(None);
                };
                let current = info.cluster.as_ref().is_some_and(|c| {
                    c.leader.is_some()
                        && c.replicas.len() == 2
                        && c.replicas.iter().all(|r| r.current)
                });
                Ok(current.then_some(()))
            },
        )
        .await?;
        eprintln!(
            "cert_rotation: node {} reloaded, serving the new leaf",
            i + 1
        );
    }
    // 4. Still in the overlap: a client with the OLD leaf is accepted by the rolled cluster.
    viewer_reads(&urls, &secrets, &previous).await?;

    // The same connection keeps publishing after the last reload.
    let rolled = ok.load(Ordering::SeqCst);
    wait_until(
        "publishes acknowledged after the roll",
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || Ok((ok.load(Ordering::SeqCst) >= rolled + 3).then_some(())),
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    publisher.await?;
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("cert_rotation: {ok} publishes acknowledged, {failed} failed during the rotation");
    ensure!(failed == 0, "{failed} publishes failed during the rotation");
    Ok(())
}

/// A host whose wall clock runs ten minutes behind must still accept certificates issued a
/// moment ago, or it cannot connect at all after a deployment or a rotation: every
/// certificate of `scripts/dev-certs.sh` (and of `--rotate`) is valid from an hour before it
/// was made, as public CAs backdate theirs. Checked with rustls's own verifiers (the ones
/// async-nats and the agents use) at "now - 10 min" and "now - 50 min".
#[test]
fn fresh_certificates_verify_on_a_host_whose_clock_runs_behind() -> Result<()> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::UnixTime;

    let dir = tempfile::tempdir()?;
    let secrets = dir.path().join("secrets");
    opsfleet_tests::secure::generate_secrets(&secrets)?;
    let tls = secrets.join("tls");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = |ca: &str| -> Result<Arc<rustls::RootCertStore>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(tls.join(ca))? {
            roots.add(cert?)?;
        }
        Ok(Arc::new(roots))
    };
    let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots("ca.pem")?,
        provider.clone(),
    )
    .build()?;
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots("client-ca.pem")?,
        provider,
    )
    .build()?;
    let check = |label: &str| -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        for behind in [Duration::from_secs(600), Duration::from_secs(50 * 60)] {
            let then = UnixTime::since_unix_epoch(now - behind);
            for leaf in ["server", "route"] {
                let cert = CertificateDer::from_pem_file(tls.join(format!("{leaf}.pem")))?;
                servers
                    .verify_server_cert(&cert, &[], &ServerName::try_from("nats-1")?, &[], then)
                    .map_err(|e| anyhow!("{label} {leaf}.pem, clock {behind:?} behind: {e}"))?;
            }
            for leaf in ["agent", "coordinator", "operator"] {
                let cert = CertificateDer::from_pem_file(tls.join(format!("{leaf}.pem")))?;
                clients
                    .verify_client_cert(&cert, &[], then)
                    .map_err(|e| anyhow!("{label} {leaf}.pem, clock {behind:?} behind: {e}"))?;
            }
        }
        Ok(())
    };
    check("new")?;
    let status = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/dev-certs.sh"))
        .arg(&secrets)
        .arg("--rotate")
        .stderr(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "dev-certs.sh --rotate failed: {status}");
    check("rotated")
}
