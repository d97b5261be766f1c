//! Process-wide memory settings of the agent: how many malloc arenas glibc may keep (applied
//! by `main` before any other thread starts), and the release of the code pages only the
//! start-up ran (once the agent runs).
//!
//! glibc hands a thread that finds the arenas busy a new arena of its own, up to 8 per core,
//! and every arena keeps its own free lists and partly used pages. The agent's threads are
//! mostly idle pools (tokio's worker and blocking threads, sled's IO pool and flusher), each
//! allocating a little now and then: their arenas are resident memory that buys no speed. Two
//! arenas bound that; an operator's own `MALLOC_ARENA_MAX` (or glibc tunable) still wins.

/// Most malloc arenas the agent lets glibc keep (the main one and one for its threads).
pub const MALLOC_ARENAS: i32 = 2;

/// What `cap_malloc_arenas` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaCap {
    /// The cap was set to this many arenas.
    Applied(i32),
    /// The environment sets the arena count (`MALLOC_ARENA_MAX`, or `arena_max` in
    /// `GLIBC_TUNABLES`): left as the operator chose.
    FromEnvironment,
    /// Not glibc (musl, another OS): nothing to cap.
    Unsupported,
    /// glibc refused the setting.
    Refused,
}

/// Whether the environment already chooses the arena count (pure: the two variables' values).
pub fn set_by_environment(arena_max: Option<&str>, tunables: Option<&str>) -> bool {
    arena_max.is_some() || tunables.is_some_and(|t| t.contains("glibc.malloc.arena_max"))
}

/// Caps glibc's malloc arenas at `MALLOC_ARENAS` unless the environment sets them. Call it
/// first thing in `main`: arenas already created stay.
pub fn cap_malloc_arenas() -> ArenaCap {
    let arena_max = std::env::var("MALLOC_ARENA_MAX").ok();
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    if set_by_environment(arena_max.as_deref(), tunables.as_deref()) {
        return ArenaCap::FromEnvironment;
    }
    set_arena_max(MALLOC_ARENAS)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(n: i32) -> ArenaCap {
    // SAFETY: mallopt only changes a parameter of glibc's allocator (it takes the allocator's
    // own lock); no memory is handed over and no pointer is involved.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) } == 1;
    if ok {
        ArenaCap::Applied(n)
    } else {
        ArenaCap::Refused
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_n: i32) -> ArenaCap {
    ArenaCap::Unsupported
}

/// Hands the free memory of glibc's malloc arenas back to the kernel (`malloc_trim(0)`): what
/// the start-up allocated and freed (config parsing, sled recovery, the first connect) stays
/// resident otherwise. Returns whether glibc released anything; `false` where there is no
/// glibc.
pub fn trim_heap() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim only returns free memory of glibc's own arenas to the kernel (under
    // the allocator's lock); no pointer the program holds is touched.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// The executable's pages only the start-up used (argument parsing, config loading and checks,
/// sled recovery, the first connect, the loader's relocation table) stay mapped, and count as
/// resident, for the process's whole life. `release_startup_code` asks the kernel to reclaim
/// the executable's read-only mappings (code, constants, relocation and unwind tables;
/// `MADV_PAGEOUT`, Linux 5.4+): the pages the running agent uses come back on their next use
/// (from the page cache, or the disk), the start-up's stay out. Reclaiming never changes a
/// page's contents: a file page is read again from the file, an anonymous one (the relocated
/// read-only data) is swapped or, without swap, left in place.
///
/// Two kernel habits map far more than the running agent uses when its pages come back:
/// * read-around: a fault on an uncached page reads the device's read-ahead window around it
///   (128 KiB to several MiB); `MADV_RANDOM` makes it read the one page — on the read-only
///   data; recent kernels (6.18 measured) ignore it on executable mappings;
/// * fault-around: a fault maps up to 16 neighbouring pages that are in the page cache, whatever
///   the advice. So the executable's pages that no process maps are dropped from the page
///   cache (`POSIX_FADV_DONTNEED`, advice only: pages another process maps stay).
///
/// Measured: an idle agent touches about 1.5 MB of its code in 40 s, yet 4.5–5 MB of it stays
/// resident; the advice saves about 0.45 MB of read-only data (docs/benchmarks.md, "Agent at
/// <= 8 MB").
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read {what}")]
    Read {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("madvise({advice:?}) of {len} bytes at {start:#x} failed")]
    Advise {
        advice: Advice,
        start: usize,
        len: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot drop the executable's cached pages (posix_fadvise DONTNEED)")]
    DropCache {
        #[source]
        source: std::io::Error,
    },
    #[error("MADV_PAGEOUT is Linux-only")]
    Unsupported,
}

/// The read-only mappings of `exe` (`r-xp`, `r--p`) in a `/proc/<pid>/maps` text, as (start,
/// length) (pure). A replaced executable's mappings (` (deleted)`) still count.
pub fn code_ranges(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?.trim_start();
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            if !matches!(perms, "r-xp" | "r--p") || path != exe {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let start = usize::from_str_radix(a, 16).ok()?;
            let end = usize::from_str_radix(b, 16).ok()?;
            (end > start).then_some((start, end - start))
        })
        .collect()
}

/// Asks the kernel to page out the executable's read-only mappings (see `ReleaseError`);
/// returns the bytes advised.
pub fn release_startup_code() -> Result<usize, ReleaseError> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|source| ReleaseError::Read {
        what: "/proc/self/exe",
        source,
    })?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|source| ReleaseError::Read {
        what: "/proc/self/maps",
        source,
    })?;
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    let mut advised = 0;
    for (start, len) in code_ranges(&maps, exe) {
        advise(start, len, Advice::Random)?;
        advise(start, len, Advice::PageOut)?;
        advised += len;
    }
    // The executable as the process maps it (still the right file after an upgrade replaced
    // the path).
    let file = std::fs::File::open("/proc/self/exe").map_err(|source| ReleaseError::Read {
        what: "/proc/self/exe",
        source,
    })?;
    drop_cached(&file)?;
    Ok(advised)
}

