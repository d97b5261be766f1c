//! `service_deploy`: a version of a service put in place and run. With an artifact: fetched
//! (URL or local path) into a temp file while hashed, its sha256 checked, unpacked beside
//! `releases/` and renamed to `releases/<version>` (an existing release with the same sha256
//! is reused, one with another is refused); without: the release must be kept on the host.
//! Then `current` is switched atomically and the service restarted (or reloaded) through its
//! module, gated like a lifecycle command (plus `ready_samples` consecutive ready rounds). A
//! failure after the switch leaves the new version in place and says so (the coordinator
//! decides a rollback). Done: old releases pruned, `service_deployed` published under the
//! service. A compose service deploys an image tag: the override file, then `up -d`.
//!
//! The work runs as a future that borrows nothing, so the consumer can run it in the
//! background (`consumer.rs`, in its service's lane).

use std::sync::Arc;
use std::time::Instant;

use opsfleet_proto::pb;
use opsfleet_report::error_chain;

use super::exec::Execution;
use super::CommandHandler;
use crate::config::{
    version_problem, AgentConfig, DeployActivate, DeployConfig, HostPolicy, ModuleConfig, RemoteOp,
    ServiceConfig,
};
use crate::modules::service::deploy::fetch::{fetch, FetchError, Limits};
use crate::modules::service::deploy::unpack::{install, UnpackError};
use crate::modules::service::deploy::{compose, ReleaseError, Releases};
use crate::modules::service::ServiceOp;
use crate::runner::control::ControlHandle;

/// Why a deploy failed; the command's failure reason.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("refused by {rule}: {reason}")]
    Policy { rule: &'static str, reason: String },
    #[error("version {version:?} refused: {why}")]
    Version { version: String, why: String },
    #[error("service {service:?} declares no releases ([modules.deploy])")]
    NoDeploy { service: String },
    #[error("{samples} ready samples asked, but service {service:?} declares no health probe ([[modules.health]]); nothing was changed")]
    NoProbe { service: String, samples: u32 },
    #[error("a compose service deploys an image tag; an artifact is not used (got {artifact:?})")]
    ArtifactForImage { artifact: String },
    #[error("version {version} is already on this host from another artifact (sha256 {kept}, the command says {given}); a version's content never changes: deploy it under a new version")]
    OtherContent {
        version: String,
        kept: String,
        given: String,
    },
    #[error("version {version} is not kept on this host and no artifact was given (kept: {kept})")]
    NotKept { version: String, kept: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error("release task ended abnormally: {0}")]
    Task(String),
    #[error("cannot write the compose override {path}")]
    Override {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{version} is in place (was {previous}) but its {op} failed: {reason}; {version} stays current")]
    Activate {
        version: String,
        previous: String,
        op: &'static str,
        reason: String,
    },
}

type Result<T> = std::result::Result<T, DeployError>;

/// What a successful deploy did.
struct Deployed {
    previous: String,
    location: String,
    fetched: bool,
    activated: String,
    pruned: Vec<String>,
}

/// Everything a deploy needs, owned.
struct Job {
    id: String,
    d: pb::ServiceDeploy,
    config: Arc<AgentConfig>,
    policy: HostPolicy,
    control: ControlHandle,
}

impl CommandHandler {
    /// The deploy of `d` as a future that borrows nothing.
    pub(super) fn service_deploy_task(
        &self,
        id: &str,
        d: &pb::ServiceDeploy,
    ) -> impl std::future::Future<Output = Execution> + Send + 'static {
        let job = Job {
            id: id.to_owned(),
            d: d.clone(),
            config: self.config.clone(),
            policy: self.policy.clone(),
            control: self.control.clone(),
        };
        job.run()
    }

    pub(super) async fn service_deploy(&self, id: &str, d: &pb::ServiceDeploy) -> Execution {
        self.service_deploy_task(id, d).await
    }
}

