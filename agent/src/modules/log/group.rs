//! Pure text handling of the log module: patterns, splitting a read chunk into records (single
//! lines or Python traceback groups, only complete ones consumed) and the excerpt cap.

use crate::config::PatternConfig;
use opsfleet_report::ErrorChain;

/// The line that opens a Python traceback (also "Exception Group Traceback ...").
pub const TRACEBACK_HEADER: &str = "Traceback (most recent call last):";

enum Rule {
    Contains(String),
    Regex(regex::Regex),
}

/// The configured patterns, compiled.
pub struct Matcher {
    rules: Vec<(String, Rule)>,
}

impl Matcher {
    /// Compiles the patterns. Config validation refuses bad ones; one that still fails here
    /// is skipped with a warning rather than stopping the module.
    pub fn new(patterns: &[PatternConfig]) -> Self {
        let mut rules = Vec::new();
        for p in patterns {
            let rule = match (&p.contains, &p.regex) {
                (Some(s), _) => Rule::Contains(s.clone()),
                (None, Some(r)) => match regex::Regex::new(r) {
                    Ok(re) => Rule::Regex(re),
                    Err(e) => {
                        tracing::warn!(pattern = %p.name, error = %ErrorChain(&e), "skipping invalid pattern");
                        continue;
                    }
                },
                (None, None) => continue,
            };
            rules.push((p.name.clone(), rule));
        }
        Matcher { rules }
    }

    /// Name of the first pattern `line` matches.
    pub fn first_match(&self, line: &str) -> Option<&str> {
        self.rules.iter().find_map(|(name, rule)| {
            let hit = match rule {
                Rule::Contains(s) => line.contains(s.as_str()),
                Rule::Regex(r) => r.is_match(line),
            };
            hit.then_some(name.as_str())
        })
    }

    /// A group reports the pattern of its first line, else of the first line that matches.
    pub fn match_record<'a>(&self, lines: impl IntoIterator<Item = &'a str>) -> Option<&str> {
        lines.into_iter().find_map(|l| self.first_match(l))
    }
}

/// How to split one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitOpts {
    pub group_tracebacks: bool,
    pub max_group_lines: usize,
    /// Nothing more will be appended (a rotated file read to its end): a trailing partial
    /// line and an open group are consumed as they are.
    pub final_chunk: bool,
    /// The chunk stopped at the read limit, not at the end of the file.
    pub more_follows: bool,
    /// An open traceback at the chunk's start waited long enough: report it as it is.
    pub flush_pending: bool,
}

/// One record: a single line or a group of lines, as byte ranges of the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Start of the first line in the chunk.
    pub start: usize,
    /// Each line's range (without its newline).
    pub lines: Vec<(usize, usize)>,
    pub grouped: bool,
}

/// What `split` found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub records: Vec<Record>,
    /// Bytes of the chunk that are done; the cursor moves by this much.
    pub consumed: usize,
    /// An incomplete traceback starts at `consumed` and waits for more lines.
    pub pending_group: bool,
}

fn is_continuation(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ') | Some(b'\t'))
}

fn is_header(line: &[u8]) -> bool {
    line.windows(TRACEBACK_HEADER.len())
        .any(|w| w == TRACEBACK_HEADER.as_bytes())
}

