//! The `path` destination: a second directory (a mounted NAS). Copies go to a hidden
//! `.partial` file, synced, then renamed into place, so a listed object is always complete.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Destination, RemoteError, RemoteObject};
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

    fn put(&self, name: &str, from: &Path) -> Result<(), RemoteError> {
        let dest = self.object(name)?;
        fs::create_dir_all(&self.root).map_err(self.io("create", name))?;
        let tmp = self.root.join(format!(".{name}{PARTIAL_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        let res = copy_synced(from, &tmp).and_then(|()| fs::rename(&tmp, &dest));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(self.io("write", name))?;
        if let Ok(d) = File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(())
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
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("delete", name)(e)),
        }
    }

    fn read_back(&self, name: &str) -> Result<(String, u64), RemoteError> {
        let p = self.object(name)?;
        sha256_file(&p).map_err(self.io("read back", name))
    }
}
