//! `type = "backup"`: the backup module's config (jobs, schedule, compression, retention) and
//! its semantic checks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use opsfleet_proto::subjects::validate_token;
use serde::{Deserialize, Serialize};

use super::default_name;

mod remote;
mod verify;
pub use remote::{credentials_file_problem, RemoteConfig, RemoteKind};
pub use verify::VerifyCheckConfig;

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
    /// A command run before each archive is written (e.g. a database dump); its output file
    /// is archived with the sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_backup: Option<PreBackupConfig>,
    /// Where every archive is copied after the run (see `RemoteConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteConfig>,
    /// How often a restore test runs: `"daily"`, `"weekly"`, `"monthly"` or a duration
    /// (`"12h"`); none by default. The newest archive (from `remote` when the job has one)
    /// is restored into a scratch directory under the agent's `data_dir`, verified against its
    /// manifest, `verify_check` runs on it, and the directory is removed (`restore_tested`).
    /// The first test is due one period after the job's last test (persisted), or after the
    /// module started when it never had one.
    #[serde(
        default,
        with = "verify::period",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_restore: Option<Duration>,
    /// The command a restore test runs on the restored files (see `VerifyCheckConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_check: Option<VerifyCheckConfig>,
}

/// `[modules.jobs.pre_backup]`: a command (argv, no shell) run before each archive of the job.
///
/// ```toml
/// [modules.jobs.pre_backup]
/// command = ["/usr/bin/pg_dump", "-F", "c", "-f", "{output}", "app"]
/// output = "app.dump"     # the file's name in the archive (next to the sources' base names)
/// timeout = "30m"
/// ```
///
/// The agent makes a private (0700) scratch directory `<destination>/.<job>.pre-backup/`, runs
/// the command there in its own process group, stdin and stdout closed, with `{output}` in any
/// argument replaced by the output file's path (also in the env var `OPSFLEET_BACKUP_OUTPUT`;
/// `OPSFLEET_BACKUP_JOB` holds the job's name). Exit 0 with the file written: the file is
/// archived as `<output>`. A non-zero exit, a signal, the timeout (the whole group is killed)
/// or a missing output file fails the run (`backup_failed` with the end of its stderr). The
/// scratch directory is removed after every run, whatever happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreBackupConfig {
    /// Program (absolute path) and arguments.
    pub command: Vec<String>,
    /// Name of the output file in the archive: one plain file name.
    pub output: String,
    /// The command is killed (its whole process group) when it runs longer.
    #[serde(default = "default_pre_backup_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// The placeholder replaced by the output file's path in `pre_backup.command`.
pub const PRE_BACKUP_OUTPUT_PLACEHOLDER: &str = "{output}";

fn default_pre_backup_timeout() -> Duration {
    Duration::from_secs(3600)
}

impl PreBackupConfig {
    /// Problems with keys relative to `pre_backup`; `bases` are the job's source base names.
    fn problems(&self, bases: &HashMap<String, usize>) -> Vec<(String, String)> {
        let mut out = verify::command_problems(&self.command);
        let o = &self.output;
        let plain = !o.is_empty()
            && o != "."
            && o != ".."
            && !o.contains('/')
            && !o.contains('\0')
            && !o.contains(PRE_BACKUP_OUTPUT_PLACEHOLDER);
        if !plain {
            out.push((
                "output".into(),
                format!("must be one plain file name (no '/', not '.' or '..'): {o:?}"),
            ));
        } else if let Some(i) = bases.get(o) {
            out.push((
                "output".into(),
                format!(
                    "{o:?} is also the base name of sources[{i}]; names in the archive must differ"
                ),
            ));
        }
        if self.timeout.is_zero() {
            out.push(("timeout".into(), "must be greater than 0".into()));
        }
        out
    }
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
        if let Some(pre) = &self.pre_backup {
            for (k, r) in pre.problems(&bases) {
                push(format!("pre_backup.{k}"), r);
            }
        }
        if let Some(remote) = &self.remote {
            for (k, r) in remote.problems(&self.destination, &self.sources) {
                push(format!("remote.{k}"), r);
            }
        }
        out.extend(verify::verify_problems(
            self.verify_restore,
            self.verify_check.as_ref(),
        ));
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
    fn a_pre_backup_step_parses_with_its_default_timeout() {
        let text = format!(
            "{HEAD}[[modules.jobs]]\nname = \"pg\"\nsources = [\"/etc/pg\"]\ndestination = \"/var/backups/pg\"\n\
             [modules.jobs.pre_backup]\ncommand = [\"/usr/bin/pg_dump\", \"-F\", \"c\", \"-f\", \"{{output}}\"]\noutput = \"app.dump\"\n"
        );
        let cfg = parse_str(&text).expect("valid");
        let ModuleConfig::Backup(b) = &cfg.modules[0] else {
            panic!("backup")
        };
        let pre = b.jobs[0].pre_backup.as_ref().expect("pre_backup");
        assert_eq!(pre.command[4], super::PRE_BACKUP_OUTPUT_PLACEHOLDER);
        assert_eq!(pre.output, "app.dump");
        assert_eq!(pre.timeout, super::default_pre_backup_timeout());
    }

