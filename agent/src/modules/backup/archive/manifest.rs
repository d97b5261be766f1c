//! The manifest written next to each archive: what it holds, entry by entry, and what was
//! left out.

use serde::{Deserialize, Serialize};

use crate::config::Compression;

/// What an archive holds, written as `<archive>.manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub job: String,
    /// File name of the archive (no directory).
    pub archive: String,
    pub compression: Compression,
    pub created_unix_ms: i64,
    pub sources: Vec<String>,
    /// sha256 (hex) of the archive file as written.
    pub archive_sha256: String,
    pub archive_size: u64,
    /// Regular files archived and the sum of their sizes.
    pub files: u64,
    pub bytes: u64,
    /// Every archived entry, in archive order.
    pub entries: Vec<ManifestEntry>,
    /// Paths left out (sockets, devices, non-UTF-8 names), with the reason.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

/// Kind of an archived entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One archived entry. `path` is relative, `/`-separated, starting with the source's base name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Bytes of a file's content (0 for the others).
    #[serde(default)]
    pub size: u64,
    /// sha256 (hex) of a file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symlink's target, as stored in the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}
