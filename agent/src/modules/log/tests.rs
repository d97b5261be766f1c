//! Tests of the log module on real temp files: rotation both ways across an agent restart
//! (runner + outbox rebuilt on the same sled), traceback grouping, rate limit, backlog budget.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::StartAt;
use crate::outbox::Outbox;
use crate::runner::{ModuleEntry, Runner};

fn ctx(now: SystemTime) -> ModuleCtx {
    ModuleCtx {
        now,
        ..ModuleCtx::empty()
    }
}

fn config(paths: &[&Path]) -> LogConfig {
    let mut c = LogConfig::with_paths(
        paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    );
    c.rate_limit = 0;
    c.rotate_wait = Duration::ZERO;
    c
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn excerpts(bodies: &[pb::event::Body]) -> Vec<String> {
    bodies
        .iter()
        .filter_map(|b| match b {
            pb::event::Body::LogMatch(m) => Some(m.excerpt.clone()),
            _ => None,
        })
        .collect()
}

async fn run(m: &mut LogModule) -> Vec<pb::event::Body> {
    m.run_once(&ctx(SystemTime::now())).await.expect("run")
}

/// A running agent: the real runner and outbox over `dir/agent.sled`, one log module.
struct Agent {
    outbox: Arc<Outbox>,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Agent {
    fn start(dir: &Path, cfg: &LogConfig) -> Agent {
        let outbox =
            Arc::new(Outbox::open(&dir.join("agent.sled"), "web-01", 100_000).expect("open"));
        let entries = vec![ModuleEntry {
            name: "applog".into(),
            interval: Duration::from_millis(20),
            fingerprint: "f".into(),
            module: Box::new(LogModule::new(cfg)),
        }];
        let runner = Runner::new("web-01", outbox.clone(), Arc::new(Notify::new()), entries);
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(runner.run(cancel.clone()));
        Agent {
            outbox,
            cancel,
            handle,
        }
    }

    fn matches(&self) -> Vec<String> {
        let evs = self.outbox.pending_events().expect("events");
        let bodies: Vec<pb::event::Body> = evs.into_iter().map(|e| e.body).collect();
        excerpts(&bodies)
    }

    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..250 {
            let m = self.matches();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} matches, got {:?}", self.matches());
    }

    /// Stops like a restart: the runner ends, the sled is closed.
    async fn stop(self) {
        self.cancel.cancel();
        self.handle.await.expect("runner ends");
        // The last reference: the sled lock is released here.
        drop(self.outbox);
    }
}

fn numbered(n: std::ops::RangeInclusive<u32>) -> Vec<String> {
    n.map(|i| format!("ERROR {i}")).collect()
}

#[tokio::test]
async fn rename_create_rotation_across_restart_reports_every_line_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("mkdir");
    let log = logs.join("app.log");
    let rotated = |n: u32| logs.join(format!("app.log.{n}"));
    append(&log, "INFO boot\nERROR 1\nERROR 2\n");
    let mut cfg = config(&[&log]);
    // The writer may still write to the renamed file for a moment.
    cfg.rotate_wait = Duration::from_millis(300);

    let a = Agent::start(dir.path(), &cfg);
    a.wait_for(2).await;
    // Rotation while running: the old file is finished through the open handle.
    append(&log, "ERROR 3\n");
    fs::rename(&log, rotated(1)).expect("rename");
    append(&rotated(1), "ERROR 4\n"); // a late write through the writer's old fd
    append(&log, "INFO new file\nERROR 5\n");
    a.wait_for(5).await;
    a.stop().await;

    // While the agent is down: more lines, then another rotation.
    append(&log, "ERROR 6\nINFO x\nERROR 7\n");
    fs::rename(rotated(1), rotated(2)).expect("rename");
    fs::rename(&log, rotated(1)).expect("rename");
    append(&log, "ERROR 8\n");

    let b = Agent::start(dir.path(), &cfg);
    b.wait_for(8).await;
    b.stop().await;
    // A clean restart re-reads nothing.
    let c = Agent::start(dir.path(), &cfg);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = c.matches();
    c.stop().await;
    assert_eq!(all, numbered(1..=8));
}

