//! A config file's text parsed twice over: into a `toml::Table` to deserialize, and into the
//! line of every key path to report at.

use crate::{line_at, syntax_reason, Problem, SpanIndex, SYNTAX_KEY};

/// A parsed config document.
#[derive(Debug)]
pub struct Document {
    pub table: toml::Table,
    pub spans: SpanIndex,
}

impl Document {
    /// Parses `text`; unparsable TOML is one `(syntax)` problem at the error's line.
    pub fn parse(text: &str) -> Result<Document, Problem> {
        match toml::from_str::<toml::Table>(text) {
            Ok(table) => Ok(Document {
                table,
                spans: SpanIndex::build(text),
            }),
            Err(e) => Err(Problem {
                line: e.span().map(|s| line_at(text, s.start)),
                key: SYNTAX_KEY.to_owned(),
                reason: syntax_reason(&e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_is_one_problem_at_its_line() {
        let p = Document::parse("host = \"a\"\nname = \n").expect_err("invalid");
        assert_eq!((p.key.as_str(), p.line), ("(syntax)", Some(2)));
        assert!(!p.reason.is_empty());
        let doc = Document::parse("host = \"a\"\n[nats]\nurls = []\n").expect("valid");
        assert_eq!(doc.spans.line("nats.urls"), Some(3));
        assert!(doc.table.contains_key("nats"));
    }
}
