//! The `s3` destination: a bucket on AWS or an S3-compatible server (path-style addressing
//! when `endpoint` is set), through the `object_store` crate on a private current-thread
//! tokio runtime (the `Destination` trait is blocking and runs in `spawn_blocking`).
//! Uploads stream through `object_store`'s `BufWriter` (one PUT, multipart when large); an
//! object only appears once complete. Each object carries its sha256 and size as user
//! metadata (`x-amz-meta-sha256`, `x-amz-meta-size`), read by a HEAD at reconciliation, so
//! only objects without them (older uploads) are downloaded again. Credentials come from `credentials_file` or the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` environment and are never logged.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ClientOptions, GetOptions, ObjectStore, RetryConfig};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Destination, Fingerprint, RemoteError, RemoteObject};
use crate::config::{credentials_file_problem, RemoteConfig};

/// The user metadata keys of an object's fingerprint.
const SHA256_KEY: &str = "sha256";
const SIZE_KEY: &str = "size";

/// The fingerprint in an object's attributes, if both keys are there and parse.
fn fingerprint_of(attributes: &Attributes) -> Option<Fingerprint> {
    let get = |key: &'static str| attributes.get(&Attribute::Metadata(key.into()));
    let sha256 = get(SHA256_KEY)?.to_string();
    let size = get(SIZE_KEY)?.parse().ok()?;
    (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(Fingerprint { sha256, size })
}

pub struct S3Destination {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    label: String,
    rt: tokio::runtime::Runtime,
}

/// Access key id and secret key, from the file or the environment.
fn credentials(cfg: &RemoteConfig, label: &str) -> Result<(String, String), RemoteError> {
    let bad = |reason: String| RemoteError::Credentials {
        destination: label.to_owned(),
        reason,
    };
    let Some(path) = &cfg.credentials_file else {
        let id = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
        if id.is_empty() || secret.is_empty() {
            return Err(bad(
                "no credentials_file and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not both set"
                    .into(),
            ));
        }
        return Ok((id, secret));
    };
    if let Some(why) = credentials_file_problem(path) {
        return Err(bad(why));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    parse_credentials(&text).ok_or_else(|| {
        bad(format!(
            "{} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        ))
    })
}

/// `key = value` lines (the AWS shared-credentials shape; `[section]` and `#` lines ignored).
pub(super) fn parse_credentials(text: &str) -> Option<(String, String)> {
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            _ => {}
        }
    }
    Some((
        id.filter(|s| !s.is_empty())?,
        secret.filter(|s| !s.is_empty())?,
    ))
}

impl S3Destination {
    pub fn open(cfg: &RemoteConfig) -> Result<Self, RemoteError> {
        let label = cfg.label();
        let (id, secret) = credentials(cfg, &label)?;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(id)
            .with_secret_access_key(secret)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            );
        if let Some(e) = &cfg.endpoint {
            // The endpoint was checked (loopback or allow_http) when the config was loaded.
            b = b
                .with_endpoint(e.trim_end_matches('/'))
                .with_virtual_hosted_style_request(false)
                .with_allow_http(e.starts_with("http://"));
        }
        let store = b.build().map_err(|source| RemoteError::Store {
            op: "configure",
            destination: label.clone(),
            name: String::new(),
            source: Box::new(source),
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| RemoteError::Io {
                op: "start a runtime for",
                destination: label.clone(),
                name: String::new(),
                source,
            })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: ObjectPath::from(cfg.prefix.trim_matches('/')),
            label,
            rt,
        })
    }

    fn key(&self, name: &str) -> Result<ObjectPath, RemoteError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(RemoteError::BadName {
                name: name.to_owned(),
            });
        }
        Ok(self.prefix.child(name))
    }

    fn store_err(
        &self,
        op: &'static str,
        name: &str,
    ) -> impl FnOnce(object_store::Error) -> RemoteError {
        let (destination, name) = (self.label.clone(), name.to_owned());
        move |source| RemoteError::Store {
            op,
            destination,
            name,
            source: Box::new(source),
        }
    }

    fn io_err(&self, op: &'static str, name: &str) -> impl FnOnce(io::Error) -> RemoteError {
        let (destination, name) = (self.label.clone(), name.to_owned());
        move |source| RemoteError::Io {
            op,
            destination,
            name,
            source,
        }
    }
}

impl Destination for S3Destination {
    fn label(&self) -> &str {
        &self.label
    }

    fn put(&self, name: &str, from: &Path, sum: &Fingerprint) -> Result<(), RemoteError> {
        let key = self.key(name)?;
        let attributes = Attributes::from_iter([
            (Attribute::Metadata(SHA256_KEY.into()), sum.sha256.clone()),
            (Attribute::Metadata(SIZE_KEY.into()), sum.size.to_string()),
        ]);
        self.rt.block_on(async {
            let mut src =
                tokio::fs::File::open(from)
                    .await
                    .map_err(|source| RemoteError::Local {
                        path: from.to_owned(),
                        source,
                    })?;
            let mut w = BufWriter::new(Arc::clone(&self.store), key).with_attributes(attributes);
            let copied = async {
                tokio::io::copy(&mut src, &mut w).await?;
                w.shutdown().await
            }
            .await;
            if let Err(e) = copied {
                let _ = w.abort().await;
                return Err((self.io_err("upload", name))(e));
            }
            Ok(())
        })
    }

    fn get(&self, name: &str, to: &Path) -> Result<(), RemoteError> {
        let key = self.key(name)?;
        self.rt.block_on(async {
            let res = self
                .store
                .get(&key)
                .await
                .map_err(self.store_err("download", name))?;
            let mut stream = res.into_stream();
            let mut dst = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(to)
                .await
                .map_err(|source| RemoteError::Local {
                    path: to.to_owned(),
                    source,
                })?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(self.store_err("download", name))?;
                dst.write_all(&chunk)
                    .await
                    .map_err(|source| RemoteError::Local {
                        path: to.to_owned(),
                        source,
                    })?;
            }
            dst.sync_all().await.map_err(|source| RemoteError::Local {
                path: to.to_owned(),
                source,
            })
        })
    }

    fn list(&self) -> Result<Vec<RemoteObject>, RemoteError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let listed = self
            .rt
            .block_on(self.store.list_with_delimiter(prefix))
            .map_err(self.store_err("list", ""))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?.to_owned();
                Some(RemoteObject { name, size: o.size })
            })
            .collect())
    }

    fn delete(&self, name: &str) -> Result<(), RemoteError> {
        let key = self.key(name)?;
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err((self.store_err("delete", name))(e)),
        }
    }

    fn recorded(&self, name: &str) -> Result<Option<Fingerprint>, RemoteError> {
        let key = self.key(name)?;
        let head = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let res = (self.rt.block_on(self.store.get_opts(&key, head)))
            .map_err(self.store_err("read the metadata of", name))?;
        // Metadata that contradicts the object's own size vouches for nothing.
        Ok(fingerprint_of(&res.attributes).filter(|f| f.size == res.meta.size))
    }

    fn read_back(&self, name: &str) -> Result<Fingerprint, RemoteError> {
        let key = self.key(name)?;
        self.rt.block_on(async {
            let res = self
                .store
                .get(&key)
                .await
                .map_err(self.store_err("read back", name))?;
            let mut stream = res.into_stream();
            let mut h = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(self.store_err("read back", name))?;
                size += chunk.len() as u64;
                h.update(&chunk);
            }
            Ok(Fingerprint {
                sha256: hex::encode(h.finalize()),
                size,
            })
        })
    }
}
