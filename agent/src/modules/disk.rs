//! The disk module: statvfs of each configured path (bytes and inodes), ok/warn/crit levels
//! with hysteresis, one `DiskUsage` sample per path and run. `paths = []` or
//! `all_mounts = true` adds every real mount (see `mounts`).

pub mod mounts;

use opsfleet_report::ErrorChain;
use std::collections::HashMap;
use std::path::PathBuf;

use opsfleet_proto::pb;
use tracing::warn;

use super::{Module, ModuleCtx, ModuleError};
use crate::config::DiskConfig;

/// Disk pressure level; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Ok,
    Warn,
    Crit,
}

impl Level {
    pub fn to_pb(self) -> pb::DiskLevel {
        match self {
            Level::Ok => pb::DiskLevel::Ok,
            Level::Warn => pb::DiskLevel::Warn,
            Level::Crit => pb::DiskLevel::Crit,
        }
    }
}

/// Level thresholds in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warn: f64,
    pub crit: f64,
    pub hysteresis: f64,
}

/// Next level for a usage percentage. Going up (or staying) is immediate at the threshold;
/// going down a level needs usage below that level's threshold minus the hysteresis. Without a
/// previous level the plain thresholds apply.
pub fn next_level(prev: Option<Level>, used_percent: f64, t: &Thresholds) -> Level {
    let raw = if used_percent >= t.crit {
        Level::Crit
    } else if used_percent >= t.warn {
        Level::Warn
    } else {
        Level::Ok
    };
    let Some(prev) = prev else { return raw };
    if raw >= prev {
        return raw;
    }
    let mut level = prev;
    if level == Level::Crit && used_percent < t.crit - t.hysteresis {
        level = Level::Warn;
    }
    if level == Level::Warn && used_percent < t.warn - t.hysteresis {
        level = Level::Ok;
    }
    level
}

/// Raw numbers of one file system, from statvfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// Available to unprivileged users (what `df` shows).
    pub avail_bytes: u64,
    pub inodes_total: u64,
    pub inodes_used: u64,
}

impl Usage {
    /// Used share of the space users can have, like `df`: used / (used + avail), in 1/100 %.
    pub fn used_basis_points(&self) -> u32 {
        basis_points(
            self.used_bytes,
            self.used_bytes.saturating_add(self.avail_bytes),
        )
    }

    pub fn inodes_used_basis_points(&self) -> u32 {
        basis_points(self.inodes_used, self.inodes_total)
    }

    /// The percentage levels are judged on: the worse of space and inodes.
    pub fn pressure_percent(&self) -> f64 {
        f64::from(
            self.used_basis_points()
                .max(self.inodes_used_basis_points()),
        ) / 100.0
    }
}

fn basis_points(part: u64, whole: u64) -> u32 {
    if whole == 0 {
        return 0;
    }
    let bp = u128::from(part.min(whole)) * 10_000 / u128::from(whole);
    u32::try_from(bp).unwrap_or(10_000)
}

/// The sample for one path given the previous level (pure); returns the new level too.
pub fn disk_body(
    path: &str,
    usage: &Usage,
    prev: Option<Level>,
    t: &Thresholds,
) -> (pb::DiskUsage, Level) {
    let level = next_level(prev, usage.pressure_percent(), t);
    let changed = prev.is_some_and(|p| p != level);
    let body = pb::DiskUsage {
        path: path.to_owned(),
        total_bytes: usage.total_bytes,
        used_bytes: usage.used_bytes,
        avail_bytes: usage.avail_bytes,
        inodes_total: usage.inodes_total,
        inodes_used: usage.inodes_used,
        level: level.to_pb() as i32,
        previous_level: prev.map_or(pb::DiskLevel::Unspecified, Level::to_pb) as i32,
        level_changed: changed,
        used_basis_points: usage.used_basis_points(),
        inodes_used_basis_points: usage.inodes_used_basis_points(),
    };
    (body, level)
}

/// statvfs of one path.
#[allow(clippy::unnecessary_cast)] // field widths differ between platforms
pub fn stat_usage(path: &std::path::Path) -> Result<Usage, nix::Error> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let frag = st.fragment_size() as u64;
    let blocks = st.blocks() as u64;
    let free = st.blocks_free() as u64;
    let avail = st.blocks_available() as u64;
    let files = st.files() as u64;
    let files_free = st.files_free() as u64;
    Ok(Usage {
        total_bytes: blocks.saturating_mul(frag),
        used_bytes: blocks.saturating_sub(free).saturating_mul(frag),
        avail_bytes: avail.saturating_mul(frag),
        inodes_total: files,
        inodes_used: files.saturating_sub(files_free),
    })
}

