//! Extraction of an archive into a private temp dir with verification against its manifest:
//! entry paths must be plain and relative, nothing is created through a symlink or over an
//! existing path, unknown entry types are refused, every entry is checked (sha256, size,
//! type, symlink target, presence, nothing extra) and the pass stops at the first damaged
//! one; an archive whose own hash is wrong is only read, never extracted. Restored modes
//! never carry setuid/setgid (`restored_mode`). Used by `restore`; blocking.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tracing::warn;

use super::archive::{sha256_file, EntryKind, Manifest, ManifestEntry};
use super::naming::parse_archive_name;
use super::report::{Corruption, FileProblem, Problem, RestoreError};
use crate::config::Compression;

#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) symlinks: u64,
    pub(super) bytes: u64,
}

/// Checks that `name` is a plain relative path and returns its normal components.
fn safe_components(name: &str) -> Result<Vec<&str>, String> {
    if name.is_empty() {
        return Err("empty path".to_owned());
    }
    let mut out = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(s) => out.push(s.to_str().ok_or("path is not UTF-8")?),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`".to_owned()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".to_owned()),
        }
    }
    if out.is_empty() {
        return Err("empty path".to_owned());
    }
    Ok(out)
}

/// Creates `root/parts...` as plain directories, refusing to go through anything that is not
/// a directory we can see (a symlink in the way is refused, never followed).
fn ensure_dirs(root: &Path, parts: &[&str]) -> Result<PathBuf, String> {
    let mut p = root.to_owned();
    for part in parts {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{part:?} on the way is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&p).map_err(|e| format!("cannot create directory: {e}"))?;
            }
            Err(e) => return Err(format!("cannot stat: {e}")),
        }
    }
    Ok(p)
}

/// Writes what passes through to `inner` (a file, or a sink when only verifying) while
/// hashing it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_entry(from: &mut impl Read, to: &mut impl Write) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

fn decoder(c: Compression, file: File) -> io::Result<Box<dyn Read>> {
    let buffered = BufReader::with_capacity(256 * 1024, file);
    Ok(match c {
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(buffered)?),
        Compression::Gzip => Box::new(flate2::bufread::GzDecoder::new(buffered)),
    })
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
    }
}

/// The permission bits a restored entry gets from its manifest mode. Setuid and setgid are
/// always dropped: a restore runs as root and must never create set-id programs (or set-gid
/// directories) from an archive. The sticky bit is kept on directories, where it only
/// restricts who may delete inside (a restored `tmp`-like directory stays protected), and
/// dropped on files, where Linux gives it no meaning.
pub(super) fn restored_mode(kind: EntryKind, manifest_mode: u32) -> u32 {
    match kind {
        EntryKind::Dir => manifest_mode & 0o1777,
        EntryKind::File | EntryKind::Symlink => manifest_mode & 0o777,
    }
}

/// How one entry went.
enum Step {
    Ok,
    /// The first problem: the pass stops here.
    Bad(FileProblem),
    /// The decoder failed inside this entry (the stream is broken from here on).
    Broken(FileProblem, String),
}

/// One verification pass over an archive. With `out` (the private temp dir) every entry is
/// also written there; without it (the archive's own hash is already wrong) nothing is
/// written and the pass only finds the first damaged entry to name it.
struct Pass<'a> {
    archive: &'a str,
    out: Option<&'a Path>,
    expected: HashMap<&'a str, &'a ManifestEntry>,
    seen: HashSet<String>,
    dir_modes: Vec<(PathBuf, u32)>,
    stats: Stats,
    set_id_dropped: u64,
}

impl Pass<'_> {
    fn unsafe_entry(&self, entry: &str, reason: String) -> RestoreError {
        RestoreError::UnsafeEntry {
            archive: self.archive.to_owned(),
            entry: entry.to_owned(),
            reason,
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Step, RestoreError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let parts = safe_components(&raw).map_err(|r| self.unsafe_entry(&raw, r))?;
        let rel = parts.join("/");
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            other => {
                return Err(self.unsafe_entry(&raw, format!("unsupported entry type {other:?}")))
            }
        };
        let bad = |path: String, problem| Ok(Step::Bad(FileProblem { path, problem }));
        if !self.seen.insert(rel.clone()) {
            return bad(rel, Problem::Duplicate);
        }
        let Some(want) = self.expected.get(rel.as_str()).copied() else {
            return bad(rel, Problem::Extra);
        };
        if want.kind != kind {
            let problem = Problem::TypeMismatch {
                expected: kind_name(want.kind).to_owned(),
                actual: kind_name(kind).to_owned(),
            };
            return bad(rel, problem);
        }
        let mode = restored_mode(kind, want.mode);
        if kind != EntryKind::Symlink && want.mode & 0o6000 != 0 {
            self.set_id_dropped += 1;
        }
        let (dirs, name) = parts.split_at(parts.len() - 1);
        let parent = match self.out {
            Some(tmp) => Some(ensure_dirs(tmp, dirs).map_err(|r| self.unsafe_entry(&raw, r))?),
            None => None,
        };
        let dest = parent.as_ref().map(|p| p.join(name[0]));
        match kind {
            EntryKind::Dir => {
                if let (Some(parent), Some(dest)) = (parent, dest) {
                    ensure_dirs(&parent, name).map_err(|r| self.unsafe_entry(&raw, r))?;
                    self.dir_modes.push((dest, mode));
                }
                self.stats.dirs += 1;
            }
            EntryKind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                if want.target.as_deref() != Some(target.as_str()) {
                    let problem = Problem::TypeMismatch {
                        expected: format!("symlink to {:?}", want.target),
                        actual: format!("symlink to {target:?}"),
                    };
                    return bad(rel, problem);
                }
                if let Some(dest) = dest {
                    std::os::unix::fs::symlink(&target, &dest).map_err(|e| {
                        self.unsafe_entry(&raw, format!("cannot create symlink: {e}"))
                    })?;
                }
                self.stats.symlinks += 1;
            }
            EntryKind::File => return self.file(entry, want, rel, &raw, dest, mode),
        }
        Ok(Step::Ok)
    }

    /// Copies a file entry (into `dest`, or nowhere) while hashing it, then checks size and
    /// sha256; only a verified file gets its mode (without set-id bits) and mtime.
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        want: &ManifestEntry,
        rel: String,
        raw: &str,
        dest: Option<PathBuf>,
        mode: u32,
    ) -> Result<Step, RestoreError> {
        let file = match &dest {
            Some(dest) => Some(
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(dest)
                    .map_err(|e| self.unsafe_entry(raw, format!("cannot create file: {e}")))?,
            ),
            None => None,
        };
        let mut out = Hashing {
            inner: file.as_ref().map_or_else(
                || Box::new(io::sink()) as Box<dyn Write>,
                |f| Box::new(f) as Box<dyn Write>,
            ),
            hasher: Sha256::new(),
            count: 0,
        };
        match copy_entry(entry, &mut out) {
            Ok(()) => {}
            Err(CopyError::Read(e)) => {
                let problem = Problem::Unreadable {
                    reason: e.to_string(),
                };
                return Ok(Step::Broken(
                    FileProblem { path: rel, problem },
                    e.to_string(),
                ));
            }
            Err(CopyError::Write(source)) => {
                return Err(RestoreError::TargetIo {
                    target: self.out.unwrap_or(Path::new("")).to_owned(),
                    action: "write",
                    path: dest.unwrap_or_default(),
                    source,
                })
            }
        }
        let (count, actual) = (out.count, hex::encode(out.hasher.finalize()));
        if count != want.size {
            let problem = Problem::SizeMismatch {
                expected: want.size,
                actual: count,
            };
            return Ok(Step::Bad(FileProblem { path: rel, problem }));
        }
        if want.sha256.as_deref() != Some(actual.as_str()) {
            let problem = Problem::Sha256Mismatch {
                expected: want.sha256.clone().unwrap_or_default(),
                actual,
            };
            return Ok(Step::Bad(FileProblem { path: rel, problem }));
        }
        if let Some(f) = &file {
            let mtime = entry.header().mtime().unwrap_or(0);
            let _ = f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
            let _ = f.set_permissions(fs::Permissions::from_mode(mode));
        }
        self.stats.files += 1;
        self.stats.bytes += count;
        Ok(Step::Ok)
    }
}

/// Extracts `archive_path` into the empty dir `tmp` and verifies everything against the
/// manifest. `Ok` only when the archive hash, every entry and the set of entries match.
///
/// The pass stops at the first damaged entry (wrong sha256 or size, unexpected, duplicated,
/// of the wrong type, or unreadable) and reports that entry alone. When the archive file's
/// own sha256 already differs from the manifest, nothing is written at all: the entries are
/// only read and hashed, to name the first damaged one. The caller removes `tmp` on error.
pub(super) fn extract_verified(
    archive_path: &Path,
    archive: &str,
    manifest: &Manifest,
    tmp: &Path,
) -> Result<Stats, RestoreError> {
    let read_err = |source| RestoreError::ArchiveRead {
        path: archive_path.to_owned(),
        source,
    };
    let (archive_sha, _) = sha256_file(archive_path).map_err(read_err)?;
    let archive_sha256_ok = archive_sha == manifest.archive_sha256;
    let compression =
        parse_archive_name(&manifest.job, archive).map_or(manifest.compression, |(_, c)| c);
    let file = File::open(archive_path).map_err(read_err)?;
    let mut tar = tar::Archive::new(decoder(compression, file).map_err(read_err)?);

    let mut pass = Pass {
        archive,
        out: archive_sha256_ok.then_some(tmp),
        expected: manifest
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect(),
        seen: HashSet::new(),
        dir_modes: Vec::new(),
        stats: Stats::default(),
        set_id_dropped: 0,
    };
    let (first_problem, stream_error) = pass.entries(tar.entries().map_err(read_err)?)?;
    let problems = match first_problem {
        Some(p) => vec![p],
        // The stream ended (or broke between entries) with every entry read so far intact:
        // what the manifest lists and the archive did not hold is missing.
        None => pass.missing(manifest),
    };
    if !archive_sha256_ok || stream_error.is_some() || !problems.is_empty() {
        return Err(RestoreError::Corrupt {
            archive: archive.to_owned(),
            corruption: Corruption {
                archive_sha256_ok,
                stream_error,
                problems,
            },
        });
    }
    Ok(pass.finish())
}

impl Pass<'_> {
    /// Goes through the archive's entries until the stream ends or the first damaged entry.
    /// Returns that entry's problem and the stream's error, if any.
    fn entries<R: Read>(
        &mut self,
        entries: tar::Entries<'_, R>,
    ) -> Result<(Option<FileProblem>, Option<String>), RestoreError> {
        for item in entries {
            let mut entry = match item {
                Ok(e) => e,
                Err(e) => return Ok((None, Some(e.to_string()))),
            };
            match self.entry(&mut entry)? {
                Step::Ok => {}
                Step::Bad(p) => return Ok((Some(p), None)),
                Step::Broken(p, e) => return Ok((Some(p), Some(e))),
            }
        }
        Ok((None, None))
    }

    /// What the manifest lists and the pass did not see.
    fn missing(&self, manifest: &Manifest) -> Vec<FileProblem> {
        manifest
            .entries
            .iter()
            .filter(|e| !self.seen.contains(&e.path))
            .map(|e| FileProblem {
                path: e.path.clone(),
                problem: Problem::Missing,
            })
            .collect()
    }

    /// After a clean pass: says when set-id bits were dropped, gives the extracted directories
    /// their modes (deepest first, so a read-only directory does not block setting its
    /// children) and returns the counts.
    fn finish(self) -> Stats {
        if self.set_id_dropped > 0 {
            warn!(
                archive = self.archive,
                entries = self.set_id_dropped,
                "setuid/setgid bits dropped on restore"
            );
        }
        let mut dir_modes = self.dir_modes;
        dir_modes.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode) in dir_modes {
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode));
        }
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_must_be_plain_and_relative() {
        assert_eq!(safe_components("app/a.txt"), Ok(vec!["app", "a.txt"]));
        assert_eq!(safe_components("./app/dir/"), Ok(vec!["app", "dir"]));
        assert!(safe_components("/etc/passwd").is_err());
        assert!(safe_components("app/../../etc").is_err());
        assert!(safe_components("..").is_err());
        assert!(safe_components("").is_err());
        assert!(safe_components(".").is_err());
    }

    #[test]
    fn restored_modes_never_carry_set_id_bits() {
        for m in 0..=0o7777u32 {
            for kind in [EntryKind::File, EntryKind::Dir, EntryKind::Symlink] {
                let got = restored_mode(kind, m);
                assert_eq!(got & 0o6000, 0, "{kind:?} {m:o}");
                assert_eq!(got & 0o777, m & 0o777, "{kind:?} {m:o}");
                let sticky_kept = kind == EntryKind::Dir && m & 0o1000 != 0;
                assert_eq!(got & 0o1000 != 0, sticky_kept, "{kind:?} {m:o}");
            }
        }
        // Bits beyond the permission bits are never passed on.
        assert_eq!(restored_mode(EntryKind::File, 0o100_644), 0o644);
    }
}
