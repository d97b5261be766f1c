//! Rotation of a `process` service's stdout/stderr files by copy and truncate: the child keeps
//! its own append-mode descriptors (so it survives an agent restart and never writes into a
//! pipe the agent holds), and the agent, when a file passes `log_max_bytes`, copies it to
//! `<file>.1` (shifting older copies up to `<file>.<log_keep>`) and truncates it in place.
//! Lines the child writes between the copy and the truncation are lost (logrotate's
//! `copytruncate` caveat); with append mode the child's next write lands at the new start.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::config::ServiceConfig;

/// `<file>.<n>`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Rotates `path` when it is larger than `max_bytes`, keeping `keep` copies (0: truncate
/// only). True when it rotated; a missing file is no error.
pub fn rotate(path: &Path, max_bytes: u64, keep: u32) -> io::Result<bool> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max_bytes {
        return Ok(false);
    }
    if keep > 0 {
        for n in (1..keep).rev() {
            let from = numbered(path, n);
            if from.exists() {
                fs::rename(&from, numbered(path, n + 1))?;
            }
        }
        fs::copy(path, numbered(path, 1))?;
    }
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Rotates the service's stdout and stderr files as its config says (each file once, even
/// when both streams go to the same one). Failures are logged, never fatal.
pub fn rotate_logs(service: &str, cfg: &ServiceConfig) {
    let mut files: Vec<&Path> = [&cfg.stdout, &cfg.stderr]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect();
    files.dedup();
    for file in files {
        match rotate(file, cfg.log_max_bytes, cfg.log_keep) {
            Ok(true) => info!(service, file = %file.display(), "service log rotated"),
            Ok(false) => {}
            Err(e) => {
                warn!(service, file = %file.display(), error = %e, "cannot rotate the service log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_is_copied_and_truncated_and_old_copies_shift_up_to_keep() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.out");
        for round in 1..=4u8 {
            fs::write(&log, vec![b'a' + round; 100]).expect("write");
            assert!(rotate(&log, 50, 2).expect("rotate"), "round {round}");
            assert_eq!(fs::metadata(&log).expect("stat").len(), 0);
        }
        // Newest copy first; only two kept.
        assert_eq!(
            fs::read(numbered(&log, 1)).expect(".1"),
            vec![b'a' + 4; 100]
        );
        assert_eq!(
            fs::read(numbered(&log, 2)).expect(".2"),
            vec![b'a' + 3; 100]
        );
        assert!(!numbered(&log, 3).exists());
    }

    #[test]
    fn a_small_or_missing_file_is_left_alone_and_keep_zero_only_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.err");
        assert!(!rotate(&log, 10, 3).expect("missing is fine"));
        fs::write(&log, b"short").expect("write");
        assert!(!rotate(&log, 10, 3).expect("small"));
        assert_eq!(fs::read(&log).expect("read"), b"short");
        fs::write(&log, [b'x'; 20]).expect("write");
        assert!(rotate(&log, 10, 0).expect("rotate"));
        assert_eq!(fs::metadata(&log).expect("stat").len(), 0);
        assert!(!numbered(&log, 1).exists());
    }

    #[test]
    fn an_append_mode_writer_continues_at_the_start_after_truncation() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.out");
        let mut child_fd = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open");
        child_fd.write_all(&[b'x'; 64]).expect("write");
        assert!(rotate(&log, 32, 1).expect("rotate"));
        child_fd.write_all(b"after\n").expect("write");
        assert_eq!(fs::read(&log).expect("read"), b"after\n");
    }
}
