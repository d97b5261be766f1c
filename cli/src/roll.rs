//! `opsctl service start|stop|restart|reload|deploy`: the verb's flags, which hosts have the service
//! (asked of `ops.api.services`), and the rolling plan (pure): at most `--max-parallel` hosts
//! at a time, in host order, stopping at the first batch that does not complete on every host.
//! Issuing and waiting per batch is opsctl's `roll.rs`.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;
use opsfleet_proto::api::{CommandAction, ServicesRequest};

use crate::client::{Api, ClientError};
use crate::paging::fetch_all;

/// Which lifecycle action (or a deploy, rolled the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceVerb {
    Start,
    Stop,
    Restart,
    Reload,
    Deploy(DeploySpec),
}

/// What `opsctl service deploy` puts in place.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DeploySpec {
    /// The version: a release name (`[A-Za-z0-9._+-]`, at most 128 characters; a compose
    /// service: the image tag). Without --artifact the host must keep this release.
    #[arg(long)]
    pub version: String,
    /// Where each host gets the release: an http(s) URL or an absolute path on the host; a
    /// `.tar.gz`/`.tgz` is unpacked, anything else is one executable file. Needs --sha256.
    #[arg(long, requires = "sha256")]
    pub artifact: Option<String>,
    /// The artifact's sha256 (hex); a host refuses an artifact that does not match.
    #[arg(long, requires = "artifact")]
    pub sha256: Option<String>,
    /// Done on a host only after this many consecutive ready results of the service's own
    /// health probe after the restart (within its ready_timeout); default: ready once.
    #[arg(long)]
    pub ready_samples: Option<u32>,
}

impl DeploySpec {
    /// Why the flags cannot make a deploy a host accepts: an artifact that is neither an
    /// http(s) URL nor an absolute path (a relative one would be resolved on each host, by
    /// nobody's choice). Pure.
    pub fn problem(&self) -> Option<String> {
        let artifact = self.artifact.as_deref()?;
        let url = artifact.starts_with("http://") || artifact.starts_with("https://");
        (!url && !std::path::Path::new(artifact).is_absolute()).then(|| {
            format!(
                "--artifact {artifact:?} is neither an http(s) URL nor an absolute path on the \
                 hosts (e.g. https://repo.local/app-1.4.2.tar.gz or /srv/dist/app-1.4.2.tgz)"
            )
        })
    }
}

impl ServiceVerb {
    pub fn request(&self, service: String) -> CommandAction {
        match self {
            ServiceVerb::Start => CommandAction::ServiceStart { service },
            ServiceVerb::Stop => CommandAction::ServiceStop { service },
            ServiceVerb::Restart => CommandAction::ServiceRestart { service },
            ServiceVerb::Reload => CommandAction::ServiceReload { service },
            ServiceVerb::Deploy(d) => CommandAction::ServiceDeploy {
                service,
                version: d.version.clone(),
                artifact: d.artifact.clone(),
                sha256: d.sha256.clone(),
                ready_samples: d.ready_samples,
            },
        }
    }

    /// How long a batch is waited for when `--wait` is not given: a start, restart or reload
    /// is answered only once the service is ready (within its `ready_timeout`, 60s by
    /// default), a stop within its `stop_grace` (10s by default).
    pub fn default_wait(&self) -> std::time::Duration {
        match self {
            ServiceVerb::Stop => std::time::Duration::from_secs(60),
            ServiceVerb::Start | ServiceVerb::Restart | ServiceVerb::Reload => {
                std::time::Duration::from_secs(120)
            }
            // A download (5m at most by default) before the restart and its gate.
            ServiceVerb::Deploy(_) => std::time::Duration::from_secs(600),
        }
    }
}

/// The service and how many hosts at a time.
#[derive(Args, Debug, Clone)]
pub struct ServiceOpArgs {
    /// The service (its `service` module's name in the agents' configs, e.g. `app`).
    pub service: String,
    /// At most this many hosts at a time: the next hosts get the command only once every
    /// host of the batch answered done (for start, restart and reload: running and ready by
    /// the service's own health probes). The first batch that does not complete stops the
    /// roll; the hosts not attempted are listed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
}

/// Why the hosts could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum RollError {
    #[error("cannot list the hosts that have service {service:?}")]
    List {
        service: String,
        #[source]
        source: ClientError,
    },
    #[error("no host {what} has service {service:?} (see `opsctl services`)")]
    NoHost { service: String, what: String },
}

