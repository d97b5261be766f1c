//! A real S3-compatible server for tests: moto's server mode (`python -m moto.server`) from a
//! venv under the target dir (`tests/fixtures/moto/requirements.txt`, built once, cached),
//! on a free loopback port, with plain-HTTP helpers to create a bucket and read, write, list
//! and delete objects (moto checks no signature), and a count of the requests its access log
//! shows for an object.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procs::Proc;
use crate::pyenv;
use crate::secure::{free_port, repo_root};

/// A running moto server; stopped when dropped.
pub struct S3Server {
    proc: Proc,
    pub endpoint: String,
    http: reqwest::Client,
}

impl S3Server {
    /// Builds (or reuses) the venv and starts the server, logging to `<dir>/moto.log`.
    /// Fails (never skips) when moto cannot be installed, saying what is missing.
    pub async fn start(dir: &Path) -> Result<S3Server> {
        let requirements = repo_root().join("tests/fixtures/moto/requirements.txt");
        let python = tokio::task::spawn_blocking(move || {
            pyenv::python_env("pyenv-moto", &requirements)
        })
        .await?
        .context(
            "the S3 test needs moto's server (pip install 'moto[server]' from PyPI or a mirror \
             into target/pyenv-moto); it fails rather than skips",
        )?;
        let port = free_port()?;
        let mut proc = Proc::new(
            "moto",
            python,
            [
                "-m".to_owned(),
                "moto.server".to_owned(),
                "-H".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                port.to_string(),
            ],
            dir.join("moto.log"),
        );
        proc.spawn()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        // moto checks no signature but refuses anonymous reads of private objects: every
        // request names the test's access key.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=0",
            ),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .default_headers(headers)
            .build()?;
        let started = Instant::now();
        loop {
            if http.get(format!("{endpoint}/")).send().await.is_ok() {
                break;
            }
            proc.check_running()?;
            if started.elapsed() > Duration::from_secs(60) {
                bail!("moto did not answer on {endpoint} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(S3Server {
            proc,
            endpoint,
            http,
        })
    }

    fn url(&self, bucket: &str, key: &str) -> String {
        format!("{}/{bucket}/{key}", self.endpoint)
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let r = self
            .http
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("create bucket {bucket}: {}", r.status());
        }
        Ok(())
    }

    /// The object's bytes, `None` when it does not exist.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.http.get(self.url(bucket, key)).send().await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            bail!("get {key}: {}", r.status());
        }
        Ok(Some(r.bytes().await?.to_vec()))
    }

    /// Writes `bytes` as the object, without user metadata (as another writer would).
    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<()> {
        let r = self
            .http
            .put(self.url(bucket, key))
            .body(bytes)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("put {key}: {}", r.status());
        }
        Ok(())
    }

    /// How many `method` requests for `key` moto's access log shows since it started.
    pub fn requests(&self, method: &str, bucket: &str, key: &str) -> usize {
        let line = format!("\"{method} /{bucket}/{key} HTTP/");
        (self.proc.log_since_start().lines())
            .filter(|l| l.contains(&line))
            .count()
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let r = self.http.delete(self.url(bucket, key)).send().await?;
        if !r.status().is_success() {
            bail!("delete {key}: {}", r.status());
        }
        Ok(())
    }

    /// Keys under `prefix` (one page; tests hold few objects).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let body = self
            .http
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect())
    }

    pub fn log_tail(&self) -> String {
        self.proc.log_tail(40)
    }
}
