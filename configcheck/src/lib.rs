//! TOML config files parsed with spans; every problem reported as `FILE:LINE: key: reason`.
//!
//! The one config-problem engine of the agent's and the coordinator's loaders: a [`Document`]
//! is the file's table plus the line of every key path in it ([`SpanIndex`]); [`Sections`]
//! deserializes its top-level keys one by one, each section retried without every bad or
//! unknown key so all of its problems are found (serde alone stops at the first), and collects
//! `(full key, reason)` pairs; [`SpanIndex::locate`] turns those into
//! [`Problem`]s with lines, and [`ConfigProblems`] prints them. With the `testing` feature,
//! `testing` holds the mutators both binaries' config fuzz tests use.

mod document;
mod problem;
mod section;
mod spans;
mod syntax;
#[cfg(feature = "testing")]
pub mod testing;

pub use document::Document;
pub use problem::{ConfigProblems, Problem};
pub use section::{join_key, prefixed, section, Sections};
pub use spans::{line_at, SpanIndex};
pub use syntax::{syntax_reason, SYNTAX_KEY};
