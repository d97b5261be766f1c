//! Release artifacts for deploy tests: a `.tar.gz` of a release directory with its sha256,
//! and a loopback HTTP server that serves the files of one directory.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path) -> anyhow::Result<()> {
//! use opsfleet_tests::artifacts::{tar_gz, ArtifactServer};
//! // dir/v1/bin/app, dir/v1/VERSION ...
//! let v1 = tar_gz(&dir.join("v1"), &dir.join("dist/app-1.0.tar.gz"))?;
//! let server = ArtifactServer::serve(&dir.join("dist")).await?;
//! let url = server.url("app-1.0.tar.gz"); // http://127.0.0.1:<port>/app-1.0.tar.gz
//! // opsctl service deploy app --version 1.0 --artifact <url> --sha256 <v1.sha256> ...
//! server.stop().await; // later deploys must not need the network
//! # let _ = (v1, url); Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A built artifact: its file and the sha256 (lowercase hex) a deploy must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    pub sha256: String,
}

impl Artifact {
    /// The file name (what [`ArtifactServer::url`] takes).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a gzipped tar of everything under `src` (paths relative to it, modes kept) to
/// `out` (its parent created) and returns it with its sha256.
pub fn tar_gz(src: &Path, out: &Path) -> Result<Artifact> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", src)
        .with_context(|| format!("tar {}", src.display()))?;
    let bytes = builder.into_inner()?.finish()?;
    std::fs::write(out, &bytes).with_context(|| format!("write {}", out.display()))?;
    Ok(Artifact {
        path: out.to_owned(),
        sha256: sha256_hex(&bytes),
    })
}

/// Serves the files of one directory on `http://127.0.0.1:<free port>/<name>` (GET only, no
/// subdirectories) until stopped or dropped; counts the requests it answered.
pub struct ArtifactServer {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct Served {
    dir: PathBuf,
    hits: Arc<AtomicU64>,
}

async fn file(
    State(s): State<Served>,
    UrlPath(name): UrlPath<String>,
) -> Result<Vec<u8>, StatusCode> {
    s.hits.fetch_add(1, Ordering::SeqCst);
    if name.contains('/') || name.starts_with('.') {
        return Err(StatusCode::NOT_FOUND);
    }
    tokio::fs::read(s.dir.join(name))
        .await
        .map_err(|_| StatusCode::NOT_FOUND)
}

impl ArtifactServer {
    /// Starts serving `dir` on a free loopback port.
    pub async fn serve(dir: &Path) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let served = Served {
            dir: dir.to_owned(),
            hits: hits.clone(),
        };
        let app = Router::new().route("/{name}", get(file)).with_state(served);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(ArtifactServer {
            addr,
            hits,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The URL of file `name` of the directory.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Requests answered so far (any status).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops serving and waits until the port is closed.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ArtifactServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
