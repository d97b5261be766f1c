//! Archive names (`<job>-<YYYYMMDDTHHMMSS.mmmZ>.tar.zst|.tar.gz`): formatting, strict parsing,
//! and listing a job's complete archives (those with a manifest) in a destination directory.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::Compression;

/// Suffix of the manifest written next to each archive.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// Suffix of files being written; never a valid archive or manifest name.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// One complete archive of a job found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    pub name: String,
    /// The timestamp in the name.
    pub time: SystemTime,
    pub compression: Compression,
}

/// `20240131T235959.123Z` (UTC, millisecond precision, no characters a shell or URL minds).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// Inverse of `timestamp`; `None` unless `s` has exactly that shape.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 20
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 15 | 19) || c.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15],
        &s[16..19]
    );
    humantime::parse_rfc3339(&rfc).ok()
}

pub fn archive_name(job: &str, at: SystemTime, c: Compression) -> String {
    format!("{job}-{}{}", timestamp(at), c.suffix())
}

/// Timestamp and compression of `name` when it is an archive name of `job`.
pub fn parse_archive_name(job: &str, name: &str) -> Option<(SystemTime, Compression)> {
    let rest = name.strip_prefix(job)?.strip_prefix('-')?;
    for c in [Compression::Zstd, Compression::Gzip] {
        if let Some(ts) = rest.strip_suffix(c.suffix()) {
            return parse_timestamp(ts).map(|t| (t, c));
        }
    }
    None
}

/// The UTF-8 names in `dest`; a missing directory has none.
fn dir_names(dest: &Path) -> io::Result<std::collections::HashSet<String>> {
    let rd = match std::fs::read_dir(dest) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut names = std::collections::HashSet::new();
    for entry in rd {
        if let Some(n) = entry?.file_name().to_str() {
            names.insert(n.to_owned());
        }
    }
    Ok(names)
}

/// The job's archives in `dest` that have their manifest, oldest first (ties by name).
/// A missing directory holds no archives.
pub fn list_archives(dest: &Path, job: &str) -> io::Result<Vec<ArchiveFile>> {
    let names = dir_names(dest)?;
    let mut out: Vec<ArchiveFile> = names
        .iter()
        .filter(|n| names.contains(&format!("{n}{MANIFEST_SUFFIX}")))
        .filter_map(|n| {
            parse_archive_name(job, n).map(|(time, compression)| ArchiveFile {
                name: n.clone(),
                time,
                compression,
            })
        })
        .collect();
    out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
    Ok(out)
}

/// Leftovers of an interrupted run of `job` in `dest`: `.partial` files and manifests whose
/// archive is missing. Only names that parse as this job's are returned.
pub fn leftovers(dest: &Path, job: &str) -> io::Result<Vec<String>> {
    let names = dir_names(dest)?;
    let ours = |n: &str| {
        let n = n.strip_suffix(MANIFEST_SUFFIX).unwrap_or(n);
        parse_archive_name(job, n).is_some()
    };
    let mut out: Vec<String> = names
        .iter()
        .filter(|n| {
            if let Some(inner) = n
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(PARTIAL_SUFFIX))
            {
                return ours(inner);
            }
            match n.strip_suffix(MANIFEST_SUFFIX) {
                Some(archive) => ours(archive) && !names.contains(archive),
                None => false,
            }
        })
        .cloned()
        .collect();
    out.sort();
    Ok(out)
}

/// Age of an archive at `now` (zero for one stamped in the future).
pub fn age(now: SystemTime, t: SystemTime) -> Duration {
    now.duration_since(t).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_parse_strictly() {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_706_745_599_123);
        assert_eq!(timestamp(t), "20240131T235959.123Z");
        let name = archive_name("app-data", t, Compression::Zstd);
        assert_eq!(name, "app-data-20240131T235959.123Z.tar.zst");
        assert_eq!(
            parse_archive_name("app-data", &name),
            Some((t, Compression::Zstd))
        );
        // Another job sharing a prefix does not claim it.
        assert_eq!(parse_archive_name("app", &name), None);
        assert_eq!(
            parse_archive_name("app", "app-20240131T235959.123Z.tar.gz"),
            Some((t, Compression::Gzip))
        );
        for bad in [
            "app-20240131T235959.123Z.tar",
            "app-20240131T235959Z.tar.zst",
            "app-2024013XT235959.123Z.tar.zst",
            "app-20241331T235959.123Z.tar.zst",
            "app-../20240131T235959.123Z.tar.zst",
        ] {
            assert_eq!(parse_archive_name("app", bad), None, "{bad}");
        }
    }
}