/// Splits `buf` into complete records. Only lines ending in `\n` are complete, except at a
/// final chunk's end, or when a chunk that hit the read limit holds no newline at all (a line
/// longer than the limit is cut rather than blocking the file forever).
///
/// A traceback group is the header line, every following indented line, and the first
/// non-indented, non-empty line (the exception). An empty line ends a group without joining it.
/// A group still open at the chunk's end waits (nothing of it consumed), unless it fills the
/// whole chunk, the chunk is final, or `flush_pending` says it waited long enough.
pub fn split(buf: &[u8], opts: &SplitOpts) -> Split {
    // (start, end without newline, next start)
    let mut lines: Vec<(usize, usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match buf[pos..].iter().position(|b| *b == b'\n') {
            Some(i) => {
                lines.push((pos, pos + i, pos + i + 1));
                pos += i + 1;
            }
            None => {
                let whole_chunk_is_one_line = pos == 0 && opts.more_follows;
                if opts.final_chunk || whole_chunk_is_one_line {
                    lines.push((pos, buf.len(), buf.len()));
                }
                break;
            }
        }
    }
    let line = |i: usize| &buf[lines[i].0..lines[i].1];
    let mut out = Split::default();
    let mut i = 0;
    while i < lines.len() {
        if !(opts.group_tracebacks && is_header(line(i))) {
            out.records.push(Record {
                start: lines[i].0,
                lines: vec![(lines[i].0, lines[i].1)],
                grouped: false,
            });
            out.consumed = lines[i].2;
            i += 1;
            continue;
        }
        let max = opts.max_group_lines.max(2);
        let mut j = i + 1;
        let complete = loop {
            if j - i >= max {
                break true;
            }
            let Some(&(s, e, _)) = lines.get(j) else {
                break false;
            };
            let l = &buf[s..e];
            if l.is_empty() {
                break true;
            }
            j += 1;
            if !is_continuation(l) {
                break true;
            }
        };
        let may_flush =
            opts.final_chunk || opts.flush_pending && i == 0 || i == 0 && opts.more_follows;
        if !complete && !may_flush {
            out.pending_group = true;
            break;
        }
        out.records.push(Record {
            start: lines[i].0,
            lines: lines[i..j].iter().map(|&(s, e, _)| (s, e)).collect(),
            grouped: true,
        });
        out.consumed = lines[j - 1].2;
        i = j;
    }
    out
}

