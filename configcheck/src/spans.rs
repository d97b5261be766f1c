//! The line of every key path of a TOML document (`nats.urls[0]`, `modules[1].interval`),
//! read from toml_edit's spans, and the placing of `(key, reason)` pairs at those lines.

use std::collections::HashMap;

use toml_edit::{ImDocument, Item, TableLike, Value};

use crate::section::join_key;
use crate::Problem;

/// 1-based line of a byte offset.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Line of every key path in the document. A table that only exists implicitly
/// (`[notify.routes.x]` with no `[notify]` line) is at the first header naming it.
#[derive(Debug, Default)]
pub struct SpanIndex {
    lines: HashMap<String, usize>,
}

impl SpanIndex {
    /// Indexes `text`; unparsable text gives an empty index.
    pub fn build(text: &str) -> Self {
        let mut index = SpanIndex::default();
        if let Ok(doc) = ImDocument::parse(text) {
            index.table(doc.as_table(), "", text);
        }
        index
    }

    /// Line of `key`, else of its nearest parent present in the file.
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.lines.get(k) {
                return Some(*l);
            }
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
        }
    }

    /// Places `(key, reason)` pairs at their lines, ordered by line (problems without a line
    /// first; equal lines keep their order).
    pub fn locate(&self, raw: Vec<(String, String)>) -> Vec<Problem> {
        let mut problems: Vec<Problem> = raw
            .into_iter()
            .map(|(key, reason)| Problem {
                line: self.line(&key),
                key,
                reason,
            })
            .collect();
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        problems
    }

    fn note(&mut self, path: &str, span: Option<std::ops::Range<usize>>, text: &str) {
        if let Some(span) = span {
            self.lines
                .insert(path.to_owned(), line_at(text, span.start));
        }
    }

    fn table(&mut self, table: &dyn TableLike, path: &str, text: &str) {
        for (k, item) in table.iter() {
            let child = join_key(path, k);
            let key_span = table.get_key_value(k).and_then(|(key, _)| key.span());
            self.note(&child, key_span.or_else(|| item.span()), text);
            self.item(item, &child, text);
        }
    }

    fn item(&mut self, item: &Item, path: &str, text: &str) {
        match item {
            Item::None => {}
            Item::Value(v) => self.value(v, path, text),
            Item::Table(t) => self.table(t, path, text),
            Item::ArrayOfTables(tables) => {
                for (i, t) in tables.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    self.note(&child, t.span(), text);
                    self.table(t, &child, text);
                }
            }
        }
    }

    fn value(&mut self, value: &Value, path: &str, text: &str) {
        match value {
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    self.note(&child, v.span(), text);
                    self.value(v, &child, text);
                }
            }
            Value::InlineTable(t) => self.table(t, path, text),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name = \"blue\"

[alerts.rules.disk_crit]
for = \"1m\"

[[notify.routes]]
name = \"hook\"

[[notify.routes]]
name = \"bad\"
rate_limit = { per_minute = 0 }
paths = [
  \"/a\",
  \"/b\",
]
";

    #[test]
    fn every_key_path_has_its_line() {
        let index = SpanIndex::build(TEXT);
        for (key, line) in [
            ("name", 1),
            ("alerts", 3),
            ("alerts.rules.disk_crit", 3),
            ("alerts.rules.disk_crit.for", 4),
            ("notify.routes", 6),
            ("notify.routes[0].name", 7),
            ("notify.routes[1]", 9),
            ("notify.routes[1].name", 10),
            ("notify.routes[1].rate_limit.per_minute", 11),
            ("notify.routes[1].paths[1]", 14),
        ] {
            assert_eq!(index.line(key), Some(line), "{key}");
        }
    }

    #[test]
    fn a_missing_key_takes_its_nearest_parents_line() {
        let index = SpanIndex::build(TEXT);
        assert_eq!(index.line("notify.routes[1].url"), Some(9));
        assert_eq!(index.line("alerts.missed_heartbeats"), Some(3));
        assert_eq!(index.line("data_dir"), None);
        assert_eq!(SpanIndex::build("a = [").line("a"), None);
    }

    #[test]
    fn problems_are_ordered_by_line() {
        let index = SpanIndex::build(TEXT);
        let problems = index.locate(vec![
            ("notify.routes[1].name".into(), "b".into()),
            ("name".into(), "a".into()),
            ("data_dir".into(), "is required".into()),
        ]);
        let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [None, Some(1), Some(10)]);
    }

    #[test]
    fn line_at_counts_newlines_before_the_offset() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 99), 3);
    }
}