#[tokio::test]
async fn copytruncate_rotation_across_restart_reports_every_line_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("mkdir");
    let log = logs.join("app.log");
    let copy = |n: u32| logs.join(format!("app.log.{n}"));
    let copytruncate = |after_truncate: &str| {
        if copy(1).exists() {
            fs::rename(copy(1), copy(2)).expect("shift");
        }
        fs::copy(&log, copy(1)).expect("copy");
        OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        append(&log, after_truncate);
    };
    append(&log, "ERROR 1\nERROR 2\n");
    let mut cfg = config(&[&log]);
    cfg.rotate_wait = Duration::from_millis(300);

    let a = Agent::start(dir.path(), &cfg);
    a.wait_for(2).await;
    append(&log, "ERROR 3\n");
    copytruncate("ERROR 4\n"); // shorter than what was read: size < offset
    a.wait_for(4).await;
    a.stop().await;

    // Down: lines the agent never saw go only into the copy; the new content is longer than
    // the old offset, so only the fingerprint tells the truncation.
    append(&log, "ERROR 5\n");
    copytruncate("ERROR 6 after the second truncation, longer than anything before it\n");
    let b = Agent::start(dir.path(), &cfg);
    b.wait_for(6).await;
    b.stop().await;
    let c = Agent::start(dir.path(), &cfg);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = c.matches();
    c.stop().await;
    let mut expect = numbered(1..=5);
    expect.push("ERROR 6 after the second truncation, longer than anything before it".into());
    assert_eq!(all, expect);
}

#[tokio::test]
async fn a_glob_over_rotated_names_follows_identity_without_rereading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let pattern = dir.path().join("app.log*");
    let mut m = LogModule::new(&config(&[&pattern]));
    // Long enough for a full fingerprint, so a copy is recognised as one.
    let filler = format!("INFO {}\n", "x".repeat(300));
    append(&log, &format!("{filler}ERROR 1\n"));
    assert_eq!(excerpts(&run(&mut m).await), ["ERROR 1"]);
    // rename+create: app.log.1 is the same file under a new name, read on from its cursor.
    fs::rename(&log, dir.path().join("app.log.1")).expect("rename");
    append(&dir.path().join("app.log.1"), "ERROR 2\n");
    append(&log, &format!("{filler}ERROR 3\n"));
    let mut got = excerpts(&run(&mut m).await);
    got.sort();
    assert_eq!(got, ["ERROR 2", "ERROR 3"]);
    // copytruncate seen half-done (copy exists, original not yet truncated): the copy is
    // known by its fingerprint and not read again.
    fs::copy(&log, dir.path().join("app.log.copy")).expect("copy");
    assert_eq!(excerpts(&run(&mut m).await), Vec::<String>::new());
    OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&log, "ERROR 4\n");
    assert_eq!(excerpts(&run(&mut m).await), ["ERROR 4"]);
    assert!(excerpts(&run(&mut m).await).is_empty());
}

#[tokio::test]
async fn a_three_line_traceback_is_one_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let mut m = LogModule::new(&config(&[&log]));
    append(
        &log,
        "INFO start\nTraceback (most recent call last):\n  File \"/srv/app.py\", line 3, in <module>\n",
    );
    // The exception line is not written yet: nothing is reported, nothing consumed.
    assert!(run(&mut m).await.is_empty());
    append(&log, "ValueError: boom\nINFO done\n");
    let bodies = run(&mut m).await;
    let [pb::event::Body::LogMatch(tb)] = bodies.as_slice() else {
        panic!("one event expected: {bodies:?}")
    };
    assert_eq!(tb.lines, 3);
    assert_eq!(tb.pattern, "traceback");
    assert_eq!(
        tb.excerpt,
        "Traceback (most recent call last):\n  File \"/srv/app.py\", line 3, in <module>\nValueError: boom"
    );
    assert_eq!(tb.offset, "INFO start\n".len() as u64);
    assert!(!tb.truncated);
}

#[tokio::test]
async fn an_unfinished_traceback_is_reported_after_the_multiline_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let mut cfg = config(&[&log]);
    cfg.multiline_timeout = Duration::from_secs(5);
    let mut m = LogModule::new(&cfg);
    append(
        &log,
        "Traceback (most recent call last):\n  File \"a.py\", line 1\n",
    );
    let t0 = SystemTime::now();
    assert!(m.run_once(&ctx(t0)).await.expect("run").is_empty());
    let later = m
        .run_once(&ctx(t0 + Duration::from_secs(6)))
        .await
        .expect("run");
    assert_eq!(excerpts(&later).len(), 1);
}

