//! A small filesystem of its own for a daemon's data dir (a size-limited tmpfs), which a test
//! can fill up, free again, and remount read-only and back. Needs root (`mount`); the error of
//! [`SmallDisk::mount`] says why it is refused so a test can skip with a visible message.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A tmpfs of `size_mib` MiB mounted on `dir`; lazily unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
    filler: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{program} {}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl SmallDisk {
    /// Creates `dir` and mounts a fresh tmpfs of `size_mib` MiB on it.
    pub fn mount(dir: &Path, size_mib: u32) -> Result<SmallDisk> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.display().to_string();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m"),
                "tmpfs",
                &path,
            ],
        )?;
        Ok(SmallDisk {
            dir: dir.to_path_buf(),
            filler: dir.join("filler"),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a filler file until the filesystem refuses more; returns its size in bytes.
    pub fn fill(&self) -> Result<u64> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .with_context(|| format!("cannot create {}", self.filler.display()))?;
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => {
                    return Err(e).with_context(|| format!("writing {}", self.filler.display()))
                }
            }
        }
        // Whatever fits of a smaller write, so not even a page is left.
        while let Ok(n) = f.write(&chunk[..512]) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        Ok(written)
    }

    /// Removes the filler file: the space is back.
    pub fn free(&self) -> Result<()> {
        std::fs::remove_file(&self.filler)
            .with_context(|| format!("cannot remove {}", self.filler.display()))
    }

    /// Remounts read-only (writes fail with EROFS).
    pub fn remount_ro(&self) -> Result<()> {
        run(
            "mount",
            &["-o", "remount,ro", &self.dir.display().to_string()],
        )
    }

    /// Remounts read-write.
    pub fn remount_rw(&self) -> Result<()> {
        run(
            "mount",
            &["-o", "remount,rw", &self.dir.display().to_string()],
        )
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a daemon that still holds files in it must not keep the mount alive.
        let _ = run("umount", &["-l", &self.dir.display().to_string()]);
    }
}
