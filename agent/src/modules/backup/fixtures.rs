//! Fixtures of the backup module's tests: a job with the usual test settings, a `path`
//! remote, and ticking a module until a body shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use opsfleet_proto::pb;

use super::BackupModule;
use crate::config::{BackupJobConfig, Compression, RemoteConfig, RemoteKind};
use crate::modules::{Module, ModuleCtx};

/// Job `name` over `sources`, archives in `tmp/backups`: hourly, zstd, 7 days and 7 kept,
/// nothing else declared.
pub fn job(tmp: &Path, name: &str, sources: Vec<PathBuf>) -> BackupJobConfig {
    BackupJobConfig {
        name: name.to_owned(),
        sources,
        destination: tmp.join("backups"),
        schedule: Duration::from_secs(3600),
        compression: Compression::Zstd,
        keep_days: 7,
        keep_count: 7,
        progress_every_files: 1000,
        progress_every: Duration::from_secs(10),
        pre_backup: None,
        remote: None,
        verify_restore: None,
        verify_check: None,
    }
}

/// A `path` remote at `path`, reconciled hourly.
pub fn path_remote(path: PathBuf) -> RemoteConfig {
    RemoteConfig {
        kind: RemoteKind::Path,
        path,
        bucket: String::new(),
        prefix: String::new(),
        endpoint: None,
        region: "us-east-1".into(),
        credentials_file: None,
        allow_http: false,
        reconcile_every: Duration::from_secs(3600),
    }
}

/// Ticks `m` with `ctx` (every 25 ms, 10 s at most) until a body matching `done` comes out;
/// returns every body seen.
pub async fn tick_until(
    m: &mut BackupModule,
    ctx: &ModuleCtx,
    done: impl Fn(&pb::event::Body) -> bool,
) -> Vec<pb::event::Body> {
    let mut all = Vec::new();
    for _ in 0..400 {
        let bodies = m.run_once(ctx).await.expect("tick");
        let found = bodies.iter().any(&done);
        all.extend(bodies);
        if found {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the awaited body did not come: {all:?}");
}