/// The configured paths plus every real mount whose device none of them is on.
fn with_mounts(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| m.dev());
    let mut seen: Vec<u64> = paths.iter().filter_map(|p| dev(p)).collect();
    match mounts::discover() {
        Ok(found) => {
            for m in found {
                match dev(&m) {
                    Some(d) if seen.contains(&d) => {}
                    Some(d) => {
                        seen.push(d);
                        paths.push(m);
                    }
                    // Not stat-able now (e.g. permissions): let statvfs report it.
                    None => paths.push(m),
                }
            }
        }
        Err(e) => {
            warn!(error = %ErrorChain(&e), "cannot read /proc/self/mountinfo; only configured paths")
        }
    }
    paths
}

pub struct DiskModule {
    paths: Vec<PathBuf>,
    /// Also every real mount, rediscovered on each run.
    all_mounts: bool,
    thresholds: Thresholds,
    levels: HashMap<PathBuf, Level>,
}

impl DiskModule {
    pub fn new(cfg: &DiskConfig) -> Self {
        DiskModule {
            paths: cfg.paths.clone(),
            all_mounts: cfg.all_mounts || cfg.paths.is_empty(),
            thresholds: Thresholds {
                warn: cfg.warn_percent,
                crit: cfg.crit_percent,
                hysteresis: cfg.hysteresis_percent,
            },
            levels: HashMap::new(),
        }
    }
}

