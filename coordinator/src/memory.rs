//! The allocator side of the coordinator's memory. glibc malloc gives each thread that
//! allocates under contention an arena of its own (up to 8 per core) and keeps the pages a
//! freed burst leaves behind; a burst of API pages or a snapshot of 100,000 rows, spread over
//! the runtime's workers, then stays in RSS long after it was freed. So the process caps the
//! arenas at start (`limit_arenas`) and hands free pages back now and then (`trim_loop`).
//! Elsewhere than glibc both are no-ops.

use std::time::Duration;

use opsfleet_agent::footprint::ArenaCap;
use tokio_util::sync::CancellationToken;

/// How often free heap pages go back to the kernel: often enough that RSS follows the live
/// heap within seconds, rarely enough that the trim (a walk of the free lists) is noise.
pub const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Caps glibc's malloc arenas (the agent's cap, `opsfleet_agent::footprint`: two arenas,
/// unless `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` set them). Call once, before the runtime
/// starts its threads.
pub fn limit_arenas() -> ArenaCap {
    opsfleet_agent::footprint::cap_malloc_arenas()
}

/// Returns the heap's free pages to the kernel; whether any were returned.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the arenas' locks itself; no pointers are involved.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every `every` on a blocking thread until `cancel` fires.
pub async fn trim_loop(every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if tokio::task::spawn_blocking(trim).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_hands_back_a_freed_burst() {
        // A burst of small blocks freed out of order leaves free pages inside the heap,
        // which only a trim returns (glibc); elsewhere trim is a no-op that says so.
        let burst: Vec<Vec<u8>> = (0..20_000).map(|i| vec![(i % 251) as u8; 1000]).collect();
        let kept: Vec<Vec<u8>> = burst
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 1000 == 999)
            .map(|(_, v)| v)
            .collect();
        let returned = trim();
        assert_eq!(kept.len(), 20);
        assert_eq!(returned, cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
