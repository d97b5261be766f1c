//! A fetched artifact put in place as release `releases/<version>`: a `.tar.gz` / `.tgz` is
//! unpacked (every entry checked first: no absolute path, no `..`, no link pointing outside
//! the release, only files, directories and links) into a temp directory beside `releases/`,
//! anything else is one file (its name kept, mode 0755); the artifact's sha256 is recorded in
//! the release, and the temp directory renamed to `releases/<version>`. On any failure the
//! temp directory is removed and `releases/` is unchanged.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

use super::{random_tag, Releases, SHA_FILE};

/// Why an artifact could not become a release.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("archive entry {entry:?} refused: {why}; nothing was changed")]
    Entry { entry: String, why: &'static str },
    #[error("cannot read the archive {artifact}")]
    Read {
        artifact: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> UnpackError {
    let path = path.display().to_string();
    move |source| UnpackError::Io { what, path, source }
}

/// Whether an artifact named `name` is unpacked (a gzipped tar) rather than kept as one file.
pub fn is_tarball(name: &str) -> bool {
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// Puts `artifact` (named `name`, sha256 `sha`) in place as release `version` of `releases`.
/// Blocking.
pub fn install(
    releases: &Releases,
    version: &str,
    artifact: &Path,
    name: &str,
    sha: &str,
) -> Result<PathBuf, UnpackError> {
    let staging = releases
        .dir()
        .join(format!(".incoming-{version}-{}", random_tag()));
    std::fs::create_dir(&staging).map_err(io("create", &staging))?;
    let built = (|| {
        if is_tarball(name) {
            check_archive(artifact)?;
            unpack(artifact, &staging)?;
        } else {
            let file = staging.join(name);
            std::fs::copy(artifact, &file).map_err(io("copy the artifact to", &file))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .map_err(io("set the mode of", &file))?;
        }
        let marker = staging.join(SHA_FILE);
        std::fs::write(&marker, format!("{sha}\n")).map_err(io("write", &marker))?;
        let dir = releases.releases_dir();
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let target = releases.release(version);
        std::fs::rename(&staging, &target).map_err(io("move the release to", &target))?;
        Ok(target)
    })();
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    built
}

/// Opens the archive as a tar stream.
fn open(artifact: &Path) -> Result<tar::Archive<GzDecoder<File>>, UnpackError> {
    let f = File::open(artifact).map_err(|source| UnpackError::Read {
        artifact: artifact.display().to_string(),
        source,
    })?;
    Ok(tar::Archive::new(GzDecoder::new(f)))
}

/// `path` is relative and never leaves its root (no `..`, no root, no prefix). Pure.
fn inside(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Where a link at `entry` pointing to `target` resolves, lexically, within the release;
/// `None` when it leaves it. Pure.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = entry.parent().map_or(0, |p| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Reads every entry and refuses the archive at the first one that is not safe.
fn check_archive(artifact: &Path) -> Result<(), UnpackError> {
    let read = |source| UnpackError::Read {
        artifact: artifact.display().to_string(),
        source,
    };
    let mut archive = open(artifact)?;
    for entry in archive.entries().map_err(read)? {
        let entry = entry.map_err(read)?;
        let path = entry.path().map_err(read)?.into_owned();
        let refuse = |why| UnpackError::Entry {
            entry: path.display().to_string(),
            why,
        };
        if path.is_absolute() {
            return Err(refuse("an absolute path"));
        }
        if !inside(&path) {
            return Err(refuse("a path leaving the release (..)"));
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name().map_err(read)? else {
                    return Err(refuse("a link without a target"));
                };
                let ok = if kind == tar::EntryType::Symlink {
                    link_stays_inside(&path, &target)
                } else {
                    inside(&target)
                };
                if !ok {
                    return Err(refuse("a link pointing outside the release"));
                }
            }
            // GNU long names and pax headers are read by the tar crate itself.
            tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
            | tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader => {}
            _ => return Err(refuse("not a file, directory or link")),
        }
    }
    Ok(())
}

/// Unpacks the (checked) archive into `into` (modes kept without set-id bits).
fn unpack(artifact: &Path, into: &Path) -> Result<(), UnpackError> {
    let read = |source| UnpackError::Read {
        artifact: artifact.display().to_string(),
        source,
    };
    let mut archive = open(artifact)?;
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let path = entry.path().map_err(read)?.display().to_string();
        let done = entry.unpack_in(into).map_err(read)?;
        if !done {
            return Err(UnpackError::Entry {
                entry: path,
                why: "a path leaving the release",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_against_the_release_root() {
        assert!(link_stays_inside(
            Path::new("bin/app"),
            Path::new("../lib/app")
        ));
        assert!(link_stays_inside(Path::new("app"), Path::new("bin/app")));
        assert!(!link_stays_inside(
            Path::new("app"),
            Path::new("../etc/passwd")
        ));
        assert!(!link_stays_inside(
            Path::new("bin/app"),
            Path::new("../../x")
        ));
        assert!(!link_stays_inside(
            Path::new("bin/app"),
            Path::new("/etc/passwd")
        ));
        assert!(inside(Path::new("./bin/app")));
        assert!(!inside(Path::new("bin/../../x")));
        assert!(!inside(Path::new("")));
    }
}
