//! Pure checks of what the tests observe: exactly-once per host in the coordinator's log, unique
//! event ids, and the shape of the human `opsctl status` table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Deserialize;

/// One line of `ops-coordinator dump-log --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEntry {
    pub stream_seq: u64,
    pub id: String,
    pub host: String,
    pub incarnation: String,
    pub seq: u64,
    pub module: String,
    pub kind: String,
    pub time_unix_ms: i64,
}

const SHOW: usize = 10;

/// Checks that the entries of `host` are exactly seqs `1..=last_seq`, each once, in stream order,
/// all of `incarnation`, and that the log itself is in strictly increasing stream order.
/// The error lists every kind of problem found (a few examples each).
pub fn check_exactly_once(
    log: &[LogEntry],
    host: &str,
    incarnation: &str,
    last_seq: u64,
) -> Result<(), String> {
    let mut problems = Vec::new();

    let unordered: Vec<String> = log
        .windows(2)
        .filter(|w| w[1].stream_seq <= w[0].stream_seq)
        .take(SHOW)
        .map(|w| format!("{} after {}", w[1].stream_seq, w[0].stream_seq))
        .collect();
    if !unordered.is_empty() {
        problems.push(format!("log not in stream order: {}", unordered.join(", ")));
    }

    let entries: Vec<&LogEntry> = log.iter().filter(|e| e.host == host).collect();
    let foreign: Vec<String> = entries
        .iter()
        .filter(|e| e.incarnation != incarnation)
        .take(SHOW)
        .map(|e| {
            format!(
                "stream_seq {} seq {} incarnation {}",
                e.stream_seq, e.seq, e.incarnation
            )
        })
        .collect();
    if !foreign.is_empty() {
        problems.push(format!(
            "entries of another incarnation than {incarnation}: {}",
            foreign.join(", ")
        ));
    }

    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=last_seq).collect();
    if seqs != expected {
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for s in &seqs {
            *count.entry(*s).or_default() += 1;
        }
        let dups: Vec<String> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(SHOW)
            .map(|(s, n)| format!("{s} x{n}"))
            .collect();
        if !dups.is_empty() {
            problems.push(format!("duplicated seqs: {}", dups.join(", ")));
        }
        let missing: Vec<u64> = (1..=last_seq).filter(|s| !count.contains_key(s)).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "missing seqs ({}): {}",
                missing.len(),
                ranges(&missing)
            ));
        }
        let extra: Vec<u64> = count
            .keys()
            .copied()
            .filter(|s| *s == 0 || *s > last_seq)
            .collect();
        if !extra.is_empty() {
            problems.push(format!("seqs outside 1..={last_seq}: {}", ranges(&extra)));
        }
        let backwards: Vec<String> = entries
            .windows(2)
            .filter(|w| w[1].seq <= w[0].seq)
            .take(SHOW)
            .map(|w| {
                format!(
                    "seq {} (stream_seq {}) after seq {} (stream_seq {})",
                    w[1].seq, w[1].stream_seq, w[0].seq, w[0].stream_seq
                )
            })
            .collect();
        if !backwards.is_empty() {
            problems.push(format!("out of per-host order: {}", backwards.join(", ")));
        }
        if problems.is_empty() {
            problems.push(format!(
                "seqs differ from 1..={last_seq} ({} entries)",
                seqs.len()
            ));
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "host {host}: {} log entries, expected seqs 1..={last_seq}:\n  - {}",
            entries.len(),
            problems.join("\n  - ")
        ))
    }
}

/// Checks that no event id occurs twice in the log.
pub fn check_unique_ids(log: &[LogEntry]) -> Result<(), String> {
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut dups = Vec::new();
    for e in log {
        if let Some(first) = seen.insert(&e.id, e.stream_seq) {
            dups.push(format!(
                "{} at stream_seq {first} and {}",
                e.id, e.stream_seq
            ));
        }
    }
    if dups.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} duplicated event ids: {}",
            dups.len(),
            dups.into_iter().take(SHOW).collect::<Vec<_>>().join(", ")
        ))
    }
}

/// Checks the human `opsctl status` table: a header with HOST and LAST SEEN, exactly one row per
/// expected host, no rows for other hosts known to the caller, and each row's "… ago" at most
/// `max_age` old.
pub fn check_status_table(table: &str, hosts: &[&str], max_age: Duration) -> Result<(), String> {
    let mut problems = Vec::new();
    let upper = table.to_uppercase();
    for col in ["HOST", "LAST SEEN", "SEQ", "GAPS"] {
        if !upper.contains(col) {
            problems.push(format!("no {col:?} column header"));
        }
    }
    for host in hosts {
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| tokens(l).any(|t| t == *host))
            .collect();
        match rows.as_slice() {
            [row] => match last_seen_age(row) {
                Some(age) if age <= max_age => {}
                Some(age) => problems.push(format!(
                    "{host}: last seen {age:?} ago, expected at most {max_age:?}: {row:?}"
                )),
                None => problems.push(format!("{host}: no \"… ago\" in its row: {row:?}")),
            },
            [] => problems.push(format!("no row for {host}")),
            many => problems.push(format!("{} rows for {host}: {many:?}", many.len())),
        }
    }
    let ago_rows = table.lines().filter(|l| last_seen_age(l).is_some()).count();
    if ago_rows != hosts.len() {
        problems.push(format!(
            "{ago_rows} rows with a last-seen age, expected {}",
            hosts.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "status table does not look right:\n  - {}\ntable:\n{table}",
            problems.join("\n  - ")
        ))
    }
}

