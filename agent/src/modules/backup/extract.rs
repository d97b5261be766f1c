//! Extraction of an archive into a private temp dir with verification against its manifest:
//! entry paths must be plain and relative, nothing is created through a symlink or over an
//! existing path, unknown entry types are refused, and every entry is checked (sha256, size,
//! type, symlink target, presence, nothing extra). Used by `restore`; blocking.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::archive::{sha256_file, EntryKind, Manifest, ManifestEntry};
use super::naming::parse_archive_name;
use super::restore::{Corruption, FileProblem, Problem, RestoreError};
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

/// Writes what passes through to a file while hashing it.
struct HashingFile {
    file: File,
    hasher: Sha256,
    count: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
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

/// Extracts `archive_path` into the empty dir `tmp` and verifies everything against the
/// manifest. `Ok` only when the archive hash, every entry and the set of entries match.
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

    let expected: HashMap<&str, &ManifestEntry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut problems: Vec<FileProblem> = Vec::new();
    let mut stream_error = None;
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut stats = Stats::default();
    let unsafe_entry = |entry: &str, reason: String| RestoreError::UnsafeEntry {
        archive: archive.to_owned(),
        entry: entry.to_owned(),
        reason,
    };

    let entries = match tar.entries() {
        Ok(e) => e,
        Err(source) => return Err(read_err(source)),
    };
    for item in entries {
        let mut entry = match item {
            Ok(e) => e,
            Err(e) => {
                stream_error = Some(e.to_string());
                break;
            }
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let parts = safe_components(&raw).map_err(|r| unsafe_entry(&raw, r))?;
        let rel = parts.join("/");
        let etype = entry.header().entry_type();
        let kind = match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            other => {
                return Err(unsafe_entry(
                    &raw,
                    format!("unsupported entry type {other:?}"),
                ))
            }
        };
        if !seen.insert(rel.clone()) {
            problems.push(FileProblem {
                path: rel,
                problem: Problem::Duplicate,
            });
            continue;
        }
        let Some(want) = expected.get(rel.as_str()) else {
            problems.push(FileProblem {
                path: rel,
                problem: Problem::Extra,
            });
            continue;
        };
        if want.kind != kind {
            problems.push(FileProblem {
                path: rel,
                problem: Problem::TypeMismatch {
                    expected: kind_name(want.kind).to_owned(),
                    actual: kind_name(kind).to_owned(),
                },
            });
            continue;
        }
        let (dirs, name) = parts.split_at(parts.len() - 1);
        let parent = ensure_dirs(tmp, dirs).map_err(|r| unsafe_entry(&raw, r))?;
        let dest = parent.join(name[0]);
        match kind {
            EntryKind::Dir => {
                ensure_dirs(&parent, name).map_err(|r| unsafe_entry(&raw, r))?;
                dir_modes.push((dest, want.mode & 0o7777));
                stats.dirs += 1;
            }
            EntryKind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                if want.target.as_deref() != Some(target.as_str()) {
                    problems.push(FileProblem {
                        path: rel,
                        problem: Problem::TypeMismatch {
                            expected: format!("symlink to {:?}", want.target),
                            actual: format!("symlink to {target:?}"),
                        },
                    });
                    continue;
                }
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(|e| unsafe_entry(&raw, format!("cannot create symlink: {e}")))?;
                stats.symlinks += 1;
            }
            EntryKind::File => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(|e| unsafe_entry(&raw, format!("cannot create file: {e}")))?;
                let mut out = HashingFile {
                    file,
                    hasher: Sha256::new(),
                    count: 0,
                };
                match copy_entry(&mut entry, &mut out) {
                    Ok(()) => {}
                    Err(CopyError::Read(e)) => {
                        // The decoder failed inside this entry: its content is damaged.
                        problems.push(FileProblem {
                            path: rel,
                            problem: Problem::Unreadable {
                                reason: e.to_string(),
                            },
                        });
                        stream_error = Some(e.to_string());
                        break;
                    }
                    Err(CopyError::Write(source)) => {
                        return Err(RestoreError::TargetIo {
                            target: tmp.to_owned(),
                            action: "write",
                            path: dest,
                            source,
                        })
                    }
                }
                let actual = hex::encode(out.hasher.finalize());
                if out.count != want.size {
                    problems.push(FileProblem {
                        path: rel,
                        problem: Problem::SizeMismatch {
                            expected: want.size,
                            actual: out.count,
                        },
                    });
                    continue;
                }
                if want.sha256.as_deref() != Some(actual.as_str()) {
                    problems.push(FileProblem {
                        path: rel,
                        problem: Problem::Sha256Mismatch {
                            expected: want.sha256.clone().unwrap_or_default(),
                            actual,
                        },
                    });
                    continue;
                }
                let mtime = entry.header().mtime().unwrap_or(0);
                let _ = out
                    .file
                    .set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
                let _ = out
                    .file
                    .set_permissions(fs::Permissions::from_mode(want.mode & 0o7777));
                stats.files += 1;
                stats.bytes += out.count;
            }
        }
    }
    for e in &manifest.entries {
        if !seen.contains(&e.path) {
            problems.push(FileProblem {
                path: e.path.clone(),
                problem: Problem::Missing,
            });
        }
    }
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
    // Deepest first, so a read-only directory does not block setting its children.
    dir_modes.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, mode) in dir_modes {
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode));
    }
    Ok(stats)
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
}
