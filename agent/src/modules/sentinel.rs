//! The sentinel module: mtime freshness of files against a max age (fresh / stale / missing),
//! one `SentinelState` sample per path and run, marked `changed` on transitions.

use opsfleet_report::ErrorChain;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use opsfleet_proto::pb;
use tracing::warn;

use super::{Module, ModuleCtx, ModuleError};
use crate::config::SentinelConfig;
use opsfleet_proto::time::unix_ms;

/// What one stat of a sentinel file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The file exists with this mtime.
    Present { mtime: SystemTime },
    /// No such file (or a component of its path is missing).
    Missing,
}

/// Status and age of one observation (pure). A future mtime (clock skew) counts as age 0.
pub fn status_of(
    observed: Observed,
    now: SystemTime,
    max_age: Duration,
) -> (pb::SentinelStatus, Duration) {
    match observed {
        Observed::Missing => (pb::SentinelStatus::Missing, Duration::ZERO),
        Observed::Present { mtime } => {
            let age = now.duration_since(mtime).unwrap_or(Duration::ZERO);
            let status = if age > max_age {
                pb::SentinelStatus::Stale
            } else {
                pb::SentinelStatus::Fresh
            };
            (status, age)
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The sample for one path given the previous status (pure). Like the disk module, the first
/// sample after a start has no previous status and is not a transition.
pub fn sentinel_body(
    path: &str,
    observed: Observed,
    prev: Option<pb::SentinelStatus>,
    now: SystemTime,
    max_age: Duration,
) -> pb::SentinelState {
    let (status, age) = status_of(observed, now, max_age);
    pb::SentinelState {
        path: path.to_owned(),
        status: status as i32,
        previous: prev.unwrap_or(pb::SentinelStatus::Unspecified) as i32,
        changed: prev.is_some_and(|p| p != status),
        mtime_unix_ms: match observed {
            Observed::Present { mtime } => unix_ms(mtime),
            Observed::Missing => 0,
        },
        age_ms: ms(age),
        max_age_ms: ms(max_age),
    }
}

/// stat of one path: missing is a state, any other error is an error.
pub fn observe(path: &std::path::Path) -> Result<Observed, std::io::Error> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Observed::Present {
            mtime: m.modified()?,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Observed::Missing),
        Err(e) => Err(e),
    }
}

pub struct SentinelModule {
    paths: Vec<PathBuf>,
    max_age: Duration,
    statuses: HashMap<PathBuf, pb::SentinelStatus>,
}

impl SentinelModule {
    pub fn new(cfg: &SentinelConfig) -> Self {
        SentinelModule {
            paths: cfg.paths.clone(),
            max_age: cfg.max_age,
            statuses: HashMap::new(),
        }
    }
}

#[async_trait::async_trait]
impl Module for SentinelModule {
    fn kind(&self) -> &'static str {
        "sentinel"
    }

    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        let paths = self.paths.clone();
        // stat can hang on a dead network mount: keep it off the async workers.
        let seen = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|p| {
                    let r = observe(&p);
                    (p, r)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ModuleError::Other(format!("sentinel stat task failed: {e}")))?;
        let mut bodies = Vec::new();
        let mut first_err = None;
        for (path, res) in seen {
            let shown = path.display().to_string();
            match res {
                Ok(observed) => {
                    let prev = self.statuses.get(&path).copied();
                    let body = sentinel_body(&shown, observed, prev, ctx.now, self.max_age);
                    self.statuses.insert(path, body.status());
                    bodies.push(pb::event::Body::Sentinel(body));
                }
                Err(e) => {
                    warn!(path = %shown, error = %ErrorChain(&e), "cannot stat sentinel file");
                    first_err.get_or_insert(ModuleError::Other(format!(
                        "cannot stat sentinel {shown}: {e}"
                    )));
                }
            }
        }
        match first_err {
            Some(e) if bodies.is_empty() => Err(e),
            _ => Ok(bodies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(3600);

    fn ctx(now: SystemTime) -> ModuleCtx {
        ModuleCtx {
            now,
            ..ModuleCtx::empty()
        }
    }

    fn only(bodies: Vec<pb::event::Body>) -> pb::SentinelState {
        match bodies.as_slice() {
            [pb::event::Body::Sentinel(s)] => s.clone(),
            other => panic!("expected one sentinel body, got {other:?}"),
        }
    }

    #[test]
    fn status_is_fresh_up_to_max_age_then_stale() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |age: u64| Observed::Present {
            mtime: now - Duration::from_secs(age),
        };
        assert_eq!(status_of(at(0), now, MAX).0, pb::SentinelStatus::Fresh);
        assert_eq!(status_of(at(3600), now, MAX).0, pb::SentinelStatus::Fresh);
        assert_eq!(status_of(at(3601), now, MAX).0, pb::SentinelStatus::Stale);
        assert_eq!(
            status_of(Observed::Missing, now, MAX).0,
            pb::SentinelStatus::Missing
        );
        // A future mtime is fresh with age 0.
        let future = Observed::Present {
            mtime: now + Duration::from_secs(60),
        };
        assert_eq!(
            status_of(future, now, MAX),
            (pb::SentinelStatus::Fresh, Duration::ZERO)
        );
    }

    #[test]
    fn body_marks_transitions_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let fresh = Observed::Present { mtime: now };
        let first = sentinel_body("/x", fresh, None, now, MAX);
        assert!(!first.changed);
        assert_eq!(first.previous, pb::SentinelStatus::Unspecified as i32);
        let same = sentinel_body("/x", fresh, Some(pb::SentinelStatus::Fresh), now, MAX);
        assert!(!same.changed);
        let gone = sentinel_body(
            "/x",
            Observed::Missing,
            Some(pb::SentinelStatus::Fresh),
            now,
            MAX,
        );
        assert!(gone.changed);
        assert_eq!(gone.status, pb::SentinelStatus::Missing as i32);
        assert_eq!(gone.previous, pb::SentinelStatus::Fresh as i32);
        assert_eq!(gone.mtime_unix_ms, 0);
        assert_eq!(gone.max_age_ms, 3_600_000);
    }

    /// Real file: fresh → stale (mtime set back) → missing (removed) → fresh (recreated).
    #[tokio::test]
    async fn fresh_stale_missing_transitions_on_a_real_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("last-ok");
        std::fs::write(&path, b"ok").expect("write");
        let mut m = SentinelModule::new(&SentinelConfig {
            name: None,
            interval: Duration::from_secs(60),
            paths: vec![path.clone()],
            max_age: MAX,
        });
        let now = SystemTime::now();
        let s = only(m.run_once(&ctx(now)).await.expect("run"));
        assert_eq!((s.status(), s.changed), (pb::SentinelStatus::Fresh, false));
        assert!(s.age_ms < 60_000, "{s:?}");

        // Two hours old.
        let old = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        old.set_modified(now - Duration::from_secs(7200))
            .expect("set mtime");
        drop(old);
        let s = only(m.run_once(&ctx(now)).await.expect("run"));
        assert_eq!(
            (s.status(), s.previous(), s.changed),
            (pb::SentinelStatus::Stale, pb::SentinelStatus::Fresh, true)
        );
        assert!(s.age_ms >= 7_200_000);
        // Still stale: a sample, not a transition.
        let s = only(m.run_once(&ctx(now)).await.expect("run"));
        assert_eq!((s.status(), s.changed), (pb::SentinelStatus::Stale, false));

        std::fs::remove_file(&path).expect("rm");
        let s = only(m.run_once(&ctx(now)).await.expect("run"));
        assert_eq!(
            (s.status(), s.previous(), s.changed),
            (pb::SentinelStatus::Missing, pb::SentinelStatus::Stale, true)
        );

        std::fs::write(&path, b"ok again").expect("write");
        let s = only(m.run_once(&ctx(SystemTime::now())).await.expect("run"));
        assert_eq!(
            (s.status(), s.previous(), s.changed),
            (pb::SentinelStatus::Fresh, pb::SentinelStatus::Missing, true)
        );
    }

    #[tokio::test]
    async fn a_missing_directory_is_missing_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = SentinelModule::new(&SentinelConfig {
            name: None,
            interval: Duration::from_secs(60),
            paths: vec![dir.path().join("no/such/file")],
            max_age: MAX,
        });
        let s = only(m.run_once(&ctx(SystemTime::now())).await.expect("run"));
        assert_eq!(s.status(), pb::SentinelStatus::Missing);
    }
}
