//! The plumbing of one archive write: the progress and cancellation tracker, the hashing
//! writer, the compressor in front of it, and the guard that removes partial files.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Progress;
use crate::config::Compression;

/// Calls the progress callback every `every_files` files or `every` elapsed, whichever first;
/// also checked while a large file is being read.
pub(super) struct Tracker<'a> {
    every_files: u64,
    every: Duration,
    last_files: u64,
    last_at: Instant,
    pub(super) now: Progress,
    on_progress: &'a mut dyn FnMut(Progress),
    cancel: &'a AtomicBool,
}

impl<'a> Tracker<'a> {
    pub(super) fn new(
        every_files: u64,
        every: Duration,
        on_progress: &'a mut dyn FnMut(Progress),
        cancel: &'a AtomicBool,
    ) -> Self {
        Tracker {
            every_files: every_files.max(1),
            every,
            last_files: 0,
            last_at: Instant::now(),
            now: Progress::default(),
            on_progress,
            cancel,
        }
    }

    pub(super) fn tick(&mut self) {
        let by_files = self.now.files - self.last_files >= self.every_files;
        if by_files || self.last_at.elapsed() >= self.every {
            (self.on_progress)(self.now);
            self.last_files = self.now.files;
            self.last_at = Instant::now();
        }
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Writes a hash of everything that passes through.
pub(super) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub(super) fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
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

/// The compressor in front of the hashed file.
pub(super) enum Encoder {
    Zstd(zstd::Encoder<'static, HashWriter<BufWriter<File>>>),
    Gzip(flate2::write::GzEncoder<HashWriter<BufWriter<File>>>),
}

impl Encoder {
    pub(super) fn new(c: Compression, out: HashWriter<BufWriter<File>>) -> io::Result<Self> {
        Ok(match c {
            Compression::Zstd => {
                let mut e = zstd::Encoder::new(out, 3)?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(6),
            )),
        })
    }

    pub(super) fn finish(self) -> io::Result<HashWriter<BufWriter<File>>> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
        }
    }
}

/// Removes the partial files unless disarmed.
pub(super) struct PartialGuard(pub(super) Vec<PathBuf>);

impl Drop for PartialGuard {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}
