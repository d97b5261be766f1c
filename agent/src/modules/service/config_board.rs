//! `ConfigBoard`: what the agent knows of the services' declared config files, shared by the
//! service modules (which look at the files on every run and report changes) and the command
//! handler (which writes them on `service config apply|rollback`). Created with the runner and
//! handed out through its `ControlHandle` (the handler) and `ModuleCtx` (the modules), like
//! `HealthBoard`.
//!
//! How a command's write is not reported as drift: the board holds, per (service, file), the
//! fingerprint last reported. A module compares what it reads with it, and a command replaces
//! a file (rename) and records its new fingerprint, both under the board's one lock: a module
//! sees either the old content with the old fingerprint or the new one with the new. The
//! command reports its own changes (`applied`, `rolled_back`, `restored`, with its id).
//!
//! It also keeps the last `keep` contents of each file, for rollbacks, in files under
//! `<data_dir>/service-config/<service>/<sha256 of the path, 16 hex>/` (mode 0600: config
//! files may hold secrets; contents never travel in events), `order` listing their
//! fingerprints oldest first. Without a directory (runners built by tests) they are kept in
//! memory.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use opsfleet_proto::pb;
use sha2::{Digest, Sha256};
use tracing::warn;

/// Shortest fingerprint prefix a rollback may name.
pub const MIN_PREFIX: usize = 8;

/// sha256 (hex) of a content.
pub fn fingerprint(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// A file as read now: its content, or `None` when it is missing.
fn read_current(file: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(file) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a look at a file reported, or a write changed.
fn snapshot(
    service: &str,
    file: &Path,
    content: Option<&[u8]>,
    cause: &str,
    previous: &str,
    command_id: &str,
) -> pb::ServiceConfigSnapshot {
    pb::ServiceConfigSnapshot {
        service: service.to_owned(),
        file: file.to_string_lossy().into_owned(),
        fingerprint: content.map(fingerprint).unwrap_or_default(),
        size: content.map_or(0, |c| c.len() as u64),
        cause: cause.to_owned(),
        previous_fingerprint: previous.to_owned(),
        command_id: command_id.to_owned(),
    }
}

/// Why a kept content could not be found.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FindError {
    #[error("fingerprint {prefix:?}: at least {MIN_PREFIX} hex digits are needed")]
    TooShort { prefix: String },
    #[error("no kept content of {file} has fingerprint {prefix}")]
    Unknown { file: String, prefix: String },
    #[error("fingerprint {prefix} is ambiguous for {file}: {matches}")]
    Ambiguous {
        file: String,
        prefix: String,
        matches: String,
    },
    #[error("cannot read the kept contents of {file}: {reason}")]
    Io { file: String, reason: String },
}

/// Errors of the board's writes.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot replace {path}")]
    Replace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A command's change of one file.
#[derive(Debug, Clone, Copy)]
pub struct ConfigWrite<'a> {
    pub service: &'a str,
    pub file: &'a Path,
    pub content: &'a [u8],
    /// `applied`, `rolled_back` or `restored`.
    pub cause: &'a str,
    pub command_id: &'a str,
    /// Contents kept per file.
    pub keep: usize,
}

/// What a command's replace did: the snapshots to publish (a drift not yet reported, then
/// the change itself) and the content it replaced (`None`: the file was missing).
#[derive(Debug)]
pub struct Replaced {
    pub snapshots: Vec<pb::ServiceConfigSnapshot>,
    pub previous: Option<Vec<u8>>,
}

type Key = (String, PathBuf);

#[derive(Debug, Default)]
struct Inner {
    root: Option<PathBuf>,
    /// Fingerprint last reported per (service, file) ("" = missing).
    known: HashMap<Key, String>,
    /// Kept contents when there is no directory, oldest first.
    mem: HashMap<Key, Vec<(String, Vec<u8>)>>,
}

/// See the module doc. Cloning shares the board.
#[derive(Debug, Clone, Default)]
pub struct ConfigBoard(Arc<Mutex<Inner>>);

impl ConfigBoard {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; keep going with it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kept contents go under `root` from now on.
    pub fn set_root(&self, root: PathBuf) {
        self.lock().root = Some(root);
    }

    /// The fingerprint last reported for `file` of `service`.
    pub fn known(&self, service: &str, file: &Path) -> Option<String> {
        let key = (service.to_owned(), file.to_owned());
        self.lock().known.get(&key).cloned()
    }

