//! One problem of a config file, and every problem of one file printed as
//! `FILE:LINE: key: reason`, one per line.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the key (or its nearest parent) is in the file.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `modules[1].interval`.
    pub key: String,
    pub reason: String,
}

/// Every problem of one file; `Display` prints one `FILE:LINE: key: reason` per line
/// (`FILE: key: reason` for a problem without a line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigProblems {
    /// One line per problem, for stderr (the `Display` form).
    pub fn report(&self) -> String {
        self.to_string()
    }

    /// `N problem(s) in FILE`.
    pub fn summary(&self) -> String {
        format!(
            "{} problem(s) in {}",
            self.problems.len(),
            self.file.display()
        )
    }
}

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(line) => write!(f, "{file}:{line}: {}: {}", p.key, p.reason)?,
                None => write!(f, "{file}: {}: {}", p.key, p.reason)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_is_one_line_with_or_without_a_line_number() {
        let shown = ConfigProblems {
            file: "a.toml".into(),
            problems: vec![
                Problem {
                    line: None,
                    key: "host".into(),
                    reason: "is required".into(),
                },
                Problem {
                    line: Some(3),
                    key: "nats.urls".into(),
                    reason: "must not be empty".into(),
                },
            ],
        };
        assert_eq!(
            shown.to_string(),
            "a.toml: host: is required\na.toml:3: nats.urls: must not be empty"
        );
        assert_eq!(shown.summary(), "2 problem(s) in a.toml");
    }
}
