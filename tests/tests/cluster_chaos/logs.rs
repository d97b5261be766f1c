//! Comparing the two coordinators' logs after a schedule. Both persist the same stream, but
//! each stops at its own moment: the one stopped later may also hold the events of the other's
//! shutdown (and of its own). So the logs must be equal up to the shorter one's last stream
//! sequence, and anything after it may only be coordinators' own events.

use anyhow::{ensure, Result};
use opsfleet_tests::check::LogEntry;

/// The last stream sequence both logs hold (where their digests must agree); fails when the
/// logs differ before it or the longer one's extra entries are not coordinators' own events.
pub fn common_prefix(a: (&str, &[LogEntry]), b: (&str, &[LogEntry])) -> Result<u64> {
    let last = |log: &[LogEntry]| log.iter().map(|e| e.stream_seq).max().unwrap_or(0);
    let upto = last(a.1).min(last(b.1));
    let prefix = |log: &[LogEntry]| -> Vec<(u64, String)> {
        log.iter()
            .filter(|e| e.stream_seq <= upto)
            .map(|e| (e.stream_seq, e.id.clone()))
            .collect()
    };
    let (pa, pb) = (prefix(a.1), prefix(b.1));
    if let Some(i) = (0..pa.len().min(pb.len())).find(|&i| pa[i] != pb[i]) {
        anyhow::bail!(
            "{} and {} differ up to stream sequence {upto}: entry {i} is {:?} in {} and {:?} in {}",
            a.0,
            b.0,
            pa[i],
            a.0,
            pb[i],
            b.0
        );
    }
    ensure!(
        pa.len() == pb.len(),
        "{} holds {} entries up to stream sequence {upto}, {} holds {}",
        a.0,
        pa.len(),
        b.0,
        pb.len()
    );
    for (name, log) in [a, b] {
        let extra: Vec<&LogEntry> = log.iter().filter(|e| e.stream_seq > upto).collect();
        ensure!(
            extra.iter().all(|e| e.module == "coordinator"),
            "{name} holds events past stream sequence {upto} that are not coordinators' own: {:?}",
            extra.iter().find(|e| e.module != "coordinator")
        );
        if !extra.is_empty() {
            eprintln!(
                "cluster_chaos: {name} also holds {} coordinator event(s) after {upto}: {:?}",
                extra.len(),
                extra.iter().map(|e| (&e.host, &e.kind)).collect::<Vec<_>>()
            );
        }
    }
    Ok(upto)
}
