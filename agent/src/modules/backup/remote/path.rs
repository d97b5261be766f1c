//! The `path` destination: a second directory (a mounted NAS). Copies go to a hidden
//! `.partial` file, synced, then renamed into place, so a listed object is always complete.
//! Each object's fingerprint is recorded in a hidden sidecar (`.<name>.sum`) with the
//! object's inode, mtime and ctime once in place; it holds while those are unchanged, so a
//! reconciliation reads no archive back unless it was replaced or written since.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Destination, Fingerprint, RemoteError, RemoteObject};
use crate::modules::backup::archive::sha256_file;
use crate::modules::backup::naming::PARTIAL_SUFFIX;

pub struct PathDestination {
    pub root: PathBuf,
    pub label: String,
}

impl PathDestination {
    fn io(&self, op: &'static str, name: &str) -> impl FnOnce(io::Error) -> RemoteError {
        let (destination, name) = (self.label.clone(), name.to_owned());
        move |source| RemoteError::Io {
            op,
            destination,
            name,
            source,
        }
    }

    /// The hidden sidecar of object `name` (listed objects never start with `.`).
    fn sidecar(&self, name: &str) -> PathBuf {
        self.root.join(format!(".{name}.sum"))
    }

    /// Records `sum` for the object now at `dest`: written beside it, then renamed.
    fn write_sidecar(&self, name: &str, dest: &Path, sum: &Fingerprint) -> io::Result<()> {
        let sidecar = Sidecar {
            sha256: sum.sha256.clone(),
            size: sum.size,
            file: FileId::of(&fs::metadata(dest)?),
        };
        let bytes = serde_json::to_vec(&sidecar).map_err(io::Error::other)?;
        let tmp = self.root.join(format!(".{name}.sum{PARTIAL_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        let res = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, self.sidecar(name)));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// `name` inside the root; names come from archive names (no `/`), checked anyway.
    fn object(&self, name: &str) -> Result<PathBuf, RemoteError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(RemoteError::BadName {
                name: name.to_owned(),
            });
        }
        Ok(self.root.join(name))
    }
}

/// What the sidecar of an object holds: its fingerprint, and the object's file as it was
/// when the fingerprint was recorded.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sidecar {
    sha256: String,
    size: u64,
    file: FileId,
}

/// What changes when a file is replaced (inode) or written (mtime, ctime, size); ctime also
/// moves when mtime is set back.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileId {
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Copies `from` into the new file `to` (owner-only), synced.
fn copy_synced(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    io::copy(&mut src, &mut dst)?;
    dst.sync_all()
}

impl Destination for PathDestination {
    fn label(&self) -> &str {
        &self.label
    }

    fn put(&self, name: &str, from: &Path, sum: &Fingerprint) -> Result<(), RemoteError> {
        let dest = self.object(name)?;
        fs::create_dir_all(&self.root).map_err(self.io("create", name))?;
        // The old object's sidecar goes first: it must never vouch for the new one.
        remove_if_there(&self.sidecar(name)).map_err(self.io("replace", name))?;
        let tmp = self.root.join(format!(".{name}{PARTIAL_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        let res = copy_synced(from, &tmp).and_then(|()| fs::rename(&tmp, &dest));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(self.io("write", name))?;
        (self.write_sidecar(name, &dest, sum)).map_err(self.io("record the sum of", name))?;
        if let Ok(d) = File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn recorded(&self, name: &str) -> Result<Option<Fingerprint>, RemoteError> {
        let dest = self.object(name)?;
        let bytes = match fs::read(self.sidecar(name)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read the sum of", name)(e)),
        };
        // A sidecar that does not parse vouches for nothing: the object is read back.
        let Ok(sidecar) = serde_json::from_slice::<Sidecar>(&bytes) else {
            return Ok(None);
        };
        let file = match fs::metadata(&dest) {
            Ok(m) => FileId::of(&m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("stat", name)(e)),
        };
        Ok((file == sidecar.file).then_some(Fingerprint {
            sha256: sidecar.sha256,
            size: sidecar.size,
        }))
    }

    fn get(&self, name: &str, to: &Path) -> Result<(), RemoteError> {
        let src = self.object(name)?;
        copy_synced(&src, to).map_err(self.io("read", name))
    }

    fn list(&self) -> Result<Vec<RemoteObject>, RemoteError> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("list", "")(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(self.io("list", ""))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let meta = entry.metadata().map_err(self.io("stat", &name))?;
            if meta.is_file() && !name.starts_with('.') {
                out.push(RemoteObject {
                    name,
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), RemoteError> {
        let p = self.object(name)?;
        remove_if_there(&p).map_err(self.io("delete", name))?;
        remove_if_there(&self.sidecar(name)).map_err(self.io("delete", name))
    }

    fn read_back(&self, name: &str) -> Result<Fingerprint, RemoteError> {
        let p = self.object(name)?;
        let (sha256, size) = sha256_file(&p).map_err(self.io("read back", name))?;
        Ok(Fingerprint { sha256, size })
    }
}

/// Removes `path`; gone already is fine.
fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        res => res,
    }
}
