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

/// Resident memory of one process by what backs it, in kB, from `/proc/<pid>/smaps`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssSplit {
    /// The executable's own mappings (code, constants, relocated data).
    pub exe_kb: u64,
    /// Other files: the C library, the loader, any other mapped file.
    pub libs_kb: u64,
    /// The heap and anonymous mappings (malloc arenas, sled's cache).
    pub heap_kb: u64,
    /// Thread stacks (the main `[stack]`; other threads' stacks are anonymous mappings and
    /// count as heap here).
    pub stack_kb: u64,
}

/// Sums `Rss:` of every mapping in a `/proc/<pid>/smaps` text by `RssSplit`'s classes (pure);
/// `exe` is the executable's path as `/proc/<pid>/exe` names it.
pub fn rss_split(smaps: &str, exe: &str) -> RssSplit {
    let mut split = RssSplit::default();
    let mut class = 0u8;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            // A mapping header: range perms offset dev inode [path].
            let path = line.split_whitespace().nth(5).map(|_| {
                let mut f = line.splitn(6, ' ');
                f.nth(5).unwrap_or("").trim_start()
            });
            let path = path.map(|p| p.strip_suffix(" (deleted)").unwrap_or(p));
            class = match path {
                Some(p) if p == exe => 0,
                Some("[stack]") => 3,
                Some(p) if p.starts_with('/') => 1,
                _ => 2,
            };
        } else if let Some(kb) = line
            .strip_prefix("Rss:")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
        {
            match class {
                0 => split.exe_kb += kb,
                1 => split.libs_kb += kb,
                3 => split.stack_kb += kb,
                _ => split.heap_kb += kb,
            }
        }
    }
    split
}

/// `rss_split` of a running process.
pub(crate) fn read_rss_split(pid: i32) -> Result<RssSplit> {
    let smaps = proc_file(pid, "smaps")?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("cannot read /proc/{pid}/exe"))?;
    let exe = exe.to_string_lossy();
    Ok(rss_split(
        &smaps,
        exe.strip_suffix(" (deleted)").unwrap_or(&exe),
    ))
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
    fn smaps_splits_into_executable_libraries_heap_and_stack() {
        let smaps = "\
55ccb658d000-55ccb6856000 r--p 00000000 fd:01 4242                       /opt/ops agent/ops-agent
Size:               2852 kB
Rss:                 100 kB
55ccb6856000-55ccb72c1000 r-xp 002c9000 fd:01 4242                       /opt/ops agent/ops-agent
Rss:                2000 kB
55ccb731a000-55ccb731d000 rw-p 00d8b000 fd:01 4242                       /opt/ops agent/ops-agent
Rss:                  12 kB
55ccb8000000-55ccb8100000 rw-p 00000000 00:00 0                          [heap]
Rss:                 600 kB
7f1a55548000-7f1a57076000 rw-p 00000000 00:00 0
Rss:                  40 kB
7f1a574a0000-7f1a575f6000 r-xp 00028000 fd:01 77                         /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1200 kB
7ffe0000-7ffe1000 rw-p 00000000 00:00 0                                  [stack]
Rss:                  24 kB
7ffe1000-7ffe2000 r-xp 00000000 00:00 0                                  [vdso]
Rss:                   4 kB
";
        assert_eq!(
            rss_split(smaps, "/opt/ops agent/ops-agent"),
            RssSplit {
                exe_kb: 2112,
                libs_kb: 1200,
                heap_kb: 644,
                stack_kb: 24,
            }
        );
    }

    #[test]
    fn this_process_splits_its_rss() {
        let split = read_rss_split(std::process::id() as i32).unwrap();
        assert!(split.exe_kb > 0, "{split:?}");
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