/// Whether a `--host` value is a glob (`web-*`) rather than a name.
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The hosts to roll over, ascending: those with `service` that `--host` patterns, `--label`
/// or `--all` select; a host named exactly is kept even without the service, so the
/// coordinator refuses it saying why.
pub async fn service_hosts(
    api: &Api,
    service: &str,
    hosts: &[String],
    labels: &BTreeMap<String, String>,
    all: bool,
) -> Result<Vec<String>, RollError> {
    let list = |host: Option<String>, labels: BTreeMap<String, String>| {
        let req = ServicesRequest {
            host,
            service: Some(service.to_owned()),
            labels,
            ..Default::default()
        };
        async move {
            fetch_all(api, None, req, None)
                .await
                .map(|r| r.services.into_iter().map(|s| s.host).collect::<Vec<_>>())
                .map_err(|source| RollError::List {
                    service: service.to_owned(),
                    source,
                })
        }
    };
    let mut out = BTreeSet::new();
    for pattern in hosts {
        let found = list(Some(pattern.clone()), BTreeMap::new()).await?;
        if found.is_empty() && is_glob(pattern) {
            return Err(RollError::NoHost {
                service: service.to_owned(),
                what: format!("matching {pattern:?}"),
            });
        }
        if found.is_empty() {
            out.insert(pattern.clone());
        }
        out.extend(found);
    }
    if all || !labels.is_empty() {
        let found = list(None, labels.clone()).await?;
        if found.is_empty() {
            let what = if all {
                "known".to_owned()
            } else {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("labelled {}", l.join(","))
            };
            return Err(RollError::NoHost {
                service: service.to_owned(),
                what,
            });
        }
        out.extend(found);
    }
    Ok(out.into_iter().collect())
}

/// The batches of a roll: `hosts` in order, at most `max_parallel` each (at least 1). Pure.
pub fn batches(hosts: &[String], max_parallel: usize) -> Vec<Vec<String>> {
    hosts
        .chunks(max_parallel.max(1))
        .map(<[String]>::to_vec)
        .collect()
}

/// Where a roll stands after its batches' outcomes (`Ok` = every host of the batch
/// completed, `Err(reason)` = the first failure in it, naming the host): the hosts not
/// attempted and why, once a batch failed. Pure.
pub fn not_attempted(
    plan: &[Vec<String>],
    outcomes: &[Result<(), String>],
) -> Option<(String, Vec<String>)> {
    let failed = outcomes.iter().position(Result::is_err)?;
    let reason = outcomes[failed].clone().err().unwrap_or_default();
    let rest = plan.iter().skip(failed + 1).flatten().cloned().collect();
    Some((reason, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("web-{i:02}")).collect()
    }

    #[test]
    fn batches_hold_at_most_max_parallel_hosts_in_order() {
        let b = batches(&hosts(5), 2);
        assert_eq!(
            b,
            vec![
                vec!["web-01".to_owned(), "web-02".to_owned()],
                vec!["web-03".to_owned(), "web-04".to_owned()],
                vec!["web-05".to_owned()],
            ]
        );
        assert_eq!(batches(&hosts(3), 1).len(), 3);
        assert_eq!(batches(&hosts(3), 0).len(), 3, "0 is taken as 1");
        assert_eq!(batches(&hosts(3), 10).len(), 1);
        assert!(batches(&[], 1).is_empty());
    }

    #[test]
    fn a_deploys_artifact_is_a_url_or_an_absolute_path() {
        let spec = |a: Option<&str>| DeploySpec {
            version: "1.0".to_owned(),
            artifact: a.map(str::to_owned),
            sha256: a.map(|_| "ab".to_owned()),
            ready_samples: None,
        };
        assert_eq!(spec(None).problem(), None);
        assert_eq!(spec(Some("https://repo/app.tgz")).problem(), None);
        assert_eq!(spec(Some("/srv/dist/app.tgz")).problem(), None);
        let why = spec(Some("dist/app.tgz")).problem().expect("relative");
        assert!(
            why.contains("neither an http(s) URL nor an absolute path"),
            "{why}"
        );
    }

    #[test]
    fn the_roll_stops_at_the_first_failed_batch() {
        let plan = batches(&hosts(4), 1);
        assert_eq!(not_attempted(&plan, &[Ok(()), Ok(())]), None);
        let stopped = not_attempted(
            &plan,
            &[Ok(()), Err("web-02 failed: not ready after 1m".to_owned())],
        );
        assert_eq!(
            stopped,
            Some((
                "web-02 failed: not ready after 1m".to_owned(),
                vec!["web-03".to_owned(), "web-04".to_owned()]
            ))
        );
        let last = not_attempted(&plan, &[Ok(()), Ok(()), Ok(()), Err("x".to_owned())]);
        assert_eq!(last, Some(("x".to_owned(), Vec::new())));
    }
}
