//! Archiving one source: walk it without following symlinks, append directories, symlinks
//! and files (hashed while read) to the tar stream, and record manifest entries and skips.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{read_err, write_err, ArchiveError, EntryKind, ManifestEntry, Skipped, Tracker};

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

/// Where the walk of the sources goes: the tar stream (written to `archive_tmp`), the progress
/// tracker, and the manifest's entries and skips.
pub(super) struct Walk<'w, 'a, W: Write> {
    pub(super) builder: &'w mut tar::Builder<W>,
    pub(super) archive_tmp: &'w Path,
    pub(super) tracker: &'w mut Tracker<'a>,
    pub(super) entries: Vec<ManifestEntry>,
    pub(super) skipped: Vec<Skipped>,
}

impl<W: Write> Walk<'_, '_, W> {
    /// Appends one source (a directory tree, a file or a symlink) under its base name.
    pub(super) fn source(&mut self, source: &Path) -> Result<(), ArchiveError> {
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
        for item in walker {
            if self.tracker.cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            let item = item.map_err(|e| ArchiveError::Walk {
                path: e.path().map_or_else(|| source.to_owned(), Path::to_owned),
                source: e,
            })?;
            let path = item.path();
            let Some(rel) = relative_name(&base, source, path) else {
                self.skip(path.to_string_lossy().into_owned(), "name is not UTF-8");
                continue;
            };
            self.entry(path, rel)?;
        }
        Ok(())
    }

    /// Appends the walked `path` as `rel`, by its kind (anything else is skipped).
    fn entry(&mut self, path: &Path, rel: String) -> Result<(), ArchiveError> {
        let meta = fs::symlink_metadata(path).map_err(read_err(path))?;
        let mode = meta.permissions().mode() & 0o7777;
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        let ft = meta.file_type();
        if ft.is_dir() {
            self.dir(&mut header, rel, mode)
        } else if ft.is_symlink() {
            self.symlink(&mut header, path, rel, mode)
        } else if ft.is_file() {
            self.file(&mut header, path, rel, mode, meta.len())
        } else {
            self.skip(rel, "not a regular file, directory or symlink");
            Ok(())
        }
    }

    fn skip(&mut self, path: String, reason: &str) {
        self.skipped.push(Skipped {
            path,
            reason: reason.to_owned(),
        });
    }

    fn dir(
        &mut self,
        header: &mut tar::Header,
        rel: String,
        mode: u32,
    ) -> Result<(), ArchiveError> {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        self.builder
            .append_data(header, format!("{rel}/"), io::empty())
            .map_err(write_err(self.archive_tmp))?;
        self.entries.push(ManifestEntry {
            path: rel,
            kind: EntryKind::Dir,
            mode,
            size: 0,
            sha256: None,
            target: None,
        });
        Ok(())
    }

    /// A symlink is archived as a link (never followed); one whose target is not UTF-8 is
    /// skipped.
    fn symlink(
        &mut self,
        header: &mut tar::Header,
        path: &Path,
        rel: String,
        mode: u32,
    ) -> Result<(), ArchiveError> {
        let target = fs::read_link(path).map_err(read_err(path))?;
        let Some(target) = target.to_str().map(str::to_owned) else {
            self.skip(rel, "symlink target is not UTF-8");
            return Ok(());
        };
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        self.builder
            .append_link(header, &rel, &target)
            .map_err(write_err(self.archive_tmp))?;
        self.entries.push(ManifestEntry {
            path: rel,
            kind: EntryKind::Symlink,
            mode,
            size: 0,
            sha256: None,
            target: Some(target),
        });
        Ok(())
    }

    /// A regular file: its first `size` bytes (as opened; `stat_len` when the open file cannot
    /// be stat'ed) streamed and hashed; one that shrank meanwhile fails the archive.
    fn file(
        &mut self,
        header: &mut tar::Header,
        path: &Path,
        rel: String,
        mode: u32,
        stat_len: u64,
    ) -> Result<(), ArchiveError> {
        // O_NOFOLLOW: if the file was swapped for a symlink since the walk, refuse it.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(path)
            .map_err(read_err(path))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(stat_len);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        // Growth after the stat is cut off: the archive holds the first `size` bytes.
        let mut reader = FileReader {
            inner: file.take(size),
            hasher: Sha256::new(),
            count: 0,
            tracker: &mut *self.tracker,
        };
        let res = self.builder.append_data(header, &rel, &mut reader);
        let (count, digest) = (reader.count, reader.hasher.finalize());
        if let Err(e) = res {
            if self.tracker.cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            return Err(if count < size {
                read_err(path)(e)
            } else {
                write_err(self.archive_tmp)(e)
            });
        }
        if count != size {
            return Err(ArchiveError::Shrank {
                path: path.to_owned(),
                expected: size,
                got: count,
            });
        }
        self.tracker.now.files += 1;
        self.tracker.tick();
        self.entries.push(ManifestEntry {
            path: rel,
            kind: EntryKind::File,
            mode,
            size,
            sha256: Some(hex::encode(digest)),
            target: None,
        });
        Ok(())
    }
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