impl Job {
    async fn run(self) -> Execution {
        let started = Instant::now();
        match self.deploy().await {
            Ok(done) => {
                let d = &self.d;
                let was = if done.previous.is_empty() {
                    "none".to_owned()
                } else {
                    done.previous.clone()
                };
                let mut detail = format!("deployed {} (was {was}): {}", d.version, done.activated);
                if !done.pruned.is_empty() {
                    detail.push_str(&format!("; removed {}", done.pruned.join(", ")));
                }
                let body = pb::ServiceDeployed {
                    service: d.service.clone(),
                    version: d.version.clone(),
                    previous: done.previous,
                    location: done.location,
                    fetched: done.fetched,
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    command_id: self.id.clone(),
                    rollout_id: d.rollout_id.clone(),
                };
                Execution {
                    result: Ok(detail),
                    bodies: vec![pb::event::Body::ServiceDeployed(body)],
                }
            }
            Err(e) => Execution::done(Err(error_chain(&e))),
        }
    }

    /// The service's entry in the host's file and its `[modules.deploy]`.
    fn declared(&self) -> Result<(ServiceConfig, DeployConfig)> {
        let service = &self.d.service;
        let found = self.config.modules.iter().find_map(|m| match m {
            ModuleConfig::Service(s) if m.name() == service => Some(s.clone()),
            _ => None,
        });
        let cfg = found.ok_or_else(|| DeployError::NoDeploy {
            service: service.clone(),
        })?;
        let deploy = cfg.deploy.clone().ok_or_else(|| DeployError::NoDeploy {
            service: service.clone(),
        })?;
        Ok((cfg, deploy))
    }

    async fn deploy(&self) -> Result<Deployed> {
        let d = &self.d;
        // Checked when the command was accepted; again here, the trust boundary's last word.
        (self.policy)
            .check_service_op(&d.service, RemoteOp::Deploy)
            .map_err(|v| DeployError::Policy {
                rule: v.rule,
                reason: v.reason,
            })?;
        if let Some(why) = version_problem(&d.version) {
            return Err(DeployError::Version {
                version: d.version.clone(),
                why,
            });
        }
        let (cfg, deploy) = self.declared()?;
        if d.ready_samples > 0 && cfg.health.is_empty() {
            return Err(DeployError::NoProbe {
                service: d.service.clone(),
                samples: d.ready_samples,
            });
        }
        match (&deploy.dir, &deploy.image, &cfg.compose) {
            (_, Some(image), Some(section)) => self.deploy_image(image, section).await,
            (Some(dir), _, _) => self.deploy_release(&deploy, &Releases::new(dir)).await,
            _ => Err(DeployError::NoDeploy {
                service: d.service.clone(),
            }),
        }
    }

    /// `process` / `systemd`: the release in place, `current` switched, the service activated.
    async fn deploy_release(&self, deploy: &DeployConfig, releases: &Releases) -> Result<Deployed> {
        let d = &self.d;
        let version = d.version.as_str();
        let artifact = d.artifact.trim();
        let given = d.sha256.trim().to_ascii_lowercase();
        let leftovers = {
            let r = releases.clone();
            blocking(move || r.clean_leftovers()).await?
        };
        if !leftovers.is_empty() {
            tracing::info!(service = %d.service, removed = ?leftovers, "leftovers of an interrupted deploy removed");
        }
        let exists = releases.release(version).is_dir();
        let fetched = !artifact.is_empty() && !exists;
        if exists && !artifact.is_empty() {
            let kept = releases.recorded_sha(version).unwrap_or_default();
            if kept != given {
                return Err(DeployError::OtherContent {
                    version: version.to_owned(),
                    kept: if kept.is_empty() {
                        "unknown".to_owned()
                    } else {
                        kept
                    },
                    given,
                });
            }
        } else if !exists && artifact.is_empty() {
            return Err(DeployError::NotKept {
                version: version.to_owned(),
                kept: kept_list(releases),
            });
        }
        if fetched {
            self.put_in_place(deploy, releases, artifact, &given)
                .await?;
        }
        let previous = {
            let r = releases.clone();
            let v = version.to_owned();
            blocking(move || r.switch(&v)).await??
        }
        .unwrap_or_default();
        let op = match deploy.activate {
            DeployActivate::Restart => ServiceOp::Restart,
            DeployActivate::Reload => ServiceOp::Reload,
        };
        let activated = self.activate(op, &previous).await?;
        let sha = releases.recorded_sha(version).unwrap_or_default();
        let (r, v, prev, keep) = (
            releases.clone(),
            version.to_owned(),
            previous.clone(),
            deploy.keep,
        );
        let pruned = blocking(move || {
            // Activated now: the newest for pruning.
            let _ = r.touch(&v, &sha);
            let prev = (!prev.is_empty()).then_some(prev.as_str());
            let (removed, problems) = r.prune(keep, &v, prev);
            for p in problems {
                tracing::warn!(problem = %p, "old release not removed");
            }
            removed
        })
        .await?;
        Ok(Deployed {
            previous,
            location: releases.release(version).display().to_string(),
            fetched,
            activated,
            pruned,
        })
    }