    #[test]
    fn every_pre_backup_problem_is_reported() {
        let job = |name: &str, pre: &str| {
            format!(
                "[[modules.jobs]]\nname = \"{name}\"\nsources = [\"/srv/app.dump\"]\ndestination = \"/d\"\n[modules.jobs.pre_backup]\n{pre}\n"
            )
        };
        let text = format!(
            "{HEAD}{}{}{}",
            job(
                "a",
                "command = [\"pg_dump\"]\noutput = \"a/b\"\ntimeout = \"0s\""
            ),
            job("b", "command = []\noutput = \"app.dump\""),
            job("c", "command = [\"/bin/true\"]\noutput = \"..\""),
        );
        let problems = parse_str(&text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        let want = [
            "modules[0].jobs[0].pre_backup.command[0]",
            "modules[0].jobs[0].pre_backup.output",
            "modules[0].jobs[0].pre_backup.timeout",
            "modules[0].jobs[1].pre_backup.command",
            "modules[0].jobs[1].pre_backup.output",
            "modules[0].jobs[2].pre_backup.output",
        ];
        assert_eq!(keys.len(), want.len(), "{problems:#?}");
        for k in want {
            assert!(keys.contains(&k), "{k} missing from {problems:#?}");
        }
        let reason = |k: &str| {
            problems
                .iter()
                .find(|p| p.key == k)
                .map(|p| p.reason.clone())
                .unwrap_or_default()
        };
        assert!(reason(want[0]).contains("absolute"), "{problems:#?}");
        assert!(reason(want[4]).contains("sources[0]"), "{problems:#?}");
        // Unknown keys in the table are refused too.
        let text = format!(
            "{HEAD}{}",
            job(
                "a",
                "command = [\"/bin/true\"]\noutput = \"o\"\nshell = true"
            )
        );
        let problems = parse_str(&text).expect_err("invalid");
        assert!(problems[0].key.ends_with("shell"), "{problems:#?}");
    }

    #[test]
    fn every_remote_problem_is_reported() {
        let job = |name: &str, remote: &str| {
            format!(
                "[[modules.jobs]]\nname = \"{name}\"\nsources = [\"/srv/data\"]\ndestination = \"/var/backups/app\"\n[modules.jobs.remote]\ntype = \"path\"\n{remote}\n"
            )
        };
        let text = format!(
            "{HEAD}{}{}{}{}",
            job("a", "path = \"nas\"\nreconcile_every = \"0s\""),
            job("b", "path = \"/var/backups/app/copy\""),
            job("c", "path = \"/srv/data/copy\""),
            job("ok", "path = \"/mnt/nas/app\""),
        );
        let problems = parse_str(&text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        let want = [
            "modules[0].jobs[0].remote.path",
            "modules[0].jobs[0].remote.reconcile_every",
            "modules[0].jobs[1].remote.path",
            "modules[0].jobs[2].remote.path",
        ];
        assert_eq!(keys.len(), want.len(), "{problems:#?}");
        for k in want {
            assert!(keys.contains(&k), "{k} missing from {problems:#?}");
        }
        // An unknown kind or key is refused by the parser.
        let text = format!("{HEAD}{}", job("a", "path = \"/mnt/x\"\nbucket = \"b\""));
        let problems = parse_str(&text).expect_err("invalid");
        assert!(problems[0].key.ends_with("bucket"), "{problems:#?}");
        let text =
            format!("{HEAD}{}", job("a", "path = \"/mnt/x\"")).replace("\"path\"\n", "\"ftp\"\n");
        let problems = parse_str(&text).expect_err("invalid");
        assert!(
            problems
                .iter()
                .any(|p| p.key.ends_with("remote.type") && p.reason.contains("ftp")),
            "{problems:#?}"
        );
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