    /// A module's look at `file`: `Some` snapshot when it changed since the last report
    /// (`drift`), at the first look (`start`), or after an agent restart when it no longer has
    /// the fingerprint this module `persisted` (`drift`: changed while the agent was down,
    /// not by opsfleet). Keeps the content seen.
    pub fn observe(
        &self,
        service: &str,
        file: &Path,
        keep: usize,
        persisted: Option<&str>,
    ) -> Result<Option<pb::ServiceConfigSnapshot>, BoardError> {
        let mut inner = self.lock();
        let content = read_current(file).map_err(|source| BoardError::Read {
            path: file.to_owned(),
            source,
        })?;
        let fp = content.as_deref().map(fingerprint).unwrap_or_default();
        let key = (service.to_owned(), file.to_owned());
        let (cause, previous) = match inner.known.get(&key) {
            Some(k) if *k == fp => return Ok(None),
            Some(k) => ("drift", k.clone()),
            None => match persisted {
                Some(p) if p != fp => ("drift", p.to_owned()),
                _ => ("start", String::new()),
            },
        };
        inner.known.insert(key, fp.clone());
        if let Some(c) = &content {
            inner.keep(service, file, &fp, c, keep);
        }
        if cause == "start" && persisted == Some(fp.as_str()) {
            return Ok(None);
        }
        Ok(Some(snapshot(
            service,
            file,
            content.as_deref(),
            cause,
            &previous,
            "",
        )))
    }

    /// A command's write `w` taken back where there was no file before: the file removed and
    /// recorded as missing under the lock (so the module's next look sees no drift); the
    /// `restored` snapshot that says so.
    pub fn remove(&self, w: &ConfigWrite<'_>) -> io::Result<pb::ServiceConfigSnapshot> {
        let mut inner = self.lock();
        fs::remove_file(w.file)?;
        let key = (w.service.to_owned(), w.file.to_owned());
        let previous = inner.known.insert(key, String::new()).unwrap_or_default();
        Ok(snapshot(
            w.service,
            w.file,
            None,
            "restored",
            &previous,
            w.command_id,
        ))
    }

    /// A command's write `w`: `temp` (its content, fsynced, beside the file) renamed over the
    /// file, the directory fsynced, the new fingerprint recorded, the content kept. A change
    /// nobody reported yet is reported first as `drift`.
    pub fn replace(&self, w: &ConfigWrite<'_>, temp: &Path) -> Result<Replaced, BoardError> {
        let ConfigWrite {
            service,
            file,
            content,
            cause,
            command_id,
            keep,
        } = *w;
        let mut inner = self.lock();
        let previous = read_current(file).map_err(|source| BoardError::Read {
            path: file.to_owned(),
            source,
        })?;
        let old = previous.as_deref().map(fingerprint).unwrap_or_default();
        let key = (service.to_owned(), file.to_owned());
        let mut snapshots = Vec::new();
        match inner.known.get(&key) {
            Some(k) if *k == old => {}
            reported => {
                // Never looked at yet (a command right after the agent started): its first
                // look; else a change nobody reported.
                let (cause, before) = match reported {
                    Some(k) => ("drift", k.clone()),
                    None => ("start", String::new()),
                };
                snapshots.push(snapshot(
                    service,
                    file,
                    previous.as_deref(),
                    cause,
                    &before,
                    "",
                ));
                if let Some(p) = &previous {
                    inner.keep(service, file, &old, p, keep);
                }
            }
        }
        let replace = |e| BoardError::Replace {
            path: file.to_owned(),
            source: e,
        };
        fs::rename(temp, file).map_err(replace)?;
        if let Err(e) = sync_dir(file) {
            // Renamed: the file is the new one; only its durability across a crash is less sure.
            warn!(path = %file.display(), error = %e, "cannot fsync the config file's directory");
        }
        let new = fingerprint(content);
        inner.known.insert(key, new.clone());
        inner.keep(service, file, &new, content, keep);
        snapshots.push(snapshot(
            service,
            file,
            Some(content),
            cause,
            &old,
            command_id,
        ));
        Ok(Replaced {
            snapshots,
            previous,
        })
    }

