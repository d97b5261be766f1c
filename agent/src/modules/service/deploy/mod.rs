//! The releases of a deployed service on disk: `<dir>/releases/<version>/` (each with the
//! sha256 of the artifact it came from in `.opsfleet-sha256`), the `current` link switched
//! atomically (a new link beside it renamed over it), the version `current` points to, and
//! the pruning of old releases (never the current or the previous one). `fetch` downloads or
//! copies an artifact while hashing it; `unpack` puts it in place as a new release; `compose`
//! owns the override file of a compose service's image tag.

pub mod compose;
pub mod fetch;
pub mod unpack;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The directory of the releases under `dir`.
pub const RELEASES: &str = "releases";
/// The link to the running release under `dir`.
pub const CURRENT: &str = "current";
/// The file in a release holding the sha256 of its artifact.
pub const SHA_FILE: &str = ".opsfleet-sha256";

/// Why a release operation failed; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and is not a symbolic link; move it away so the agent can manage it")]
    NotALink { path: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError {
    let path = path.display().to_string();
    move |source| ReleaseError::Io { what, path, source }
}

/// A random tail for temp names (the random end of a UUIDv7).
pub fn random_tag() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    id[id.len() - 12..].to_owned()
}

/// The releases of one service under its `dir`.
#[derive(Debug, Clone)]
pub struct Releases {
    dir: PathBuf,
}

impl Releases {
    pub fn new(dir: &Path) -> Self {
        Releases {
            dir: dir.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn releases_dir(&self) -> PathBuf {
        self.dir.join(RELEASES)
    }

    /// `<dir>/releases/<version>` (`version` already checked as a safe name).
    pub fn release(&self, version: &str) -> PathBuf {
        self.releases_dir().join(version)
    }

    /// The version `current` points to (the file name of its target); `None` without a link.
    pub fn current(&self) -> Option<String> {
        current_version(&self.dir)
    }

    /// The sha256 recorded for release `version`, `None` when it has none or does not exist.
    /// A marker that is not a plain file (a link) counts as none.
    pub fn recorded_sha(&self, version: &str) -> Option<String> {
        let file = self.release(version).join(SHA_FILE);
        if !std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_file()) {
            return None;
        }
        std::fs::read_to_string(file)
            .ok()
            .map(|s| s.trim().to_ascii_lowercase())
    }

    /// Marks `version` as just activated (its sha file rewritten: pruning removes the least
    /// recently activated first). The new content is a new file renamed over the marker, so
    /// a link in its place is replaced, never followed.
    pub fn touch(&self, version: &str, sha: &str) -> Result<(), ReleaseError> {
        let file = self.release(version).join(SHA_FILE);
        let temp = self
            .release(version)
            .join(format!("{SHA_FILE}.tmp-{}", random_tag()));
        unpack::write_new(&temp, sha).map_err(io("write", &temp))?;
        std::fs::rename(&temp, &file).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            io("replace", &file)(e)
        })
    }

    /// The releases kept, least recently activated first.
    pub fn kept(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.releases_dir()) else {
            return Vec::new();
        };
        let mut found: Vec<(SystemTime, String)> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let at = std::fs::metadata(e.path().join(SHA_FILE))
                    .or_else(|_| e.metadata())
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some((at, name))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, n)| n).collect()
    }

    /// Removes what an interrupted deploy left beside `releases/` (`.fetch-*`,
    /// `.incoming-*`, `current.tmp-*`): a service's deploys run one at a time, so any such
    /// entry at the start of one is a leftover. The names removed.
    pub fn clean_leftovers(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(".fetch-")
                || name.starts_with(".incoming-")
                || name.starts_with(&format!("{CURRENT}.tmp-"));
            if !ours {
                continue;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let gone = if is_dir {
                std::fs::remove_dir_all(e.path())
            } else {
                std::fs::remove_file(e.path())
            };
            if gone.is_ok() {
                removed.push(name);
            }
        }
        removed
    }

    /// Points `current` at `releases/<version>` atomically (a new link renamed over the old
    /// one); the version it pointed to before.
    pub fn switch(&self, version: &str) -> Result<Option<String>, ReleaseError> {
        let link = self.dir.join(CURRENT);
        if let Ok(m) = std::fs::symlink_metadata(&link) {
            if !m.file_type().is_symlink() {
                return Err(ReleaseError::NotALink {
                    path: link.display().to_string(),
                });
            }
        }
        let previous = self.current();
        let temp = self.dir.join(format!("{CURRENT}.tmp-{}", random_tag()));
        let target = Path::new(RELEASES).join(version);
        std::os::unix::fs::symlink(&target, &temp).map_err(io("create the link", &temp))?;
        if let Err(e) = std::fs::rename(&temp, &link) {
            let _ = std::fs::remove_file(&temp);
            return Err(io("replace the link", &link)(e));
        }
        // The rename is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(previous)
    }

    /// Removes the least recently activated releases beyond `keep`, never `current` nor
    /// `previous`; the versions removed, and the problems met.
    pub fn prune(
        &self,
        keep: usize,
        current: &str,
        previous: Option<&str>,
    ) -> (Vec<String>, Vec<String>) {
        let kept = self.kept();
        let mut excess = kept.len().saturating_sub(keep);
        let mut removed = Vec::new();
        let mut problems = Vec::new();
        for v in kept {
            if excess == 0 {
                break;
            }
            if v == current || Some(v.as_str()) == previous {
                continue;
            }
            let path = self.release(&v);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    removed.push(v);
                    excess -= 1;
                }
                Err(e) => problems.push(format!("cannot remove {}: {e}", path.display())),
            }
        }
        (removed, problems)
    }
}

/// The version the `current` link under `dir` points to: its target's file name.
pub fn current_version(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir.join(CURRENT)).ok()?;
    target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
