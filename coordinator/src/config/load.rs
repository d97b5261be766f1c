//! Reading a TOML config so that *every* problem is reported, each as `FILE:LINE: key: reason`:
//! top-level sections are deserialised one by one (serde stops at a section's first error, not
//! the file's), and lines are recovered from the sections' spans.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use std::ops::Range;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{line}: {}: {}",
                self.file.display(),
                self.key,
                self.reason
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason),
        }
    }
}

pub(crate) use opsfleet_bus::syntax_reason;

/// Every problem found in one file.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in {}", problems.len(), file.display())]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// One line per problem, for stderr.
    pub fn report(&self) -> String {
        self.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A parsed file whose sections are deserialised on demand.
pub struct Doc {
    file: PathBuf,
    text: String,
    /// Top-level keys with the byte range of the text that defines them.
    top: BTreeMap<String, (toml::Value, Range<usize>)>,
    problems: Vec<Problem>,
}

impl Doc {
    /// Reads and parses `file`; a read or syntax error is returned as the only problem.
    pub fn read(file: &Path) -> Result<Doc, ConfigErrors> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigErrors {
            file: file.to_path_buf(),
            problems: vec![Problem {
                file: file.to_path_buf(),
                line: None,
                key: "(file)".to_owned(),
                reason: format!("cannot read: {e}"),
            }],
        })?;
        Doc::parse(file, text)
    }

    pub fn parse(file: &Path, text: String) -> Result<Doc, ConfigErrors> {
        // A plain table, not `Spanned` values: toml 0.8 cannot give a span to a table that only
        // exists implicitly (`[notify.routes.x]` with no `[notify]` line), so spans come from
        // the text instead (`top_key_span`).
        match toml::from_str::<toml::Table>(&text) {
            Ok(table) => {
                let top = table
                    .into_iter()
                    .map(|(key, value)| {
                        let span = top_key_span(&text, &key);
                        (key, (value, span))
                    })
                    .collect();
                Ok(Doc {
                    file: file.to_path_buf(),
                    text,
                    top,
                    problems: Vec::new(),
                })
            }
            Err(e) => {
                let line = e.span().map(|s| line_at(&text, s.start));
                Err(ConfigErrors {
                    file: file.to_path_buf(),
                    problems: vec![Problem {
                        file: file.to_path_buf(),
                        line,
                        key: "(syntax)".to_owned(),
                        reason: syntax_reason(&e),
                    }],
                })
            }
        }
    }

    /// Deserialises top-level key `key`; records a problem and returns None when it is bad.
    /// A missing key yields `T::default()` via `default`.
    pub fn take<T: DeserializeOwned>(
        &mut self,
        key: &str,
        default: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        let Some((value, span)) = self.top.remove(key) else {
            let v = default();
            if v.is_none() {
                self.problems.push(Problem {
                    file: self.file.clone(),
                    line: None,
                    key: key.to_owned(),
                    reason: "is required".to_owned(),
                });
            }
            return v;
        };
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = e.message().trim().to_owned();
                let field = backticked(&msg);
                let (full_key, line) = match field {
                    Some(f)
                        if msg.starts_with("unknown field") || msg.starts_with("missing field") =>
                    {
                        let line = self
                            .key_line_within(span.clone(), f)
                            .unwrap_or_else(|| line_at(&self.text, span.start));
                        (format!("{key}.{f}"), line)
                    }
                    _ => (key.to_owned(), line_at(&self.text, span.start)),
                };
                self.problems.push(Problem {
                    file: self.file.clone(),
                    line: Some(line),
                    key: full_key,
                    reason: msg,
                });
                None
            }
        }
    }

    /// Records a semantic problem with `key` like `ingest.batch_max`.
    pub fn problem(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let key = key.into();
        let line = self.line_of(&key);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            key,
            reason: reason.into(),
        });
    }

    /// Ends reading: unknown top-level keys are problems; Ok when nothing was recorded.
    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        let unknown: Vec<_> = std::mem::take(&mut self.top).into_iter().collect();
        for (key, (_, span)) in unknown {
            let line = line_at(&self.text, span.start);
            self.problems.push(Problem {
                file: self.file.clone(),
                line: Some(line),
                key,
                reason: "unknown key".to_owned(),
            });
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            self.problems.sort_by_key(|p| p.line.unwrap_or(0));
            Err(ConfigErrors {
                file: self.file,
                problems: self.problems,
            })
        }
    }

    /// Best-effort line of a dotted key: the `[section]` header, then `name =` below it.
    fn line_of(&self, key: &str) -> Option<usize> {
        let (section, field) = match key.split_once('.') {
            Some((s, f)) => (Some(s), f.split(['.', '[']).next().unwrap_or(f)),
            None => (None, key),
        };
        let mut in_section = section.is_none();
        for (i, raw) in self.text.lines().enumerate() {
            let line = raw.trim();
            if line.starts_with('[') {
                let name = line.trim_matches(|c| c == '[' || c == ']').trim();
                if section == Some(name) {
                    if field.is_empty() {
                        return Some(i + 1);
                    }
                    in_section = true;
                } else {
                    in_section = false;
                }
                continue;
            }
            if in_section && is_assignment_of(line, field) {
                return Some(i + 1);
            }
        }
        None
    }

    fn key_line_within(&self, span: std::ops::Range<usize>, field: &str) -> Option<usize> {
        let start = line_at(&self.text, span.start);
        let end = line_at(&self.text, span.end.saturating_sub(1).max(span.start));
        self.text
            .lines()
            .enumerate()
            .skip(start - 1)
            .take(end + 1 - start)
            .find(|(_, l)| is_assignment_of(l.trim(), field))
            .map(|(i, _)| i + 1)
    }
}

/// Byte range of the text that defines top-level `key`: from its first `key =` line before
/// any header, or its first `[key]`, `[key.x]`, `[[key]]` or `[[key.x]]` header, to the next
/// header of another key (best effort; used for line numbers only).
fn top_key_span(text: &str, key: &str) -> Range<usize> {
    let header_key = |line: &str| -> Option<String> {
        let name = line.strip_prefix('[')?.trim_start_matches('[');
        let name = name.split(']').next()?.trim();
        let first = name.split('.').next()?.trim().trim_matches('"');
        Some(first.to_owned())
    };
    let mut offset = 0;
    let mut start = None;
    let mut in_header = false;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim();
        if line.starts_with('[') {
            let is_key = header_key(line).as_deref() == Some(key);
            match start {
                Some(s) if !is_key => return s..offset,
                None if is_key => start = Some(offset),
                _ => {}
            }
            in_header = true;
        } else if !in_header && start.is_none() && is_assignment_of(line, key) {
            return offset..offset + raw.len();
        }
        offset += raw.len();
    }
    match start {
        Some(s) => s..text.len(),
        None => 0..0,
    }
}

fn is_assignment_of(line: &str, field: &str) -> bool {
    line.strip_prefix(field)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

fn backticked(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

/// 1-based line of a byte offset.
pub fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset.min(text.len()))
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
