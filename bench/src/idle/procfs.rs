//! Readings of `/proc/<pid>` for the idle footprint (and the rollout's CPU windows): RSS and
//! thread count from `status`, CPU ticks from `stat`, and a process's threads grouped by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// Clock ticks per second of the times in `/proc/<pid>/stat`: Linux's `USER_HZ`, 100 on every
/// architecture this project builds for (`getconf CLK_TCK`).
pub(crate) const USER_HZ: f64 = 100.0;

/// A kB field of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `RssFile`, ...) in MB (10^6 bytes).
pub fn parse_status_mb(status: &str, field: &str) -> Option<f64> {
    let kb: f64 = status_field(status, field)?.parse().ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// A count field of `/proc/<pid>/status` (`Threads`).
pub fn parse_status_count(status: &str, field: &str) -> Option<u64> {
    status_field(status, field)?.parse().ok()
}

/// The first word after `field:` on its line.
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()
    })
}

/// utime + stime in clock ticks from `/proc/<pid>/stat` (fields 14 and 15; the command name
/// in field 2 may contain spaces, so count from its closing parenthesis).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A thread's name without its pool index (`sled-io-3` → `sled-io-*`), so that pools of
/// threads count as one group.
pub fn thread_group(comm: &str) -> String {
    let comm = comm.trim();
    match comm.rsplit_once('-') {
        Some((stem, index))
            if !stem.is_empty()
                && !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{stem}-*")
        }
        _ => comm.to_owned(),
    }
}

pub(crate) fn proc_file(pid: i32, name: &str) -> Result<String> {
    let path = PathBuf::from(format!("/proc/{pid}/{name}"));
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// Threads and their CPU ticks by thread group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupTicks {
    pub threads: usize,
    pub ticks: u64,
}

/// Every live thread of `pid`, grouped by `thread_group`, with its utime + stime. A thread
/// that ends while this reads is skipped.
pub(crate) fn thread_ticks(pid: i32) -> Result<BTreeMap<String, GroupTicks>> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut out: BTreeMap<String, GroupTicks> = BTreeMap::new();
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries.flatten() {
        let task = entry.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        let Some(ticks) = parse_cpu_ticks(&stat) else {
            continue;
        };
        let g = out.entry(thread_group(&comm)).or_default();
        g.threads += 1;
        g.ticks += ticks;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_threads_and_cpu_ticks() {
        let status = "Name:\tops-agent\nVmHWM:\t   9000 kB\nVmRSS:\t   8192 kB\n\
                      RssAnon:\t    1024 kB\nRssFile:\t    7168 kB\nThreads:\t11\n";
        let mb = parse_status_mb(status, "VmRSS").unwrap();
        assert!((mb - 8.388608).abs() < 1e-9);
        let anon = parse_status_mb(status, "RssAnon").unwrap();
        assert!((anon - 1.048576).abs() < 1e-9);
        assert_eq!(parse_status_count(status, "Threads"), Some(11));
        assert_eq!(parse_status_mb(status, "VmSwap"), None);
        // A field name that is the prefix of another does not match it.
        assert_eq!(parse_status_mb(status, "Rss"), None);
        let stat = "4242 (ops agent) S 1 4242 4242 0 -1 4194560 900 0 0 0 17 5 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn pools_of_threads_form_one_group() {
        assert_eq!(thread_group("sled-io-3\n"), "sled-io-*");
        assert_eq!(thread_group("sled-io-12"), "sled-io-*");
        assert_eq!(thread_group("tokio-rt-worker"), "tokio-rt-worker");
        assert_eq!(thread_group("log flusher"), "log flusher");
        assert_eq!(thread_group("ops-agent"), "ops-agent");
        assert_eq!(thread_group("-7"), "-7");
    }

    #[test]
    fn this_process_has_a_thread_group() {
        let groups = thread_ticks(std::process::id() as i32).unwrap();
        let threads: usize = groups.values().map(|g| g.threads).sum();
        assert!(threads >= 1, "{groups:?}");
    }
}
