//! An artifact brought to a temp file beside the releases while its sha256 is computed: from
//! an `http://` / `https://` URL (streamed, bounded by `max_artifact_bytes` and
//! `fetch_timeout`) or an absolute local path (copied, same bound). A mismatched sha256, an
//! oversize artifact or any error removes the temp file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::random_tag;

/// Why an artifact could not be fetched; the deploy's failure reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("artifact {artifact:?} is neither an http(s) URL nor an absolute path")]
    Source { artifact: String },
    #[error("cannot download {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("artifact {artifact} is larger than max_artifact_bytes ({max} bytes)")]
    TooLarge { artifact: String, max: u64 },
    #[error("artifact {artifact} was not fetched within {timeout:?}")]
    Timeout { artifact: String, timeout: Duration },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The computed hash is never told: it would let a caller learn the hash of a local file
    /// it cannot read.
    #[error("sha256 mismatch: artifact {artifact} does not match the sha256 {expected} the command gives; nothing was changed")]
    Sha { artifact: String, expected: String },
}

/// An artifact in its temp file.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    /// Its file name in the source (the URL's last path segment, the path's file name).
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The bounds of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// The artifact's file name in its source; `artifact` when it has none.
pub fn source_name(artifact: &str) -> String {
    let path = match reqwest::Url::parse(artifact) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.path().to_owned(),
        _ => artifact.to_owned(),
    };
    let name = path.rsplit('/').next().unwrap_or_default();
    if crate::config::version_problem(name).is_some() {
        "artifact".to_owned()
    } else {
        name.to_owned()
    }
}

/// Fetches `artifact` into a new temp file in `beside` and checks its sha256 against
/// `expected` (hex, any case).
pub async fn fetch(
    artifact: &str,
    expected: &str,
    beside: &Path,
    limits: Limits,
) -> Result<Fetched, FetchError> {
    let temp = beside.join(format!(".fetch-{}", random_tag()));
    let run = async {
        if artifact.starts_with("http://") || artifact.starts_with("https://") {
            download(artifact, &temp, limits).await
        } else if Path::new(artifact).is_absolute() {
            copy(artifact, &temp, limits.max_bytes).await
        } else {
            Err(FetchError::Source {
                artifact: artifact.to_owned(),
            })
        }
    };
    let got = match tokio::time::timeout(limits.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            artifact: artifact.to_owned(),
            timeout: limits.timeout,
        }),
    };
    let (sha256, bytes) = match got {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    if !sha256.eq_ignore_ascii_case(expected.trim()) {
        let _ = std::fs::remove_file(&temp);
        return Err(FetchError::Sha {
            artifact: artifact.to_owned(),
            expected: expected.trim().to_owned(),
        });
    }
    Ok(Fetched {
        path: temp,
        name: source_name(artifact),
        sha256,
        bytes,
    })
}

/// A new file at `temp` (exclusive, 0600).
async fn create(temp: &Path) -> Result<tokio::fs::File, FetchError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .await
        .map_err(|source| FetchError::Io {
            what: "create",
            path: temp.display().to_string(),
            source,
        })
}

/// Writes `chunk` and hashes it; fails past `max` bytes in all.
async fn write_chunk(
    out: &mut tokio::fs::File,
    hasher: &mut Sha256,
    total: &mut u64,
    chunk: &[u8],
    (artifact, temp, max): (&str, &Path, u64),
) -> Result<(), FetchError> {
    *total = total.saturating_add(chunk.len() as u64);
    if *total > max {
        return Err(FetchError::TooLarge {
            artifact: artifact.to_owned(),
            max,
        });
    }
    hasher.update(chunk);
    out.write_all(chunk).await.map_err(|source| FetchError::Io {
        what: "write",
        path: temp.display().to_string(),
        source,
    })
}

async fn finish(out: tokio::fs::File, temp: &Path) -> Result<(), FetchError> {
    out.sync_all().await.map_err(|source| FetchError::Io {
        what: "write",
        path: temp.display().to_string(),
        source,
    })
}

async fn download(url: &str, temp: &Path, limits: Limits) -> Result<(String, u64), FetchError> {
    let http = |source| FetchError::Http {
        url: url.to_owned(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(limits.timeout)
        .build()
        .map_err(http)?;
    let mut resp = client.get(url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    if resp.content_length().is_some_and(|n| n > limits.max_bytes) {
        return Err(FetchError::TooLarge {
            artifact: url.to_owned(),
            max: limits.max_bytes,
        });
    }
    let mut out = create(temp).await?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        let ctx = (url, temp, limits.max_bytes);
        write_chunk(&mut out, &mut hasher, &mut total, &chunk, ctx).await?;
    }
    finish(out, temp).await?;
    Ok((hex::encode(hasher.finalize()), total))
}

async fn copy(path: &str, temp: &Path, max: u64) -> Result<(String, u64), FetchError> {
    let mut src = tokio::fs::File::open(path)
        .await
        .map_err(|source| FetchError::Io {
            what: "open",
            path: path.to_owned(),
            source,
        })?;
    let mut out = create(temp).await?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf).await.map_err(|source| FetchError::Io {
            what: "read",
            path: path.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        write_chunk(
            &mut out,
            &mut hasher,
            &mut total,
            &buf[..n],
            (path, temp, max),
        )
        .await?;
    }
    finish(out, temp).await?;
    Ok((hex::encode(hasher.finalize()), total))
}