/// Words of a table line, ignoring box-drawing and separator characters.
fn tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| c.is_whitespace() || "|│┃║+".contains(c))
        .filter(|t| !t.is_empty())
}

/// Age from "3s ago", "250ms ago", "1m 5s ago", "1m5s ago" or "now" in a table row.
pub fn last_seen_age(row: &str) -> Option<Duration> {
    let words: Vec<&str> = tokens(row).collect();
    if let Some(i) = words.iter().position(|w| *w == "ago") {
        let mut total = Duration::ZERO;
        let mut found = false;
        for w in words[..i].iter().rev() {
            match parse_compact_duration(w) {
                Some(d) => {
                    total += d;
                    found = true;
                }
                None => break,
            }
        }
        return found.then_some(total);
    }
    words
        .iter()
        .any(|w| w.eq_ignore_ascii_case("now"))
        .then_some(Duration::ZERO)
}

/// "3s", "250ms", "1m5s", "2h", "1d", "1.5s".
fn parse_compact_duration(word: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = word;
    let mut any = false;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * secs;
        any = true;
    }
    any.then(|| Duration::from_secs_f64(total))
}

/// "1..=3, 7, 9..=10".
fn ranges(sorted: &[u64]) -> String {
    let set: BTreeSet<u64> = sorted.iter().copied().collect();
    let mut out = Vec::new();
    let mut iter = set.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}..={end}")
        });
        if out.len() >= 20 {
            out.push("…".to_owned());
            break;
        }
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stream_seq: u64, host: &str, seq: u64) -> LogEntry {
        LogEntry {
            stream_seq,
            id: format!("{host}-{seq}-{stream_seq}"),
            host: host.to_owned(),
            incarnation: "inc".to_owned(),
            seq,
            module: "heartbeat".to_owned(),
            kind: "heartbeat".to_owned(),
            time_unix_ms: 0,
        }
    }

    #[test]
    fn interleaved_hosts_pass() {
        let log = vec![
            entry(1, "web-01", 1),
            entry(2, "db-01", 1),
            entry(3, "web-01", 2),
            entry(5, "db-01", 2),
        ];
        assert_eq!(check_exactly_once(&log, "web-01", "inc", 2), Ok(()));
        assert_eq!(check_exactly_once(&log, "db-01", "inc", 2), Ok(()));
        assert_eq!(check_unique_ids(&log), Ok(()));
    }

    #[test]
    fn duplicates_gaps_and_disorder_are_reported() {
        let log = vec![
            entry(1, "web-01", 1),
            entry(2, "web-01", 3),
            entry(3, "web-01", 2),
            entry(4, "web-01", 3),
        ];
        let err = check_exactly_once(&log, "web-01", "inc", 5).unwrap_err();
        assert!(err.contains("duplicated seqs: 3 x2"), "{err}");
        assert!(err.contains("missing seqs (2): 4..=5"), "{err}");
        assert!(err.contains("out of per-host order"), "{err}");
    }

    #[test]
    fn wrong_incarnation_and_stream_order_are_reported() {
        let mut log = vec![entry(2, "web-01", 1), entry(1, "web-01", 2)];
        log[1].incarnation = "other".to_owned();
        let err = check_exactly_once(&log, "web-01", "inc", 2).unwrap_err();
        assert!(err.contains("not in stream order"), "{err}");
        assert!(err.contains("another incarnation"), "{err}");
    }

    #[test]
    fn duplicate_ids_are_reported() {
        let mut log = vec![entry(1, "web-01", 1), entry(2, "web-01", 2)];
        log[1].id = log[0].id.clone();
        assert!(check_unique_ids(&log).is_err());
    }

    #[test]
    fn table_with_three_fresh_hosts_passes() {
        let table = "coordinator blue (active, epoch 3) answered\n\
            HOST    LAST SEEN  SEQ  DISK      MODULES  GAPS\n\
            db-01   1s ago     12   /: 40%    2/2      -\n\
            web-01  250ms ago  30   /: 40%    2/2      -\n\
            web-02  2s ago     31   /: 40%    2/2      -\n";
        let hosts = ["db-01", "web-01", "web-02"];
        assert_eq!(
            check_status_table(table, &hosts, Duration::from_secs(10)),
            Ok(())
        );
        let err = check_status_table(table, &hosts, Duration::from_millis(500)).unwrap_err();
        assert!(err.contains("db-01: last seen"), "{err}");
        let err =
            check_status_table(table, &["web-01", "web-03"], Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("no row for web-03"), "{err}");
    }

    #[test]
    fn boxed_tables_and_compound_ages_parse() {
        assert_eq!(
            last_seen_age("│ web-01 │ 1m 5s ago │ 3 │"),
            Some(Duration::from_secs(65))
        );
        assert_eq!(
            last_seen_age("| web-01 | 1m5s ago |"),
            Some(Duration::from_secs(65))
        );
        assert_eq!(last_seen_age("web-01  now  3"), Some(Duration::ZERO));
        assert_eq!(last_seen_age("HOST LAST SEEN"), None);
    }
}
