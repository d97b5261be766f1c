//! `json = [{ pointer = "/queue/depth", lt = 100 }]`: one assertion on a field of an HTTP
//! probe's JSON body, an RFC 6901 pointer and exactly one comparison.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One assertion: the value at `pointer` compared with exactly one of the keys below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonAssertion {
    /// RFC 6901: `""` is the whole document, `/a/0/b` a path; `~1` is `/`, `~0` is `~`.
    pub pointer: String,
    /// The value equals this (any TOML value; numbers compare as numbers: 1 equals 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The value is present and differs from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    /// The value is a number below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// The value is a number at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub le: Option<f64>,
    /// The value is a number above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// The value is a number at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ge: Option<f64>,
}

/// The comparison of an assertion, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    Equals(Value),
    NotEquals(Value),
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
}

impl Comparison {
    /// The key as the config spells it.
    pub fn key(&self) -> &'static str {
        match self {
            Comparison::Equals(_) => "equals",
            Comparison::NotEquals(_) => "not_equals",
            Comparison::Lt(_) => "lt",
            Comparison::Le(_) => "le",
            Comparison::Gt(_) => "gt",
            Comparison::Ge(_) => "ge",
        }
    }
}

impl JsonAssertion {
    /// An assertion of `comparison` at `pointer`.
    pub fn new(pointer: &str, comparison: Comparison) -> Self {
        let mut a = JsonAssertion {
            pointer: pointer.to_owned(),
            equals: None,
            not_equals: None,
            lt: None,
            le: None,
            gt: None,
            ge: None,
        };
        match comparison {
            Comparison::Equals(v) => a.equals = Some(v),
            Comparison::NotEquals(v) => a.not_equals = Some(v),
            Comparison::Lt(x) => a.lt = Some(x),
            Comparison::Le(x) => a.le = Some(x),
            Comparison::Gt(x) => a.gt = Some(x),
            Comparison::Ge(x) => a.ge = Some(x),
        }
        a
    }

    /// Every comparison set (a valid assertion has exactly one).
    pub fn comparisons(&self) -> Vec<Comparison> {
        let mut out = Vec::new();
        out.extend(self.equals.clone().map(Comparison::Equals));
        out.extend(self.not_equals.clone().map(Comparison::NotEquals));
        out.extend(self.lt.map(Comparison::Lt));
        out.extend(self.le.map(Comparison::Le));
        out.extend(self.gt.map(Comparison::Gt));
        out.extend(self.ge.map(Comparison::Ge));
        out
    }

    /// Problems, keys relative to the assertion (`.pointer`, or `""` for the entry).
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(e) = pointer_problem(&self.pointer) {
            out.push((".pointer".to_owned(), e));
        }
        let set = self.comparisons();
        match set.len() {
            0 => out.push((
                String::new(),
                "needs one comparison: equals, not_equals, lt, le, gt or ge".to_owned(),
            )),
            1 => {}
            _ => out.push((
                String::new(),
                format!(
                    "exactly one comparison per assertion (has {}); a range is two assertions",
                    set.iter()
                        .map(Comparison::key)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
        for c in &set {
            if let Comparison::Lt(x) | Comparison::Le(x) | Comparison::Gt(x) | Comparison::Ge(x) = c
            {
                if !x.is_finite() {
                    out.push((
                        format!(".{}", c.key()),
                        "must be a finite number".to_owned(),
                    ));
                }
            }
        }
        out
    }
}

/// RFC 6901: empty, or `/`-separated tokens where `~` is followed by `0` or `1`.
pub fn pointer_problem(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() {
        return Ok(());
    }
    if !pointer.starts_with('/') {
        return Err(format!(
            "{pointer:?} is not a JSON pointer: it starts with \"/\" (e.g. \"/status\"), or is \"\" for the whole body"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{pointer:?}: \"~\" must be followed by 0 (for ~) or 1 (for /)"
            ));
        }
    }
    Ok(())
}
