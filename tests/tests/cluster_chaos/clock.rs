//! An agent whose wall clock jumps: web-01 runs under Debian's libfaketime (`LD_PRELOAD`),
//! reading its offset from a file the test rewrites; the monotonic and boot clocks are left
//! alone, as a real `date -s` leaves them. The image is the stack's own plus the library.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_tests::compose::docker;
use opsfleet_tests::wait_until;

use super::stack::Chaos;

/// Where Debian's `faketime` package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// Where it is in the image, and where the offset file is mounted.
const IN_IMAGE: &str = "/usr/lib/faketime/libfaketime.so.1";
const OFFSET_DIR: &str = "/var/lib/faketime";

/// The offset file's directory on this machine and the image that reads it.
pub struct FakeClock {
    dir: PathBuf,
    pub image: String,
}

impl FakeClock {
    /// Builds `opsfleet-faketime:<tag>` from `opsfleet:<tag>` (no pull) and writes offset 0;
    /// `None`, with the reason printed, where libfaketime is not installed.
    pub fn prepare(tag: &str, dir: &Path) -> Result<Option<FakeClock>> {
        if !Path::new(LIBFAKETIME).exists() {
            eprintln!(
                "cluster_chaos: {LIBFAKETIME} not found (Debian package faketime; scripts/test.sh \
                 installs it), the clock-jump fault will be skipped"
            );
            return Ok(None);
        }
        let ctx = dir.join("image");
        let libs = ctx.join("rootfs");
        std::fs::create_dir_all(libs.join("usr/lib/faketime"))?;
        std::fs::copy(LIBFAKETIME, libs.join(IN_IMAGE.trim_start_matches('/')))?;
        // The libraries it needs, at the paths ldd gives (the image holds only the binaries').
        let ldd = Command::new("ldd").arg(LIBFAKETIME).output()?;
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = libs.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().context("library path without a parent")?)?;
            std::fs::copy(lib, &to).with_context(|| format!("cannot copy {lib}"))?;
        }
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM opsfleet:{tag}\nCOPY rootfs/ /\n"),
        )?;
        let image = format!("opsfleet-faketime:{tag}");
        docker(&["build", "-q", "-t", &image, &ctx.display().to_string()])?;
        let offsets = dir.join("offset");
        std::fs::create_dir_all(&offsets)?;
        let clock = FakeClock {
            dir: offsets,
            image,
        };
        clock.set("+0")?;
        Ok(Some(clock))
    }

    /// The compose override lines for a service that runs under this clock.
    pub fn override_lines(&self) -> String {
        format!(
            "\n    image: {}\n    environment:\n      LD_PRELOAD: {IN_IMAGE}\n      \
             FAKETIME_TIMESTAMP_FILE: {OFFSET_DIR}/offset\n      FAKETIME_CACHE_DURATION: \"1\"\n      \
             FAKETIME_DONT_FAKE_MONOTONIC: \"1\"",
            self.image
        )
    }

    /// The volume line that mounts the offset file.
    pub fn volume_line(&self) -> String {
        format!("\n      - {}:{OFFSET_DIR}:ro", self.dir.display())
    }

    /// Sets the offset (libfaketime's syntax: `+600` is ten minutes ahead), atomically.
    pub fn set(&self, offset: &str) -> Result<()> {
        let tmp = self.dir.join("offset.new");
        std::fs::write(&tmp, format!("{offset}\n"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, self.dir.join("offset"))?;
        Ok(())
    }
}

/// How long each offset holds: longer than the dead-man limits of web-01 (heartbeat every 2 s).
const HOLD: Duration = Duration::from_secs(20);

/// Jumps web-01's clock ten minutes behind, then ten minutes ahead. Meanwhile a command to
/// web-01 must complete (not expire on a clock ahead), `events --since 10s` must show its fresh
/// events, and no dead-man alert may fire for it. Then, its clock still ahead, web-01 stops
/// (SIGSTOP): its stamps from the future must not keep it alive, so `host_lost` must fire.
/// Then it continues and its clock is set right.
pub async fn jump(chaos: &Chaos) -> Result<String> {
    let Some(clock) = &chaos.fake_clock else {
        return Ok("SKIPPED clock jump: libfaketime is not installed".to_owned());
    };
    let since = Instant::now();
    let mut seen = Vec::new();
    for (offset, what) in [("-600", "10 min behind"), ("+600", "10 min ahead")] {
        clock.set(offset)?;
        // libfaketime reads the file again within a second.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let out = chaos
            .opsctl
            .run(&["--output", "json", "noop", "--host", "web-01"])
            .await?;
        ensure!(
            out.status.success() && out.stdout.contains("\"all_completed\": true"),
            "a noop to web-01 with its clock {what} did not complete: {}{}",
            out.stdout.trim(),
            out.stderr.trim()
        );
        chaos.note_command();
        tokio::time::sleep(HOLD).await;
        let fresh = chaos
            .events(&["--host", "web-01", "--since", "10s"])
            .await?
            .len();
        ensure!(
            fresh > 0,
            "`events --since 10s` shows nothing of web-01 while its clock is {what}"
        );
        seen.push(format!(
            "{what}: noop completed, {fresh} events in the last 10 s"
        ));
    }
    // Since the first jump (an alert of an earlier fault may resolve meanwhile: only a firing
    // counts).
    let window = format!("{}s", since.elapsed().as_secs() + 1);
    let web01_dead_man = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("host_lost/web-01") || l.contains("module_silent/web-01"))
            .filter(|l| l.contains(" firing "))
            .cloned()
            .collect()
    };
    let alerts = chaos
        .events(&["--kind", "alert_transition", "--since", &window])
        .await?;
    let early = web01_dead_man(&alerts);
    ensure!(
        early.is_empty(),
        "dead-man alerts for web-01 while it reported with a jumped clock: {early:?}"
    );
    let stopped = Instant::now();
    chaos
        .stack
        .run(&["kill", "-s", "SIGSTOP", "agent-web-01"])?;
    let fired = wait_until(
        "host_lost for web-01, stopped with its clock 10 min ahead",
        Duration::from_secs(90),
        Duration::from_millis(500),
        async || {
            let window = format!("{}s", stopped.elapsed().as_secs() + 1);
            let lines = chaos
                .events(&["--kind", "alert_transition", "--since", &window])
                .await
                .unwrap_or_default();
            let lost = web01_dead_man(&lines)
                .into_iter()
                .any(|l| l.contains("host_lost/web-01"));
            Ok(lost.then(|| stopped.elapsed()))
        },
    )
    .await;
    chaos
        .stack
        .run(&["kill", "-s", "SIGCONT", "agent-web-01"])?;
    clock.set("+0")?;
    let fired = fired?;
    Ok(format!(
        "web-01's clock {}; no dead-man alert for web-01 meanwhile; stopped with its clock \
         ahead, host_lost fired {fired:?} after the SIGSTOP",
        seen.join("; ")
    ))
}
