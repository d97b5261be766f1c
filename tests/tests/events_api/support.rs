//! The two example consumers of docs/events-api.md as processes (the Rust `events-consumer`
//! binary and `examples/events-consumer/consume.py` in its venv), and what the stream holds.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use opsfleet_proto::{subjects, EventEnvelope};
use opsfleet_tests::procs::{self, CmdOutput};
use opsfleet_tests::secure::repo_root;
use opsfleet_tests::{bins, pyenv};
use serde_json::Value;

/// Longest a consumer run may take (its own `--timeout` is shorter).
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Rust,
    Python,
}

pub const BOTH: [Which; 2] = [Which::Rust, Which::Python];

#[derive(Clone)]
pub struct Consumers {
    rust: PathBuf,
    python: PathBuf,
    script: PathBuf,
}

impl Consumers {
    /// Finds the Rust binary and sets up (or reuses) the venv `target/pyenv-events`.
    pub fn new() -> Result<Consumers> {
        let example = repo_root().join("examples/events-consumer");
        let python = pyenv::python_env("pyenv-events", &example.join("requirements.txt"))
            .context("the Python example consumer needs its packages (examples/events-consumer/requirements.txt)")?;
        Ok(Consumers {
            rust: bins::bin("events-consumer")?,
            python,
            script: example.join("consume.py"),
        })
    }

    /// Runs one consumer with `conn` (connection flags) and `args`; whatever its exit status.
    pub async fn run(&self, which: Which, conn: &[String], args: &[&str]) -> Result<CmdOutput> {
        let mut all: Vec<&OsStr> = Vec::new();
        let program = match which {
            Which::Rust => &self.rust,
            Which::Python => {
                all.push(self.script.as_os_str());
                &self.python
            }
        };
        all.extend(conn.iter().map(OsStr::new));
        all.extend(args.iter().map(OsStr::new));
        procs::run(program, &all, RUN_LIMIT).await
    }

    /// Runs one consumer that must succeed; its JSON lines.
    pub async fn lines(&self, which: Which, conn: &[String], args: &[&str]) -> Result<Vec<Value>> {
        let out = self.run(which, conn, args).await?.ok()?;
        super::parse_lines(&out.stdout).with_context(|| format!("{which:?}"))
    }

    /// `python consume.py --list-kinds`: (kind, field number) of every body, as generated.
    pub async fn python_kinds(&self) -> Result<Vec<(String, u32)>> {
        let out = self
            .run(Which::Python, &[], &["--list-kinds"])
            .await?
            .ok()?;
        out.stdout
            .lines()
            .map(|l| {
                let (k, n) = l.split_once(' ').context("kind and number")?;
                Ok((k.to_owned(), n.parse()?))
            })
            .collect()
    }
}

/// (stream seq, host, kind, seq) of printed lines: what the stream comparison looks at.
pub type Key = (u64, String, String, u64);

pub fn keys(lines: &[Value]) -> Result<Vec<Key>> {
    lines
        .iter()
        .map(|l| {
            Ok((
                l["stream_seq"].as_u64().context("stream_seq")?,
                l["host"].as_str().context("host")?.to_owned(),
                l["kind"].as_str().context("kind")?.to_owned(),
                l["seq"].as_u64().context("seq")?,
            ))
        })
        .collect()
}

/// The events the stream holds in `first..=last` (read with async-nats, message by message).
pub async fn stream_keys(js: &jetstream::Context, first: u64, last: u64) -> Result<Vec<Key>> {
    let stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let mut out = Vec::new();
    for seq in first..=last {
        let msg = stream.get_raw_message(seq).await?;
        let ev = EventEnvelope::decode(&msg.payload)?;
        out.push((seq, ev.host.clone(), ev.kind().to_owned(), ev.seq));
    }
    Ok(out)
}

/// What a consumer shows of `keys`: the first copy of each (host, seq) (one incarnation per
/// host in these tests), as the (host, incarnation, seq) dedup does.
pub fn first_copies(keys: Vec<Key>) -> Vec<Key> {
    let mut highest = std::collections::BTreeMap::new();
    keys.into_iter()
        .filter(|k| {
            let h = highest.entry(k.1.clone()).or_insert(0);
            let first = k.3 > *h;
            *h = (*h).max(k.3);
            first
        })
        .collect()
}

/// Stream seqs strictly increasing.
pub fn increasing(lines: &[Key]) -> Result<()> {
    for w in lines.windows(2) {
        ensure!(w[0].0 < w[1].0, "stream seqs not increasing: {w:?}");
    }
    Ok(())
}

/// The body kinds of `Event`'s `oneof body` in `proto/opsfleet/v1/event.proto`, read from the
/// text: (name, field number), in field order.
pub fn proto_kinds() -> Result<Vec<(String, u32)>> {
    let path = repo_root().join("proto/proto/opsfleet/v1/event.proto");
    let text = std::fs::read_to_string(&path)?;
    let start = text.find("oneof body {").context("no oneof body")?;
    let block = &text[start..];
    let block = &block[..block.find("\n  }").context("end of oneof body")?];
    let mut kinds: Vec<(String, u32)> = block
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_suffix(';')?;
            let (decl, number) = l.split_once(" = ")?;
            let (_, name) = decl.split_once(' ')?;
            Some((name.to_owned(), number.parse().ok()?))
        })
        .collect();
    kinds.sort_by_key(|(_, n)| *n);
    Ok(kinds)
}