/// The advice `release_startup_code` gives the executable's mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// `MADV_RANDOM`: a fault reads only its own page.
    Random,
    /// `MADV_PAGEOUT`: reclaim the mapped pages now.
    PageOut,
}

#[cfg(target_os = "linux")]
fn advise(start: usize, len: usize, advice: Advice) -> Result<(), ReleaseError> {
    let flag = match advice {
        Advice::Random => libc::MADV_RANDOM,
        Advice::PageOut => libc::MADV_PAGEOUT,
    };
    // SAFETY: the range is one whole read-only mapping of this process's own executable, read
    // from /proc/self/maps. MADV_RANDOM only changes how much a fault reads ahead;
    // MADV_PAGEOUT only reclaims pages without changing their contents (a file page is read
    // again from the file, an anonymous one swapped in): nothing is unmapped, no protection
    // changes, and no memory the program owns changes.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, flag) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ReleaseError::Advise {
            advice,
            start,
            len,
            source: std::io::Error::last_os_error(),
        })
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: usize, _len: usize, _advice: Advice) -> Result<(), ReleaseError> {
    Err(ReleaseError::Unsupported)
}

/// Drops the file's cached pages that no process maps (`POSIX_FADV_DONTNEED`).
#[cfg(target_os = "linux")]
fn drop_cached(file: &std::fs::File) -> Result<(), ReleaseError> {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only advises the kernel about the page cache of an open file
    // descriptor this function borrows; no memory is handed over.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ReleaseError::DropCache {
            source: std::io::Error::from_raw_os_error(rc),
        })
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_cached(_file: &std::fs::File) -> Result<(), ReleaseError> {
    Err(ReleaseError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_setting_wins() {
        assert!(!set_by_environment(None, None));
        assert!(set_by_environment(Some("4"), None));
        assert!(set_by_environment(None, Some("glibc.malloc.arena_max=8")));
        assert!(set_by_environment(
            None,
            Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=1")
        ));
        // Other tunables leave the arena count to the agent.
        assert!(!set_by_environment(
            None,
            Some("glibc.malloc.tcache_count=0")
        ));
    }

    #[test]
    fn code_ranges_are_the_executables_read_only_mappings() {
        let maps = "\
55ccb658d000-55ccb6856000 r--p 00000000 fd:01 4242 /usr/bin/ops-agent
55ccb6856000-55ccb72c1000 r-xp 002c9000 fd:01 4242 /usr/bin/ops-agent
55ccb72c1000-55ccb731a000 r--p 00d33000 fd:01 4242 /usr/bin/ops-agent
55ccb731a000-55ccb731d000 rw-p 00d8b000 fd:01 4242 /usr/bin/ops-agent
7f1a574a0000-7f1a575f6000 r-xp 00028000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1a55548000-7f1a57076000 rw-p 00000000 00:00 0
7ffe1000-7ffe2000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(
            code_ranges(maps, "/usr/bin/ops-agent"),
            vec![
                (0x55ccb658d000, 0x55ccb6856000 - 0x55ccb658d000),
                (0x55ccb6856000, 0x55ccb72c1000 - 0x55ccb6856000),
                (0x55ccb72c1000, 0x55ccb731a000 - 0x55ccb72c1000),
            ]
        );
        // An executable replaced on disk (an upgrade) is still the one running.
        let deleted = "1000-3000 r-xp 00000000 fd:01 1 /opt/a b/ops-agent (deleted)\n";
        assert_eq!(
            code_ranges(deleted, "/opt/a b/ops-agent"),
            vec![(0x1000, 0x2000)]
        );
        assert!(code_ranges(maps, "/usr/bin/other").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_test_binarys_pages_are_released_and_still_run() {
        let advised = release_startup_code().unwrap();
        assert!(advised > 0);
        // The code and constants paged out work again (their pages come back on use).
        assert_eq!(code_ranges("", "x"), Vec::new());
        assert!(set_by_environment(Some("1"), None));
    }

    /// The `VmFlags` of each of the executable's read-only mappings in `/proc/self/smaps`.
    #[cfg(target_os = "linux")]
    fn exe_read_only_vm_flags() -> Vec<String> {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy().into_owned();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut out = Vec::new();
        let mut ours = false;
        for line in smaps.lines() {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                if ours {
                    out.push(flags.trim().to_owned());
                }
                ours = false;
            } else if !code_ranges(line, &exe).is_empty() {
                ours = true;
            }
        }
        out
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_mappings_read_only_the_faulting_page() {
        release_startup_code().unwrap();
        let flags = exe_read_only_vm_flags();
        assert!(!flags.is_empty());
        // `rr`: MADV_RANDOM, no read-around when a released page comes back.
        for f in &flags {
            assert!(f.split_whitespace().any(|f| f == "rr"), "{flags:?}");
        }
    }

    #[test]
    fn trimming_the_heap_is_harmless() {
        let kept: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
        drop((0..256).map(|_| vec![0u8; 64 * 1024]).collect::<Vec<_>>());
        let _ = trim_heap();
        assert!(kept
            .iter()
            .enumerate()
            .all(|(i, v)| v.iter().all(|b| *b == i as u8)));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_cap() {
        assert_eq!(
            set_arena_max(MALLOC_ARENAS),
            ArenaCap::Applied(MALLOC_ARENAS)
        );
    }
}