#[async_trait::async_trait]
impl Module for DiskModule {
    fn kind(&self) -> &'static str {
        "disk"
    }

    async fn run_once(&mut self, _ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        let paths = self.paths.clone();
        let all_mounts = self.all_mounts;
        // statvfs can block (e.g. a hung network mount): keep it off the async workers.
        let stats = tokio::task::spawn_blocking(move || {
            let paths = if all_mounts {
                with_mounts(paths)
            } else {
                paths
            };
            paths
                .into_iter()
                .map(|p| {
                    let r = stat_usage(&p);
                    (p, r)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ModuleError::Other(format!("statvfs task failed: {e}")))?;
        let mut bodies = Vec::new();
        let mut first_err = None;
        for (path, res) in stats {
            let shown = path.display().to_string();
            match res {
                Ok(usage) => {
                    let prev = self.levels.get(&path).copied();
                    let (body, level) = disk_body(&shown, &usage, prev, &self.thresholds);
                    self.levels.insert(path, level);
                    bodies.push(pb::event::Body::Disk(body));
                }
                Err(source) => {
                    warn!(path = %shown, error = %ErrorChain(&source), "cannot stat path");
                    first_err.get_or_insert(ModuleError::Stat {
                        path: shown,
                        source,
                    });
                }
            }
        }
        match first_err {
            Some(e) if bodies.is_empty() => Err(e),
            _ => Ok(bodies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Thresholds = Thresholds {
        warn: 85.0,
        crit: 95.0,
        hysteresis: 2.0,
    };

    #[test]
    fn levels_rise_at_thresholds_and_fall_with_hysteresis() {
        assert_eq!(next_level(None, 50.0, &T), Level::Ok);
        assert_eq!(next_level(None, 85.0, &T), Level::Warn);
        assert_eq!(next_level(None, 96.0, &T), Level::Crit);
        assert_eq!(next_level(Some(Level::Ok), 95.0, &T), Level::Crit);
        // Inside the hysteresis band: stay.
        assert_eq!(next_level(Some(Level::Crit), 93.5, &T), Level::Crit);
        assert_eq!(next_level(Some(Level::Warn), 83.5, &T), Level::Warn);
        // Below the band: go down.
        assert_eq!(next_level(Some(Level::Crit), 92.9, &T), Level::Warn);
        assert_eq!(next_level(Some(Level::Warn), 82.9, &T), Level::Ok);
        // From crit straight to ok, but not when landing in warn's band.
        assert_eq!(next_level(Some(Level::Crit), 10.0, &T), Level::Ok);
        assert_eq!(next_level(Some(Level::Crit), 84.0, &T), Level::Warn);
    }

    #[test]
    fn body_marks_transitions_only() {
        let usage = Usage {
            total_bytes: 1000,
            used_bytes: 900,
            avail_bytes: 100,
            inodes_total: 10,
            inodes_used: 1,
        };
        let (first, level) = disk_body("/", &usage, None, &T);
        assert_eq!(level, Level::Warn);
        assert!(!first.level_changed);
        assert_eq!(first.previous_level, pb::DiskLevel::Unspecified as i32);
        assert_eq!(first.used_basis_points, 9000);
        assert_eq!(first.inodes_used_basis_points, 1000);
        let (same, _) = disk_body("/", &usage, Some(Level::Warn), &T);
        assert!(!same.level_changed);
        let (up, _) = disk_body("/", &usage, Some(Level::Ok), &T);
        assert!(up.level_changed);
        assert_eq!(up.previous_level, pb::DiskLevel::Ok as i32);
        assert_eq!(up.level, pb::DiskLevel::Warn as i32);
    }

    #[test]
    fn inode_pressure_counts() {
        let usage = Usage {
            total_bytes: 1000,
            used_bytes: 10,
            avail_bytes: 990,
            inodes_total: 100,
            inodes_used: 99,
        };
        assert_eq!(disk_body("/", &usage, None, &T).1, Level::Crit);
    }

    #[tokio::test]
    async fn empty_paths_report_every_real_mount_once() {
        let cfg = DiskConfig {
            name: None,
            interval: std::time::Duration::from_secs(60),
            paths: Vec::new(),
            all_mounts: false,
            warn_percent: 85.0,
            crit_percent: 95.0,
            hysteresis_percent: 2.0,
        };
        let mut m = DiskModule::new(&cfg);
        let ctx = ModuleCtx::empty();
        let bodies = m.run_once(&ctx).await.expect("runs");
        let paths: Vec<String> = bodies
            .iter()
            .filter_map(|b| match b {
                pb::event::Body::Disk(d) => Some(d.path.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<String> = mounts::discover()
            .expect("mountinfo")
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert!(!paths.is_empty());
        // Each discovered mount reported once (a mount on an already-seen device is skipped).
        for p in &paths {
            assert_eq!(paths.iter().filter(|q| *q == p).count(), 1, "{paths:?}");
            assert!(expected.contains(p), "{p} not in {expected:?}");
        }
        assert!(
            !paths.iter().any(|p| p == "/proc" || p == "/sys"),
            "{paths:?}"
        );
    }

    #[test]
    fn with_mounts_skips_devices_already_configured() {
        let got = with_mounts(vec![PathBuf::from("/")]);
        assert_eq!(got[0], PathBuf::from("/"));
        use std::os::unix::fs::MetadataExt;
        let root_dev = std::fs::metadata("/").expect("stat /").dev();
        let devs: Vec<u64> = got[1..]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.dev()))
            .collect();
        assert!(!devs.contains(&root_dev), "{got:?}");
    }

    #[test]
    fn root_can_be_stat_ed() {
        let u = stat_usage(std::path::Path::new("/")).expect("statvfs /");
        assert!(u.total_bytes > 0);
        assert!(u.used_basis_points() <= 10_000);
    }

    fn level() -> impl Strategy<Value = Option<Level>> {
        prop_oneof![
            Just(None),
            Just(Some(Level::Ok)),
            Just(Some(Level::Warn)),
            Just(Some(Level::Crit))
        ]
    }

    proptest! {
        #[test]
        fn at_or_above_crit_is_always_crit(prev in level(), pct in 95.0f64..=100.0) {
            prop_assert_eq!(next_level(prev, pct, &T), Level::Crit);
        }

        #[test]
        fn below_every_band_is_always_ok(prev in level(), pct in 0.0f64..82.9) {
            prop_assert_eq!(next_level(prev, pct, &T), Level::Ok);
        }

        #[test]
        fn stable_for_a_constant_value(prev in level(), pct in 0.0f64..=100.0) {
            let once = next_level(prev, pct, &T);
            prop_assert_eq!(next_level(Some(once), pct, &T), once);
        }

        #[test]
        fn never_moves_against_the_change(prev in level(), a in 0.0f64..=100.0, b in 0.0f64..=100.0) {
            // Rising usage never lowers the level, falling usage never raises it.
            let la = next_level(prev, a, &T);
            let lb = next_level(Some(la), b, &T);
            if b >= a { prop_assert!(lb >= la); } else { prop_assert!(lb <= la); }
        }

        #[test]
        fn a_small_wobble_does_not_flap(pct in 80.0f64..=100.0, wobble in 0.0f64..1.99) {
            let up = next_level(Some(Level::Ok), pct, &T);
            prop_assert_eq!(next_level(Some(up), pct - wobble, &T), up);
        }

        #[test]
        fn basis_points_stay_in_range(part in any::<u64>(), whole in any::<u64>()) {
            prop_assert!(basis_points(part, whole) <= 10_000);
        }
    }
}
