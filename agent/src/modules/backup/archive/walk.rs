//! Archiving one source: walk it without following symlinks, append directories, symlinks
//! and files (hashed while read) to the tar stream, and record manifest entries and skips.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{ArchiveError, EntryKind, ManifestEntry, Skipped, Tracker};

/// Reads a file's bytes into the tar stream, hashing them, counting progress and honouring
/// cancellation between chunks.
struct FileReader<'t, 'a, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    tracker: &'t mut Tracker<'a>,
}

impl<R: Read> Read for FileReader<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tracker.cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.tracker.now.bytes += n as u64;
        self.tracker.tick();
        Ok(n)
    }
}

/// Appends one source (a directory tree, a file or a symlink) under its base name.
pub(super) fn archive_source<W: Write>(
    builder: &mut tar::Builder<W>,
    source: &Path,
    archive_tmp: &Path,
    tracker: &mut Tracker<'_>,
    entries: &mut Vec<ManifestEntry>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), ArchiveError> {
    fs::symlink_metadata(source).map_err(|e| ArchiveError::Source {
        path: source.to_owned(),
        source: e,
    })?;
    let base = source
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let walker = walkdir::WalkDir::new(source)
        .follow_links(false)
        .follow_root_links(false)
        .sort_by_file_name();
    let write_err = |source| ArchiveError::Write {
        path: archive_tmp.to_owned(),
        source,
    };
    for item in walker {
        if tracker.cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let item = item.map_err(|e| ArchiveError::Walk {
            path: e.path().map_or_else(|| source.to_owned(), Path::to_owned),
            source: e,
        })?;
        let path = item.path();
        let Some(rel) = relative_name(&base, source, path) else {
            skipped.push(Skipped {
                path: path.to_string_lossy().into_owned(),
                reason: "name is not UTF-8".to_owned(),
            });
            continue;
        };
        let meta = fs::symlink_metadata(path).map_err(|e| ArchiveError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        let ft = meta.file_type();
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, format!("{rel}/"), io::empty())
                .map_err(write_err)?;
            entries.push(ManifestEntry {
                path: rel,
                kind: EntryKind::Dir,
                mode,
                size: 0,
                sha256: None,
                target: None,
            });
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| ArchiveError::Read {
                path: path.to_owned(),
                source: e,
            })?;
            let Some(target) = target.to_str().map(str::to_owned) else {
                skipped.push(Skipped {
                    path: rel,
                    reason: "symlink target is not UTF-8".to_owned(),
                });
                continue;
            };
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, &rel, &target)
                .map_err(write_err)?;
            entries.push(ManifestEntry {
                path: rel,
                kind: EntryKind::Symlink,
                mode,
                size: 0,
                sha256: None,
                target: Some(target),
            });
        } else if ft.is_file() {
            // O_NOFOLLOW: if the file was swapped for a symlink since the walk, refuse it.
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(path)
                .map_err(|e| ArchiveError::Read {
                    path: path.to_owned(),
                    source: e,
                })?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(meta.len());
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            // Growth after the stat is cut off: the archive holds the first `size` bytes.
            let mut reader = FileReader {
                inner: file.take(size),
                hasher: Sha256::new(),
                count: 0,
                tracker: &mut *tracker,
            };
            let res = builder.append_data(&mut header, &rel, &mut reader);
            let (count, digest) = (reader.count, reader.hasher.finalize());
            if let Err(e) = res {
                if tracker.cancelled() {
                    return Err(ArchiveError::Cancelled);
                }
                return Err(if count < size {
                    ArchiveError::Read {
                        path: path.to_owned(),
                        source: e,
                    }
                } else {
                    write_err(e)
                });
            }
            if count != size {
                return Err(ArchiveError::Shrank {
                    path: path.to_owned(),
                    expected: size,
                    got: count,
                });
            }
            tracker.now.files += 1;
            tracker.tick();
            entries.push(ManifestEntry {
                path: rel,
                kind: EntryKind::File,
                mode,
                size,
                sha256: Some(hex::encode(digest)),
                target: None,
            });
        } else {
            skipped.push(Skipped {
                path: rel,
                reason: "not a regular file, directory or symlink".to_owned(),
            });
        }
    }
    Ok(())
}

/// `base/rel/ative` for a walked path, `/`-separated; `None` when not UTF-8.
fn relative_name(base: &str, source: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(source).ok()?;
    let mut out = base.to_owned();
    for c in rest.components() {
        out.push('/');
        out.push_str(c.as_os_str().to_str()?);
    }
    if base.is_empty() {
        return None;
    }
    Some(out)
}
