//! `type = "backup"`: the backup module's config (jobs, schedule, compression, retention) and
//! its semantic checks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use opsfleet_proto::subjects::validate_token;
use serde::{Deserialize, Serialize};

use super::default_name;

/// `type = "backup"`: scheduled archives of directories, each with a sha256 manifest.
///
/// ```toml
/// [[modules]]
/// type = "backup"
/// interval = "10s"            # how often schedules are checked and progress is reported
/// [[modules.jobs]]
/// name = "app-data"
/// sources = ["/var/lib/app", "/etc/app-config"]
/// destination = "/var/backups/app"
/// schedule = "24h"
/// compression = "zstd"        # or "gzip"
/// keep_days = 7
/// keep_count = 7
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Instance name; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How often the module checks the job schedules and hands over the events of runs in
    /// progress (a run itself goes on in the background across ticks).
    #[serde(default = "default_backup_interval", with = "humantime_serde")]
    pub interval: Duration,
    pub jobs: Vec<BackupJobConfig>,
}

fn default_backup_interval() -> Duration {
    Duration::from_secs(10)
}

/// Archive compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// `.tar.zst`, zstd level 3 with a frame checksum.
    Zstd,
    /// `.tar.gz`, gzip level 6.
    Gzip,
}

impl Compression {
    /// File name suffix of an archive, including the dot.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".tar.zst",
            Compression::Gzip => ".tar.gz",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }
}

/// One `[[modules.jobs]]` entry.
///
/// Each run writes `<destination>/<name>-<UTC timestamp>.tar.zst` (or `.tar.gz`) and
/// `<same>.manifest.json`. Inside the archive each source appears under its own base name
/// (`/var/lib/app` → `app/...`), so base names must differ within a job.
///
/// **Retention** (applied after every successful run, to this job's archives in
/// `destination`, by the timestamp in their names): an archive is KEPT when it is younger than
/// `keep_days` days (age < keep_days × 24 h; `keep_days = 0` keeps none by age) OR when it is
/// among the `keep_count` newest archives (ties broken by name); every other archive of the job
/// is deleted together with its manifest. `keep_count` is at least 1, so the archive a run just
/// wrote is never pruned. Only complete archives (name parses as this job's AND the manifest is
/// present) are counted or deleted; anything else in `destination` is never touched. A failed
/// run prunes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupJobConfig {
    /// Job name: a subject token; the archive name prefix.
    pub name: String,
    /// Absolute paths of directories or files to archive. Symlinks inside them are archived as
    /// symlinks, never followed.
    pub sources: Vec<PathBuf>,
    /// Absolute directory receiving the archives (created if missing); not inside a source.
    pub destination: PathBuf,
    /// Time between two runs, e.g. `"1h"`. The first run happens when the job has no archive
    /// yet, else `schedule` after the newest archive's timestamp.
    #[serde(default = "default_schedule", with = "humantime_serde")]
    pub schedule: Duration,
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// Keep archives younger than this many days (0: none kept by age).
    #[serde(default = "default_keep_days")]
    pub keep_days: u64,
    /// Keep this many newest archives whatever their age (at least 1).
    #[serde(default = "default_keep_count")]
    pub keep_count: u64,
    /// A `backup_progress` event every this many files...
    #[serde(default = "default_progress_every_files")]
    pub progress_every_files: u64,
    /// ...or when this much time passed since the last one, whichever comes first.
    #[serde(default = "default_progress_every", with = "humantime_serde")]
    pub progress_every: Duration,
}

fn default_schedule() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_compression() -> Compression {
    Compression::Zstd
}
fn default_keep_days() -> u64 {
    7
}
fn default_keep_count() -> u64 {
    7
}
fn default_progress_every_files() -> u64 {
    1000
}
fn default_progress_every() -> Duration {
    Duration::from_secs(10)
}

impl BackupConfig {
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.jobs.is_empty() {
            out.push(("jobs".to_owned(), "at least one job is needed".to_owned()));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, job) in self.jobs.iter().enumerate() {
            let prefix = format!("jobs[{i}]");
            for (k, r) in job.problems() {
                out.push((format!("{prefix}.{k}"), r));
            }
            if let Some(first) = seen.get(job.name.as_str()) {
                out.push((
                    format!("{prefix}.name"),
                    format!("duplicate job name {:?} (also jobs[{first}])", job.name),
                ));
            } else {
                seen.insert(&job.name, i);
            }
        }
        out
    }
}