#[tokio::test]
async fn rate_limit_reports_the_suppressed_count_even_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let mut cfg = config(&[&log]);
    cfg.rate_limit = 5;
    cfg.rate_window = Duration::from_secs(60);
    let text: String = (1..=20).map(|i| format!("ERROR {i}\n")).collect();
    append(&log, &text);
    let t0 = SystemTime::now();
    let mut m = LogModule::new(&cfg);
    let first = m.run_once(&ctx(t0)).await.expect("run");
    assert_eq!(excerpts(&first), numbered(1..=5));
    assert!(m
        .run_once(&ctx(t0 + Duration::from_secs(30)))
        .await
        .expect("run")
        .is_empty());
    // Restart inside the window: the count survives with the cursor.
    let saved: Vec<(String, Vec<u8>)> = m
        .take_state()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    assert!(saved.iter().any(|(k, _)| k.starts_with("r/")), "{saved:?}");
    let mut m = LogModule::new(&cfg);
    m.restore(saved);
    let later = m
        .run_once(&ctx(t0 + Duration::from_secs(61)))
        .await
        .expect("run");
    let [pb::event::Body::LogSuppressed(s)] = later.as_slice() else {
        panic!("one log_suppressed expected: {later:?}")
    };
    assert_eq!(s.count, 15);
    assert_eq!(s.path, log.to_string_lossy());
    assert_eq!(s.since_unix_ms, unix_ms(t0));
    // Reported once; the next window starts clean.
    append(&log, "ERROR 21\n");
    let next = m
        .run_once(&ctx(t0 + Duration::from_secs(62)))
        .await
        .expect("run");
    assert_eq!(excerpts(&next), ["ERROR 21"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_50_mb_backlog_is_read_over_several_bounded_runs_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("big.log");
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&log).expect("create"));
        f.write_all(b"ERROR first\n").expect("write");
        let line = format!("INFO {}\n", "y".repeat(94));
        for _ in 0..(50 * 1024 * 1024 / line.len()) {
            f.write_all(line.as_bytes()).expect("write");
        }
        f.write_all(b"ERROR last\n").expect("write");
    }
    let size = fs::metadata(&log).expect("stat").len();
    let cap = 4 * 1024 * 1024;
    let mut cfg = config(&[&log]);
    cfg.max_bytes_per_run = cap;
    let mut m = LogModule::new(&cfg);
    // Other work on the same (single-threaded) runtime keeps going while the module reads.
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut found = Vec::new();
    let mut runs = 0;
    loop {
        found.extend(excerpts(&run(&mut m).await));
        runs += 1;
        assert!(m.last_run().bytes_read <= cap, "{:?}", m.last_run());
        let offset = m.cursors().values().map(|c| c.offset).max().unwrap_or(0);
        if offset == size {
            break;
        }
        assert!(runs < 100, "backlog not consumed");
    }
    ticker.abort();
    assert_eq!(found, ["ERROR first", "ERROR last"]);
    assert!(runs >= 13, "read in {runs} runs");
    assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn excerpts_are_capped_and_start_at_end_skips_old_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    append(&log, "ERROR old\n");
    let mut cfg = config(&[&log]);
    cfg.start_at = StartAt::End;
    cfg.max_excerpt_bytes = 64;
    let mut m = LogModule::new(&cfg);
    assert!(run(&mut m).await.is_empty());
    append(&log, &format!("ERROR {}\n", "z".repeat(500)));
    let bodies = run(&mut m).await;
    let [pb::event::Body::LogMatch(big)] = bodies.as_slice() else {
        panic!("{bodies:?}")
    };
    assert!(big.truncated);
    assert_eq!(big.excerpt.len(), 64);
    // A file that appears later is read from its start even with start_at = end.
    let other = dir.path().join("other.log");
    let mut m2 = LogModule::new(&{
        let mut c = config(&[&log, &other]);
        c.start_at = StartAt::End;
        c
    });
    assert!(run(&mut m2).await.is_empty());
    append(&other, "ERROR new file\n");
    assert_eq!(excerpts(&run(&mut m2).await), ["ERROR new file"]);
}

#[tokio::test]
async fn state_round_trips_and_deletes_finished_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = dir.path().join("app.log");
    append(&log, "ERROR 1\n");
    let mut m = LogModule::new(&config(&[&log]));
    assert_eq!(excerpts(&run(&mut m).await), ["ERROR 1"]);
    let first = m.take_state();
    assert!(first
        .iter()
        .any(|(k, v)| k.starts_with("f/") && v.is_some()));
    assert!(first.iter().any(|(k, _)| k == "init"));
    // Nothing changed: nothing to write.
    run(&mut m).await;
    assert!(m.take_state().is_empty());
    // The file is deleted: its cursor key is deleted once it is finished.
    fs::remove_file(&log).expect("rm");
    run(&mut m).await;
    let gone = m.take_state();
    assert!(
        gone.iter().any(|(k, v)| k.starts_with("f/") && v.is_none()),
        "{gone:?}"
    );
}