    /// The kept content of `file` whose fingerprint is `prefix` or starts with it.
    pub fn find(
        &self,
        service: &str,
        file: &Path,
        prefix: &str,
    ) -> Result<(String, Vec<u8>), FindError> {
        let shown = file.to_string_lossy().into_owned();
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < MIN_PREFIX || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(FindError::TooShort { prefix });
        }
        let inner = self.lock();
        let kept = inner.kept(service, file).map_err(|e| FindError::Io {
            file: shown.clone(),
            reason: e.to_string(),
        })?;
        let matches: Vec<&String> = kept.iter().filter(|f| f.starts_with(&prefix)).collect();
        let fp = match matches.as_slice() {
            [] => {
                return Err(FindError::Unknown {
                    file: shown,
                    prefix,
                })
            }
            [one] => (*one).clone(),
            many => {
                return Err(FindError::Ambiguous {
                    file: shown,
                    prefix,
                    matches: many.iter().map(|m| &m[..12]).collect::<Vec<_>>().join(", "),
                })
            }
        };
        let content = inner
            .content(service, file, &fp)
            .map_err(|e| FindError::Io {
                file: shown,
                reason: e.to_string(),
            })?;
        Ok((fp, content))
    }
}

fn sync_dir(file: &Path) -> io::Result<()> {
    match file.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

impl Inner {
    fn dir(&self, service: &str, file: &Path) -> Option<PathBuf> {
        let hashed = fingerprint(file.as_os_str().as_encoded_bytes());
        (self.root.as_ref()).map(|r| r.join(service).join(&hashed[..16]))
    }

    /// Fingerprints kept for `file`, oldest first.
    fn kept(&self, service: &str, file: &Path) -> io::Result<Vec<String>> {
        let Some(dir) = self.dir(service, file) else {
            let key = (service.to_owned(), file.to_owned());
            let list = self.mem.get(&key).map(|l| l.iter().map(|(f, _)| f.clone()));
            return Ok(list.map(Iterator::collect).unwrap_or_default());
        };
        match fs::read_to_string(dir.join("order")) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn content(&self, service: &str, file: &Path, fp: &str) -> io::Result<Vec<u8>> {
        let Some(dir) = self.dir(service, file) else {
            let key = (service.to_owned(), file.to_owned());
            let found = self
                .mem
                .get(&key)
                .and_then(|l| l.iter().find(|(f, _)| f == fp));
            return found
                .map(|(_, c)| c.clone())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound));
        };
        fs::read(dir.join(fp))
    }

    /// Keeps `content` as the newest of `file`, dropping the oldest beyond `keep`. A failure
    /// is logged: the file itself is fine, only a later rollback to it would fail.
    fn keep(&mut self, service: &str, file: &Path, fp: &str, content: &[u8], keep: usize) {
        let Some(dir) = self.dir(service, file) else {
            let list = self
                .mem
                .entry((service.to_owned(), file.to_owned()))
                .or_default();
            list.retain(|(f, _)| f != fp);
            list.push((fp.to_owned(), content.to_vec()));
            let excess = list.len().saturating_sub(keep);
            list.drain(..excess);
            return;
        };
        if let Err(e) = self.keep_on_disk(service, file, &dir, fp, content, keep) {
            tracing::warn!(service, file = %file.display(), error = %e, "cannot keep a config content");
        }
    }

    fn keep_on_disk(
        &self,
        service: &str,
        file: &Path,
        dir: &Path,
        fp: &str,
        content: &[u8],
        keep: usize,
    ) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let mut order = self.kept(service, file)?;
        if !order.iter().any(|f| f == fp) {
            write_private(&dir.join(fp), content)?;
        }
        order.retain(|f| f != fp);
        order.push(fp.to_owned());
        let excess = order.len().saturating_sub(keep);
        for old in order.drain(..excess) {
            let _ = fs::remove_file(dir.join(old));
        }
        let mut text = order.join("\n");
        text.push('\n');
        write_private(&dir.join("order"), text.as_bytes())
    }
}