impl BackupJobConfig {
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: String, r: String| out.push((k, r));
        if let Err(e) = validate_token(&self.name) {
            push(
                "name".into(),
                format!("{:?} is not a subject token: {e}", self.name),
            );
        }
        if self.sources.is_empty() {
            push("sources".into(), "at least one source is needed".into());
        }
        let mut bases: HashMap<String, usize> = HashMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = format!("sources[{i}]");
            if !s.is_absolute() {
                push(key, format!("must be an absolute path: {s:?}"));
                continue;
            }
            let Some(base) = s.file_name().map(|b| b.to_string_lossy().into_owned()) else {
                push(key, format!("needs a final path component: {s:?}"));
                continue;
            };
            if let Some(first) = bases.get(&base) {
                push(
                    key,
                    format!(
                        "base name {base:?} also used by sources[{first}]; each source is archived under its base name"
                    ),
                );
            } else {
                bases.insert(base, i);
            }
            if self.destination.is_absolute() && self.destination.starts_with(s) {
                push(
                    "destination".into(),
                    format!("is inside sources[{i}] ({s:?}); a run would archive its own archives"),
                );
            }
        }
        if !self.destination.is_absolute() {
            push(
                "destination".into(),
                format!("must be an absolute path: {:?}", self.destination),
            );
        }
        if self.schedule.is_zero() {
            push("schedule".into(), "must be greater than 0".into());
        }
        if self.keep_count == 0 {
            push(
                "keep_count".into(),
                "must be at least 1 (the newest archive is always kept)".into(),
            );
        }
        if self.progress_every_files == 0 {
            push("progress_every_files".into(), "must be at least 1".into());
        }
        if self.progress_every.is_zero() {
            push("progress_every".into(), "must be greater than 0".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_str, ModuleConfig};

    const HEAD: &str = "host = \"db-01\"\n[[modules]]\ntype = \"backup\"\n";

    #[test]
    fn a_job_parses_with_defaults() {
        let text = format!(
            "{HEAD}[[modules.jobs]]\nname = \"pg\"\nsources = [\"/var/lib/pg\"]\ndestination = \"/var/backups/pg\"\n"
        );
        let cfg = parse_str(&text).expect("valid");
        let ModuleConfig::Backup(b) = &cfg.modules[0] else {
            panic!("backup")
        };
        assert_eq!(cfg.modules[0].name(), "backup");
        assert_eq!(b.interval, super::default_backup_interval());
        let j = &b.jobs[0];
        assert_eq!(j.compression, super::Compression::Zstd);
        assert_eq!((j.keep_days, j.keep_count), (7, 7));
        assert_eq!(j.schedule, super::default_schedule());
        assert_eq!(j.progress_every_files, 1000);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = format!(
            "{HEAD}[[modules.jobs]]\nname = \"bad name\"\nsources = [\"rel\", \"/a/x\", \"/b/x\"]\ndestination = \"/a/x/out\"\nschedule = \"0s\"\nkeep_count = 0\ncompression = \"zstd\"\n[[modules.jobs]]\nname = \"ok\"\nsources = []\ndestination = \"dest\"\nprogress_every_files = 0\n[[modules.jobs]]\nname = \"ok\"\nsources = [\"/c\"]\ndestination = \"/d\"\n"
        );
        let problems = parse_str(&text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "modules[0].jobs[0].name",
            "modules[0].jobs[0].sources[0]",
            "modules[0].jobs[0].sources[2]",
            "modules[0].jobs[0].destination",
            "modules[0].jobs[0].schedule",
            "modules[0].jobs[0].keep_count",
            "modules[0].jobs[1].sources",
            "modules[0].jobs[1].destination",
            "modules[0].jobs[1].progress_every_files",
            "modules[0].jobs[2].name",
        ] {
            assert!(keys.contains(&k), "{k} missing from {problems:#?}");
        }
        // Lines point into the file.
        assert!(problems.iter().all(|p| p.line.is_some()), "{problems:#?}");
    }

    #[test]
    fn unknown_keys_and_compressions_are_refused() {
        let text = format!(
            "{HEAD}[[modules.jobs]]\nname = \"a\"\nsources = [\"/s\"]\ndestination = \"/d\"\ncompression = \"xz\"\n"
        );
        let problems = parse_str(&text).expect_err("invalid");
        // The toml error path names the field (without the array index).
        assert!(
            problems[0].key.starts_with("modules[0].jobs"),
            "{problems:#?}"
        );
        assert!(problems[0].key.ends_with("compression"), "{problems:#?}");
        assert!(problems[0].reason.contains("xz"), "{problems:#?}");
        let text = format!("{HEAD}jobs = []\nkeep = 1\n");
        let problems = parse_str(&text).expect_err("invalid");
        assert_eq!(problems[0].key, "modules[0].keep", "{problems:#?}");
    }
}
