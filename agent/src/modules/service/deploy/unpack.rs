//! A fetched artifact put in place as release `releases/<version>`: a `.tar.gz` / `.tgz` is
//! unpacked (every entry checked first: no absolute path, no `..`, no entry named like the
//! sha marker, a symbolic link's target relative and without any `..` (so no chain of links
//! can leave the release: every link only ever points down from its own directory), only
//! files, directories and links, and at most `max_unpacked` bytes in all, 512 per entry
//! counted) into a temp directory beside `releases/`, anything else is one file (its name
//! kept, mode 0755); the artifact's sha256 is recorded in the release (a new file, never
//! through a link), and the temp directory renamed to `releases/<version>`. On any failure
//! the temp directory is removed and `releases/` is unchanged.

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
    #[error("archive {artifact} unpacks to more than max_unpacked_bytes ({max} bytes); nothing was changed")]
    TooLarge { artifact: String, max: u64 },
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

/// Puts `artifact` (named `name`, sha256 `sha`) in place as release `version` of `releases`;
/// an archive unpacking to more than `max_unpacked` bytes is refused. Blocking.
pub fn install(
    releases: &Releases,
    version: &str,
    artifact: &Path,
    name: &str,
    sha: &str,
    max_unpacked: u64,
) -> Result<PathBuf, UnpackError> {
    let staging = releases
        .dir()
        .join(format!(".incoming-{version}-{}", random_tag()));
    std::fs::create_dir(&staging).map_err(io("create", &staging))?;
    let built = (|| {
        if is_tarball(name) {
            check_archive(artifact, max_unpacked)?;
            unpack(artifact, &staging)?;
        } else {
            let file = staging.join(name);
            std::fs::copy(artifact, &file).map_err(io("copy the artifact to", &file))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .map_err(io("set the mode of", &file))?;
        }
        let marker = staging.join(SHA_FILE);
        write_new(&marker, sha).map_err(io("write", &marker))?;
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

/// Writes `sha` to `path`, a file that must not exist yet (never through a link). Blocking.
pub(super) fn write_new(path: &Path, sha: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .mode(0o644)
        .open(path)?;
    f.write_all(format!("{sha}\n").as_bytes())
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

/// A symbolic link's `target` is accepted only when relative and without any `..`: it then
/// points down from the link's own directory, and so does every link it may lead through,
/// whatever the chain. (A lexical check allowing `..` is defeated by a chain: `a/b/l -> ../..`
/// then `x -> a/b/l/../../../etc`.) Pure.
fn link_target_ok(target: &Path) -> bool {
    inside(target)
}

/// `path` names the sha marker (`SHA_FILE`) somewhere. Pure.
fn names_marker(path: &Path) -> bool {
    path.components()
        .any(|c| c.as_os_str() == std::ffi::OsStr::new(SHA_FILE))
}

/// The bytes an entry of `size` counts toward `max_unpacked`: its data and its header.
fn charged(size: u64) -> u64 {
    size.saturating_add(512)
}

/// Reads every entry and refuses the archive at the first one that is not safe, or once its
/// entries add up to more than `max_unpacked` bytes (before reading that entry's data).
fn check_archive(artifact: &Path, max_unpacked: u64) -> Result<(), UnpackError> {
    let read = |source| UnpackError::Read {
        artifact: artifact.display().to_string(),
        source,
    };
    let mut archive = open(artifact)?;
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(read)? {
        let entry = entry.map_err(read)?;
        total = total.saturating_add(charged(entry.header().entry_size().map_err(read)?));
        if total > max_unpacked {
            return Err(UnpackError::TooLarge {
                artifact: artifact.display().to_string(),
                max: max_unpacked,
            });
        }
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
        if names_marker(&path) {
            return Err(refuse(
                "named like the agent's sha marker (.opsfleet-sha256)",
            ));
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name().map_err(read)? else {
                    return Err(refuse("a link without a target"));
                };
                let ok = if kind == tar::EntryType::Symlink {
                    link_target_ok(&target)
                } else {
                    inside(&target)
                };
                if !ok {
                    return Err(refuse(
                        "a link whose target is absolute or has a `..` (only links pointing down are accepted)",
                    ));
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
    fn links_may_only_point_down() {
        assert!(link_target_ok(Path::new("bin/app")));
        assert!(link_target_ok(Path::new("./lib/app")));
        assert!(
            !link_target_ok(Path::new("../lib/app")),
            "any .. is refused"
        );
        assert!(!link_target_ok(Path::new("a/b/../../..")));
        assert!(!link_target_ok(Path::new("/etc/passwd")));
        assert!(names_marker(Path::new("./.opsfleet-sha256")));
        assert!(names_marker(Path::new("a/.opsfleet-sha256/x")));
        assert!(!names_marker(Path::new("a/opsfleet-sha256")));
        assert!(inside(Path::new("./bin/app")));
        assert!(!inside(Path::new("bin/../../x")));
        assert!(!inside(Path::new("")));
    }
}