/// `content` at `path` (mode 0600) through a temp file and a rename.
fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(dir: Option<&Path>) -> ConfigBoard {
        let b = ConfigBoard::default();
        if let Some(d) = dir {
            b.set_root(d.join("keep"));
        }
        b
    }

    #[test]
    fn a_write_taken_back_where_no_file_was_is_missing_again_not_drift() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        let b = board(None);
        assert_eq!(
            b.observe("app", &file, 3, None)
                .expect("read")
                .map(|s| s.cause),
            Some("start".to_owned()),
            "first look: missing"
        );
        std::fs::write(&file, b"{}").expect("the failed apply's file");
        let w = ConfigWrite {
            service: "app",
            file: &file,
            content: &[],
            cause: "restored",
            command_id: "c-1",
            keep: 3,
        };
        let snap = b.remove(&w).expect("removed");
        assert_eq!(
            (
                snap.cause.as_str(),
                snap.fingerprint.as_str(),
                snap.command_id.as_str()
            ),
            ("restored", "", "c-1")
        );
        assert!(!file.exists());
        assert!(
            b.observe("app", &file, 3, None).expect("read").is_none(),
            "no drift"
        );
    }

    #[test]
    fn first_look_then_drift_then_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        fs::write(&file, b"{\"a\":1}").expect("write");
        let b = board(Some(tmp.path()));
        let first = b
            .observe("app", &file, 3, None)
            .expect("read")
            .expect("start");
        assert_eq!(first.cause, "start");
        assert_eq!(first.fingerprint, fingerprint(b"{\"a\":1}"));
        assert!(b.observe("app", &file, 3, None).expect("read").is_none());
        fs::write(&file, b"{\"a\":2}").expect("write");
        let drift = b
            .observe("app", &file, 3, None)
            .expect("read")
            .expect("drift");
        assert_eq!(drift.cause, "drift");
        assert_eq!(drift.previous_fingerprint, first.fingerprint);
        let (fp, content) = b.find("app", &file, &first.fingerprint[..8]).expect("kept");
        assert_eq!((fp, content), (first.fingerprint, b"{\"a\":1}".to_vec()));
    }

    #[test]
    fn an_unchanged_file_after_a_restart_is_not_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        fs::write(&file, b"x").expect("write");
        let fp = fingerprint(b"x");
        assert!(board(None)
            .observe("app", &file, 3, Some(&fp))
            .expect("read")
            .is_none());
        let changed = board(None)
            .observe("app", &file, 3, Some("00ff"))
            .expect("read")
            .expect("changed while down");
        assert_eq!(
            (
                changed.cause.as_str(),
                changed.previous_fingerprint.as_str()
            ),
            ("drift", "00ff")
        );
    }

    #[test]
    fn a_replace_is_not_drift_and_keep_is_bounded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        fs::write(&file, b"v0").expect("write");
        let b = board(Some(tmp.path()));
        b.observe("app", &file, 2, None).expect("read");
        for v in ["v1", "v2"] {
            let temp = tmp.path().join(".app.json.new");
            fs::write(&temp, v).expect("write");
            let w = ConfigWrite {
                service: "app",
                file: &file,
                content: v.as_bytes(),
                cause: "applied",
                command_id: "c-1",
                keep: 2,
            };
            let r = b.replace(&w, &temp).expect("replace");
            assert_eq!(r.snapshots.len(), 1, "{:?}", r.snapshots);
            assert_eq!(r.snapshots[0].cause, "applied");
            assert_eq!(r.snapshots[0].command_id, "c-1");
        }
        assert!(b.observe("app", &file, 2, None).expect("read").is_none());
        assert!(matches!(
            b.find("app", &file, &fingerprint(b"v0")),
            Err(FindError::Unknown { .. })
        ));
        assert!(b.find("app", &file, &fingerprint(b"v1")).is_ok());
        assert!(matches!(
            b.find("app", &file, "abc"),
            Err(FindError::TooShort { .. })
        ));
        let mode = fs::metadata(
            b.lock()
                .dir("app", &file)
                .expect("dir")
                .join(fingerprint(b"v2")),
        )
        .expect("kept file")
        .permissions()
        .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_replace_reports_an_unseen_drift_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("app.json");
        fs::write(&file, b"v0").expect("write");
        let b = board(None);
        b.observe("app", &file, 5, None).expect("read");
        fs::write(&file, b"by hand").expect("write");
        let temp = tmp.path().join(".app.json.new");
        fs::write(&temp, b"v1").expect("write");
        let w = ConfigWrite {
            service: "app",
            file: &file,
            content: b"v1",
            cause: "applied",
            command_id: "c-1",
            keep: 5,
        };
        let r = b.replace(&w, &temp).expect("replace");
        let causes: Vec<&str> = r.snapshots.iter().map(|s| s.cause.as_str()).collect();
        assert_eq!(causes, ["drift", "applied"]);
        assert_eq!(r.previous.as_deref(), Some(&b"by hand"[..]));
    }
}
