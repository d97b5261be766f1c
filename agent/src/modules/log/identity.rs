//! File identity for the log tailer (blocking I/O): (device, inode), the fingerprint of a
//! file's first bytes, positioned reads, and finding a rotated file again in its directory
//! (by identity after a rename, by fingerprint for a copytruncate's copy).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A file's identity on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ident {
    pub dev: u64,
    pub ino: u64,
}

impl Ident {
    pub fn of(m: &std::fs::Metadata) -> Self {
        Ident {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// Hex of the first 16 bytes of sha256(data).
pub fn fingerprint(data: &[u8]) -> String {
    hex::encode(&Sha256::digest(data)[..16])
}

/// Up to `len` bytes at `offset` (fewer at the end of the file).
pub fn read_at(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Fingerprint of the first `len` bytes of an open file, if it has that many.
pub fn prefix_fp(file: &File, len: u64) -> Option<String> {
    let data = read_at(file, 0, len).ok()?;
    (data.len() as u64 == len).then(|| fingerprint(&data))
}

pub fn has_glob_meta(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

pub fn parent_of(path: &str) -> PathBuf {
    Path::new(path)
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned)
}

/// Opens `path` and checks it is still `ident` (it may have been rotated since the stat).
pub fn open_checked(path: &Path, ident: Ident) -> Option<File> {
    let f = File::open(path).ok()?;
    let m = f.metadata().ok()?;
    (Ident::of(&m) == ident).then_some(f)
}

/// The file with identity `ident` in `dir` (a renamed file after a restart).
pub fn find_ident(dir: &Path, ident: Ident) -> Option<File> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if let Ok(m) = std::fs::metadata(&path) {
            if m.is_file() && Ident::of(&m) == ident {
                return open_checked(&path, ident);
            }
        }
    }
    None
}

/// A file in `dir` not `tracked` whose first `fp_len` bytes hash to `fp` and that holds at
/// least `min_size` bytes: the copy a copytruncate left.
pub fn find_copy(
    dir: &Path,
    fp: &str,
    fp_len: u64,
    min_size: u64,
    tracked: impl Fn(&Ident) -> bool,
) -> Option<(Ident, String, File)> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(m) = std::fs::metadata(&path) else {
            continue;
        };
        let ident = Ident::of(&m);
        if !m.is_file() || m.len() < min_size || tracked(&ident) {
            continue;
        }
        let Some(f) = open_checked(&path, ident) else {
            continue;
        };
        if prefix_fp(&f, fp_len).as_deref() == Some(fp) {
            return Some((ident, path.to_string_lossy().into_owned(), f));
        }
    }
    None
}
