//! What a restore reports: the success report, the details of a corrupt archive, why a
//! restore did not happen, and their event bodies and `--output json` form.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use opsfleet_proto::pb;
use opsfleet_report::error_chain;
use serde::Serialize;

/// What a successful restore put into the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub job: String,
    pub archive: String,
    pub target: PathBuf,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub duration_ms: u64,
}

impl RestoreReport {
    pub fn to_body(&self) -> pb::RestoreCompleted {
        pb::RestoreCompleted {
            job: self.job.clone(),
            archive: self.archive.clone(),
            target: self.target.display().to_string(),
            files: self.files,
            bytes: self.bytes,
        }
    }
}

/// What is wrong with one entry of a corrupt archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// Content differs from the manifest.
    Sha256Mismatch {
        expected: String,
        actual: String,
    },
    SizeMismatch {
        expected: u64,
        actual: u64,
    },
    /// The archive could not be decoded while this entry was read.
    Unreadable {
        reason: String,
    },
    /// In the manifest, not in the archive.
    Missing,
    /// In the archive, not in the manifest.
    Extra,
    /// Twice in the archive.
    Duplicate,
    /// Type (or symlink target) differs from the manifest.
    TypeMismatch {
        expected: String,
        actual: String,
    },
}

/// One corrupt entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    pub path: String,
    #[serde(flatten)]
    pub problem: Problem,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Sha256Mismatch { .. } => write!(f, "{} (sha256 mismatch)", self.path),
            Problem::SizeMismatch { expected, actual } => {
                write!(f, "{} (size {actual}, manifest says {expected})", self.path)
            }
            Problem::Unreadable { reason } => write!(f, "{} (unreadable: {reason})", self.path),
            Problem::Missing => write!(f, "{} (missing from archive)", self.path),
            Problem::Extra => write!(f, "{} (not in manifest)", self.path),
            Problem::Duplicate => write!(f, "{} (duplicate entry)", self.path),
            Problem::TypeMismatch { expected, actual } => {
                write!(f, "{} ({actual}, manifest says {expected})", self.path)
            }
        }
    }
}

/// Details of a corrupt archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Corruption {
    /// Whether the archive file's sha256 equals the manifest's.
    pub archive_sha256_ok: bool,
    /// Why the archive stream stopped early, if it did.
    pub stream_error: Option<String>,
    /// The first damaged entry (the restore stops there), or, when the stream ended or broke
    /// between entries, the manifest's entries never reached.
    pub problems: Vec<FileProblem>,
}

impl Corruption {
    /// Paths of damaged entries (missing ones last).
    pub fn corrupt_files(&self) -> Vec<String> {
        let mut damaged: Vec<&FileProblem> = self
            .problems
            .iter()
            .filter(|p| p.problem != Problem::Missing)
            .collect();
        damaged.extend(
            self.problems
                .iter()
                .filter(|p| p.problem == Problem::Missing),
        );
        damaged.into_iter().map(|p| p.path.clone()).collect()
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.archive_sha256_ok {
            parts.push("archive sha256 differs from the manifest".to_owned());
        }
        if let Some(e) = &self.stream_error {
            parts.push(format!("archive stream broken: {e}"));
        }
        let damaged: Vec<&FileProblem> = self
            .problems
            .iter()
            .filter(|p| p.problem != Problem::Missing)
            .collect();
        let missing = self.problems.len() - damaged.len();
        if !damaged.is_empty() {
            const SHOWN: usize = 10;
            let mut list: Vec<String> = damaged.iter().take(SHOWN).map(|p| p.to_string()).collect();
            if damaged.len() > SHOWN {
                list.push(format!("and {} more", damaged.len() - SHOWN));
            }
            // The restore stops at the first damaged entry, so there is one.
            let what = if damaged.len() == 1 {
                "stopped at corrupt file"
            } else {
                "corrupt files:"
            };
            parts.push(format!("{what} {}", list.join(", ")));
        }
        if missing > 0 {
            parts.push(format!("{missing} entries of the manifest not restored"));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Why a restore did not happen. In every case the target is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("job {job}: no complete archive in {}", dest.display())]
    NoArchive { job: String, dest: PathBuf },
    #[error("job {job}: {name:?} is not an archive name of this job")]
    BadArchiveName { job: String, name: String },
    #[error("cannot list archives in {}", dest.display())]
    List {
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot read manifest", path.display())]
    ManifestRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: invalid manifest", path.display())]
    ManifestInvalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: manifest is for {found:?}", path.display())]
    ManifestMismatch { path: PathBuf, found: String },
    #[error("{}: cannot read archive", path.display())]
    ArchiveRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive {archive} is corrupt: {corruption}; nothing restored, target unchanged")]
    Corrupt {
        archive: String,
        corruption: Corruption,
    },
    #[error("archive {archive}: refused entry {entry:?}: {reason}")]
    UnsafeEntry {
        archive: String,
        entry: String,
        reason: String,
    },
    #[error("job {job}: no such local archive; fetching it from {destination} failed")]
    Remote {
        job: String,
        destination: String,
        #[source]
        source: Box<super::remote::RemoteError>,
    },
    #[error("target {}: {reason}", target.display())]
    Target { target: PathBuf, reason: String },
    #[error("target {}: cannot {action} {}", target.display(), path.display())]
    TargetIo {
        target: PathBuf,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RestoreError {
    /// Names of corrupt files, for `RestoreFailed.corrupt_files`.
    pub fn corrupt_files(&self) -> Vec<String> {
        match self {
            RestoreError::Corrupt { corruption, .. } => corruption.corrupt_files(),
            _ => Vec::new(),
        }
    }

    /// The event body reporting this failure.
    pub fn to_body(&self, job: &str, archive: &str, target: &Path) -> pb::RestoreFailed {
        pb::RestoreFailed {
            job: job.to_owned(),
            archive: archive.to_owned(),
            target: target.display().to_string(),
            reason: error_chain(self),
            corrupt_files: self.corrupt_files(),
        }
    }
}

/// The JSON printed by `ops-agent restore --output json` when a restore fails.
pub fn failure_json(
    e: &RestoreError,
    job: &str,
    archive: &str,
    target: &Path,
) -> serde_json::Value {
    let problems = match e {
        RestoreError::Corrupt { corruption, .. } => {
            serde_json::to_value(&corruption.problems).unwrap_or_default()
        }
        _ => serde_json::Value::Array(Vec::new()),
    };
    let archive = match e {
        RestoreError::Corrupt { archive, .. } | RestoreError::UnsafeEntry { archive, .. } => {
            archive.as_str()
        }
        _ => archive,
    };
    serde_json::json!({
        "ok": false,
        "job": job,
        "archive": archive,
        "target": target.display().to_string(),
        "error": error_chain(e),
        "corrupt_files": e.corrupt_files(),
        "problems": problems,
    })
}