    /// Fetches and installs `artifact` as the release of this deploy's version.
    async fn put_in_place(
        &self,
        deploy: &DeployConfig,
        releases: &Releases,
        artifact: &str,
        sha: &str,
    ) -> Result<()> {
        let dir = releases.dir().to_owned();
        blocking({
            let dir = dir.clone();
            move || std::fs::create_dir_all(&dir)
        })
        .await?
        .map_err(|source| ReleaseError::Io {
            what: "create",
            path: dir.display().to_string(),
            source,
        })?;
        let limits = Limits {
            max_bytes: deploy.max_artifact_bytes,
            timeout: deploy.fetch_timeout,
        };
        let got = fetch(artifact, sha, &dir, limits).await?;
        let (r, v) = (releases.clone(), self.d.version.clone());
        let path = got.path.clone();
        let max_unpacked = deploy.max_unpacked_bytes;
        let installed =
            blocking(move || install(&r, &v, &got.path, &got.name, &got.sha256, max_unpacked))
                .await;
        let _ = std::fs::remove_file(&path);
        installed??;
        Ok(())
    }

    /// `compose`: the override names `image:<version>`, then `up -d` of the service.
    async fn deploy_image(
        &self,
        image: &str,
        section: &crate::config::ComposeSection,
    ) -> Result<Deployed> {
        let d = &self.d;
        if !d.artifact.trim().is_empty() {
            return Err(DeployError::ArtifactForImage {
                artifact: d.artifact.clone(),
            });
        }
        let file = compose::override_file(section);
        let previous = compose::override_tag(&file).unwrap_or_default();
        let (s, i, v) = (section.clone(), image.to_owned(), d.version.clone());
        blocking(move || compose::write_override(&s, &i, &v))
            .await?
            .map_err(|source| DeployError::Override {
                path: file.display().to_string(),
                source,
            })?;
        let activated = self.activate(ServiceOp::Start, &previous).await?;
        Ok(Deployed {
            previous,
            location: format!("{image}:{}", d.version),
            fetched: false,
            activated,
            pruned: Vec::new(),
        })
    }

    /// `op` through the service module (the lifecycle commands' path and gate).
    async fn activate(&self, op: ServiceOp, previous: &str) -> Result<String> {
        let d = &self.d;
        let outcome = async {
            let wait = (self.control)
                .start_activation(&d.service, op, d.ready_samples)
                .await?;
            wait.await
        };
        outcome.await.map_err(|e| DeployError::Activate {
            version: d.version.clone(),
            previous: if previous.is_empty() {
                "none".to_owned()
            } else {
                previous.to_owned()
            },
            op: op.as_str(),
            reason: error_chain(&e),
        })
    }
}

/// The releases kept, for a message.
fn kept_list(releases: &Releases) -> String {
    let kept = releases.kept();
    if kept.is_empty() {
        "none".to_owned()
    } else {
        kept.join(", ")
    }
}

/// `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DeployError::Task(e.to_string()))
}

#[cfg(test)]
#[path = "deploy_tests.rs"]
mod tests;
