//! Per-route matching beyond `min_severity` (pure): `rules`, `hosts` (globs) and `labels` (the
//! host's labels from its newest heartbeat). Every set criterion must hold (AND); within a
//! list, any entry may (OR); an unset or empty criterion matches everything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::glob::glob_match;

/// Longest rule name or host glob accepted (a subject token's limit).
const MAX_NAME: usize = 64;
/// Most entries in one of `rules`, `hosts`, `labels`.
pub const MAX_ENTRIES: usize = 64;

/// What a notification must be about to go to a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    /// Rule names, e.g. `disk_crit`; any of them.
    pub rules: Vec<String>,
    /// Host globs (`*` any run, `?` one character), e.g. `web-*`; any of them.
    pub hosts: Vec<String>,
    /// Host labels that must all be present with these values, e.g. `env = "prod"`.
    pub labels: BTreeMap<String, String>,
}

impl Match {
    /// Does a notification about `rule` on `host` (whose labels are `labels`) match?
    pub fn matches(&self, rule: &str, host: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && (self.hosts.is_empty() || self.hosts.iter().any(|g| glob_match(g, host)))
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }

    /// Every problem as (key relative to the route, reason).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, list) in [("rules", &self.rules), ("hosts", &self.hosts)] {
            if list.len() > MAX_ENTRIES {
                out.push((field.to_owned(), format!("at most {MAX_ENTRIES} entries")));
            }
            let glob = field == "hosts";
            for (i, entry) in list.iter().enumerate() {
                if let Some(reason) = name_problem(entry, glob) {
                    out.push((format!("{field}[{i}]"), reason));
                }
            }
        }
        if self.labels.len() > MAX_ENTRIES {
            out.push(("labels".into(), format!("at most {MAX_ENTRIES} entries")));
        }
        for key in self.labels.keys() {
            if key.is_empty() || key.chars().any(char::is_control) {
                out.push((
                    format!("labels.{key}"),
                    "a label name must be non-empty, without control characters".into(),
                ));
            }
        }
        out
    }
}

/// Why `name` is not a rule name (or, with `glob`, a host glob): letters, digits, `-`, `_`
/// (and `*`, `?` in a glob), 1 to 64 of them.
fn name_problem(name: &str, glob: bool) -> Option<String> {
    let what = if glob { "a host glob" } else { "a rule name" };
    if name.is_empty() {
        return Some(format!("{what} must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Some(format!("{what} has at most {MAX_NAME} characters"));
    }
    let ok = |c: char| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_' || (glob && (c == '*' || c == '?'))
    };
    let extra = if glob { ", `*` and `?`" } else { "" };
    name.chars()
        .find(|c| !ok(*c))
        .map(|c| format!("{what} may hold only letters, digits, `-`, `_`{extra}; found {c:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(rules: &[&str], hosts: &[&str], l: &[(&str, &str)]) -> Match {
        Match {
            rules: rules.iter().map(|s| s.to_string()).collect(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            labels: labels(l),
        }
    }

    #[test]
    fn criteria_are_anded_and_lists_ored() {
        let prod = labels(&[("env", "prod"), ("team", "db")]);
        assert!(Match::default().matches("disk_crit", "web-01", &BTreeMap::new()));
        let route = m(
            &["disk_crit", "host_lost"],
            &["web-*", "db-0?"],
            &[("env", "prod")],
        );
        assert!(route.matches("disk_crit", "web-01", &prod));
        assert!(route.matches("host_lost", "db-02", &prod));
        assert!(!route.matches("log_errors", "web-01", &prod), "rule");
        assert!(!route.matches("disk_crit", "cache-01", &prod), "host");
        assert!(
            !route.matches("disk_crit", "db-012", &prod),
            "? is one character"
        );
        assert!(
            !route.matches("disk_crit", "web-01", &labels(&[("env", "dev")])),
            "label value"
        );
        assert!(
            !route.matches("disk_crit", "web-01", &BTreeMap::new()),
            "a missing label does not match"
        );
        let two = m(&[], &[], &[("env", "prod"), ("team", "web")]);
        assert!(!two.matches("x", "h", &prod), "every label must hold");
    }

    #[test]
    fn every_bad_entry_is_named() {
        let bad = m(
            &["disk crit", ""],
            &["web-*", "web/*", &"h".repeat(65)],
            &[("", "x")],
        );
        let keys: Vec<String> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["rules[0]", "rules[1]", "hosts[1]", "hosts[2]", "labels."]
        );
        assert!(m(&["disk_crit"], &["*", "db-0?"], &[("env", "prod")])
            .problems()
            .is_empty());
        let many = Match {
            rules: vec!["r".into(); MAX_ENTRIES + 1],
            ..Match::default()
        };
        assert_eq!(many.problems()[0].0, "rules");
    }

    proptest! {
        /// Adding a criterion never makes more notifications match; an exact host glob and
        /// the rule's own name always match.
        #[test]
        fn narrowing_only_narrows(
            rule in "[a-z_]{1,8}",
            host in "[a-z0-9-]{1,8}",
            env in "(prod|dev)",
            want in "(prod|dev)",
            glob in "[a-z0-9*?-]{1,6}",
        ) {
            let l = labels(&[("env", &env)]);
            let base = m(&[], &[glob.as_str()], &[]);
            let narrower = m(&[rule.as_str()], &[glob.as_str()], &[("env", &want)]);
            if narrower.matches(&rule, &host, &l) {
                prop_assert!(base.matches(&rule, &host, &l));
            }
            prop_assert!(m(&[rule.as_str()], &[host.as_str()], &[]).matches(&rule, &host, &l));
            prop_assert_eq!(
                m(&[], &[], &[("env", &want)]).matches(&rule, &host, &l),
                env == want
            );
        }
    }
}