/// The text of `record`, joined with `\n` and cut at `cap` bytes on a char boundary; the flag
/// says it was cut.
pub fn excerpt(buf: &[u8], record: &Record, cap: usize) -> (String, bool) {
    let mut text = String::new();
    for (n, &(s, e)) in record.lines.iter().enumerate() {
        if n > 0 {
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&buf[s..e]));
        if text.len() > cap {
            break;
        }
    }
    if text.len() <= cap {
        return (text, false);
    }
    let mut cut = cap;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPTS: SplitOpts = SplitOpts {
        group_tracebacks: true,
        max_group_lines: 200,
        final_chunk: false,
        more_follows: false,
        flush_pending: false,
    };

    fn texts(buf: &[u8], s: &Split) -> Vec<String> {
        s.records
            .iter()
            .map(|r| excerpt(buf, r, usize::MAX).0)
            .collect()
    }

    const TB: &str = "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\nValueError: boom\n";

    #[test]
    fn a_three_line_traceback_is_one_record() {
        let buf = format!("INFO start\n{TB}INFO after\n");
        let s = split(buf.as_bytes(), &OPTS);
        assert_eq!(
            texts(buf.as_bytes(), &s),
            [
                "INFO start",
                "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\nValueError: boom",
                "INFO after"
            ]
        );
        assert_eq!(s.records[1].lines.len(), 3);
        assert_eq!(s.consumed, buf.len());
        assert!(!s.pending_group);
    }

    #[test]
    fn partial_lines_and_open_groups_wait() {
        let buf = b"ERROR one\nERROR tw";
        let s = split(buf, &OPTS);
        assert_eq!(s.consumed, 10);
        assert_eq!(s.records.len(), 1);
        // Final chunk: the partial line is consumed too.
        let fin = split(
            buf,
            &SplitOpts {
                final_chunk: true,
                ..OPTS
            },
        );
        assert_eq!(fin.consumed, buf.len());
        assert_eq!(texts(buf, &fin), ["ERROR one", "ERROR tw"]);

        let buf = b"x\nTraceback (most recent call last):\n  File \"a\", line 1\n";
        let s = split(buf, &OPTS);
        assert_eq!((s.consumed, s.pending_group), (2, true));
        assert_eq!(s.records.len(), 1);
        // Flushed only when it heads the chunk.
        let rest = &buf[2..];
        let f = split(
            rest,
            &SplitOpts {
                flush_pending: true,
                ..OPTS
            },
        );
        assert_eq!((f.consumed, f.pending_group), (rest.len(), false));
        assert_eq!(f.records[0].lines.len(), 2);
    }

    #[test]
    fn a_line_longer_than_the_chunk_is_cut_not_stuck() {
        let buf = vec![b'a'; 100];
        let s = split(
            &buf,
            &SplitOpts {
                more_follows: true,
                ..OPTS
            },
        );
        assert_eq!(s.consumed, 100);
        assert!(split(&buf, &OPTS).records.is_empty());
    }

    #[test]
    fn group_ends_at_blank_line_and_at_max_lines() {
        let buf = b"Traceback (most recent call last):\n  File x\n\nERROR y\n";
        let s = split(buf, &OPTS);
        assert_eq!(s.records.len(), 3, "{s:?}");
        assert_eq!(s.records[0].lines.len(), 2);
        let buf = b"Traceback (most recent call last):\n  a\n  b\n  c\n  d\nE: x\n";
        let s = split(
            buf,
            &SplitOpts {
                max_group_lines: 3,
                ..OPTS
            },
        );
        assert_eq!(s.records[0].lines.len(), 3);
        assert_eq!(s.consumed, buf.len());
    }

    #[test]
    fn excerpt_is_capped_on_a_char_boundary() {
        let buf = "é".repeat(10);
        let rec = Record {
            start: 0,
            lines: vec![(0, buf.len())],
            grouped: false,
        };
        let (t, cut) = excerpt(buf.as_bytes(), &rec, 5);
        assert_eq!((t.as_str(), cut), ("éé", true));
        assert!(!excerpt(buf.as_bytes(), &rec, 100).1);
    }

    #[test]
    fn patterns_substring_and_regex_in_order() {
        let m = Matcher::new(&[
            PatternConfig {
                name: "oom".into(),
                contains: None,
                regex: Some(r"Killed process \d+".into()),
            },
            PatternConfig {
                name: "error".into(),
                contains: Some("ERROR".into()),
                regex: None,
            },
        ]);
        assert_eq!(m.first_match("ERROR Killed process 12"), Some("oom"));
        assert_eq!(m.first_match("ERROR Killed process x"), Some("error"));
        assert_eq!(m.first_match("INFO fine"), None);
        assert_eq!(m.match_record(["INFO", "has ERROR"]), Some("error"));
    }

    proptest! {
        /// Splitting never loses or repeats a complete line, however the text is chunked.
        #[test]
        fn chunking_does_not_change_records(
            lines in proptest::collection::vec(prop_oneof![
                Just("Traceback (most recent call last):".to_string()),
                Just("  File \"x\"".to_string()),
                Just("ValueError: x".to_string()),
                Just(String::new()),
                "[a-z ]{0,12}",
            ], 0..40),
            // At least one whole line (longest is 35 bytes) fits in a window.
            cut in 36usize..128,
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let buf = text.as_bytes();
            let whole = split(buf, &SplitOpts { final_chunk: true, ..OPTS });
            let expect = texts(buf, &whole);
            // Feed it in windows of at most `cut` bytes after the cursor (plus what a pending
            // group needs), like the tailer does.
            let mut got = Vec::new();
            let mut pos = 0;
            let mut window = cut;
            while pos < buf.len() {
                let end = (pos + window).min(buf.len());
                let fin = end == buf.len();
                let s = split(&buf[pos..end], &SplitOpts { final_chunk: fin, more_follows: !fin, ..OPTS });
                got.extend(texts(&buf[pos..end], &s));
                if s.consumed == 0 {
                    window += cut;
                } else {
                    window = cut;
                }
                pos += s.consumed;
            }
            let joined_got: String = got.join("\n");
            let joined_expect: String = expect.join("\n");
            // Groups may be cut where a chunk was full, but no text is lost or repeated.
            prop_assert_eq!(joined_got, joined_expect);
        }
    }
}
