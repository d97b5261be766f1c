//! How a TOML value becomes a typed section or `(full key, reason)` problems: one section at a
//! time ([`section`]), or every top-level key of a document in turn ([`Sections`]).

use serde::de::DeserializeOwned;

/// Most problems one section reports: each retry drops one bad key, so this bounds the work
/// on a hostile file.
const SECTION_PROBLEMS_MAX: usize = 64;

/// Deserializes one section, turning errors into `(full key, reason)` in `out`. serde stops
/// at the first error, so a bad or unknown key is taken out of the value and the section tried
/// again, until it parses or the error names no key present in it (a missing field, a wrong
/// type of the whole section): every problem of the section is reported at once.
pub fn section<T: DeserializeOwned>(
    prefix: &str,
    mut value: toml::Value,
    out: &mut Vec<(String, String)>,
) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..SECTION_PROBLEMS_MAX {
        let e = match T::deserialize(value.clone()) {
            Ok(v) if removed.is_empty() => return Some(v),
            Ok(_) => return None,
            Err(e) => e,
        };
        let (key, reason) = error_key(prefix, &e);
        let inner = key
            .strip_prefix(prefix)
            .map(|k| k.trim_start_matches('.'))
            .unwrap_or(&key)
            .to_owned();
        if reason.starts_with("missing field") {
            // Nothing to take out: report it (once: a bad required key taken out is missing
            // now) and go on without the table that lacks it.
            if !removed.iter().any(|r| same_key(r, &inner)) {
                out.push((join_key(prefix, &missing_at(&value, &inner)), reason));
            }
            let parent = inner.rsplit_once('.').map_or("", |(p, _)| p).to_owned();
            let first = parent.split('.').next().unwrap_or("").to_owned();
            if parent.is_empty()
                || !(remove_path(&mut value, &parent) || remove_path(&mut value, &first))
            {
                return None;
            }
            removed.push(parent);
            continue;
        }
        match take_bad_key::<T>(&mut value, &inner, (&key, &reason), prefix) {
            Some(at) => {
                out.push((join_key(prefix, &at), reason));
                removed.push(at);
            }
            None => {
                out.push((key, reason));
                return None;
            }
        }
    }
    None
}

/// Where a missing field belongs, with array indexes: the first table on its path lacking it.
fn missing_at(value: &toml::Value, inner: &str) -> String {
    let Some((parent, field)) = inner.rsplit_once('.') else {
        return inner.to_owned();
    };
    let Some(path) = steps(parent) else {
        return inner.to_owned();
    };
    // The tables the parent names; an array of tables stands for its items.
    let tables: Vec<String> = expand(value, &path, String::new())
        .into_iter()
        .flat_map(|at| match get(value, &at) {
            Some(toml::Value::Array(items)) => {
                (0..items.len()).map(|i| format!("{at}[{i}]")).collect()
            }
            _ => vec![at],
        })
        .collect();
    tables
        .into_iter()
        .find(|at| get(value, &join_key(at, field)).is_none())
        .map_or_else(|| inner.to_owned(), |at| join_key(&at, field))
}

/// The value at a concrete `path` (`probes[1].url`).
fn get<'v>(value: &'v toml::Value, path: &str) -> Option<&'v toml::Value> {
    steps(path)?
        .iter()
        .try_fold(value, |at, step| match (step, at) {
            (Step::Key(k), toml::Value::Table(t)) => t.get(k),
            (Step::Index(i), toml::Value::Array(a)) => a.get(*i),
            _ => None,
        })
}

/// `probes[1].url` is `probes.url` as toml's errors spell it (they carry no array index).
fn same_key(indexed: &str, plain: &str) -> bool {
    strip_indexes(indexed) == strip_indexes(plain)
}

fn strip_indexes(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut depth = 0;
    for c in key.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Takes the key an error names out of `value`, and returns its path with array indexes.
/// toml's error paths have no indexes: of the array items holding the key, the one whose
/// removal changes the error is the bad one.
fn take_bad_key<T: DeserializeOwned>(
    value: &mut toml::Value,
    inner: &str,
    error: (&str, &str),
    prefix: &str,
) -> Option<String> {
    if inner.is_empty() {
        return None;
    }
    let candidates = expand(value, &steps(inner)?, String::new());
    if let [only] = candidates.as_slice() {
        return remove_path(value, only).then(|| only.clone());
    }
    for at in &candidates {
        let mut trial = value.clone();
        if !remove_path(&mut trial, at) {
            continue;
        }
        let still = T::deserialize(trial.clone())
            .err()
            .map(|e| error_key(prefix, &e));
        if still.as_ref().map(|(k, r)| (k.as_str(), r.as_str())) != Some(error) {
            *value = trial;
            return Some(at.clone());
        }
    }
    None
}

/// The concrete paths (with every array index) present in `value` that `steps` may name.
fn expand(value: &toml::Value, steps: &[Step], at: String) -> Vec<String> {
    let Some((step, rest)) = steps.split_first() else {
        return vec![at];
    };
    match (step, value) {
        (Step::Key(k), toml::Value::Table(t)) => match t.get(k) {
            Some(v) => expand(v, rest, join_key(&at, k)),
            None => Vec::new(),
        },
        (Step::Key(_), toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| expand(v, steps, format!("{at}[{i}]")))
            .collect(),
        (Step::Index(i), toml::Value::Array(items)) => match items.get(*i) {
            Some(v) => expand(v, rest, format!("{at}[{i}]")),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn steps(path: &str) -> Option<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            steps.push(Step::Key(name.to_owned()));
        }
        for ix in indexes.split('[').filter(|s| !s.is_empty()) {
            steps.push(Step::Index(ix.trim_end_matches(']').parse().ok()?));
        }
    }
    Some(steps)
}

/// Removes the key at `path` (`a.b`, `probes[1].url`) from `value`; false when it is absent.
fn remove_path(value: &mut toml::Value, path: &str) -> bool {
    let Some(steps) = steps(path) else {
        return false;
    };
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut at = value;
    for step in parents {
        let next = match (step, at) {
            (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k),
            (Step::Index(i), toml::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match (last, at) {
        (Step::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        // An array item is kept in place (later indexes keep their keys), emptied.
        (Step::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            let emptied = toml::Value::Table(toml::Table::new());
            let changed = a[*i] != emptied;
            a[*i] = emptied;
            changed
        }
        _ => false,
    }
}

/// One step of a key path.
enum Step {
    Key(String),
    Index(usize),
}

/// `toml::de::Error` from a `Value` carries the key path only in its Display (`in `a.b``), and
/// unknown/missing field names only in the message.
fn error_key(prefix: &str, e: &toml::de::Error) -> (String, String) {
    let message = e.message().trim().to_owned();
    let display = e.to_string();
    let mut key = prefix.to_owned();
    if let Some(inner) = display
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `").and_then(|l| l.strip_suffix('`')))
    {
        key = join_key(&key, inner);
    }
    for lead in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(lead) {
            if let Some((field, _)) = rest.split_once('`') {
                key = join_key(&key, field);
            }
        }
    }
    (key, message)
}

/// `prefix.key`, or `key` under an empty prefix.
pub fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Problems of a section's own checks, their keys put under `prefix`.
pub fn prefixed(prefix: &str, problems: Vec<(String, String)>) -> Vec<(String, String)> {
    problems
        .into_iter()
        .map(|(k, r)| (format!("{prefix}.{k}"), r))
        .collect()
}

/// The top-level keys of a document, taken one by one; what is left at [`Sections::finish`]
/// is unknown.
#[derive(Debug)]
pub struct Sections {
    table: toml::Table,
    /// Every problem so far, as `(full key, reason)`.
    pub out: Vec<(String, String)>,
}

impl Sections {
    pub fn new(table: toml::Table) -> Self {
        Sections {
            table,
            out: Vec::new(),
        }
    }

    /// Deserializes top-level `key`; a problem and None when it is bad. An absent key is
    /// `default()`; a `None` default means the key is required.
    pub fn take<T: DeserializeOwned>(
        &mut self,
        key: &str,
        default: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        match self.table.remove(key) {
            Some(v) => section(key, v, &mut self.out),
            None => {
                let v = default();
                if v.is_none() {
                    self.problem(key, "is required");
                }
                v
            }
        }
    }

    /// Removes top-level `key` as it is, for a section read by hand.
    pub fn take_value(&mut self, key: &str) -> Option<toml::Value> {
        self.table.remove(key)
    }

    /// Records a problem at `key` (a full key path: `ingest.batch_max`).
    pub fn problem(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.out.push((key.into(), reason.into()));
    }

    /// Records a section's own problems, their keys put under `prefix`.
    pub fn extend(&mut self, prefix: &str, problems: Vec<(String, String)>) {
        self.out.extend(prefixed(prefix, problems));
    }

    /// Every problem, each top-level key nobody took among them with reason `unknown`.
    pub fn finish(mut self, unknown: &str) -> Vec<(String, String)> {
        for (key, _) in std::mem::take(&mut self.table) {
            self.out.push((key, unknown.to_owned()));
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Ingest {
        batch_max: u32,
        #[serde(default, with = "humantime_serde")]
        ack_wait: Option<std::time::Duration>,
    }

    fn sections(text: &str) -> Sections {
        Sections::new(toml::from_str(text).expect("toml"))
    }

    #[test]
    fn errors_name_the_inner_key() {
        let mut s = sections("[ingest]\nbatch_max = 1\nack_wait = \"soon\"\n");
        assert!(s.take::<Ingest>("ingest", || None).is_none());
        assert_eq!(s.out[0].0, "ingest.ack_wait");
        let mut s = sections("[ingest]\nbatch_max = 1\nbatchmax = 2\n");
        assert!(s.take::<Ingest>("ingest", || None).is_none());
        assert_eq!(s.out[0].0, "ingest.batchmax");
        let mut s = sections("[ingest]\n");
        assert!(s.take::<Ingest>("ingest", || None).is_none());
        assert_eq!(s.out[0].0, "ingest.batch_max");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Module {
        #[serde(default, with = "humantime_serde")]
        interval: Option<std::time::Duration>,
        #[serde(default)]
        paths: Vec<String>,
        #[serde(default)]
        warn: f64,
        #[serde(default)]
        probes: Vec<Probe>,
    }

    #[test]
    fn every_problem_of_a_section_is_reported_not_only_the_first() {
        let text = "[m]\ninterval = 5\npaths = \"/\"\nbogus = 1\n\
                    probes = [{ name = \"a\", port = \"x\" }, { nam = \"b\" }]\nwarn = \"high\"\n";
        let mut s = sections(text);
        assert!(s.take::<Module>("m", || None).is_none());
        let mut keys: Vec<&str> = s.out.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "m.bogus",
                "m.interval",
                "m.paths",
                "m.probes[0].port",
                "m.probes[1].nam",
                "m.probes[1].name",
                "m.warn"
            ],
            "{:?}",
            s.out
        );
    }

    #[test]
    fn a_bad_required_key_is_reported_once() {
        let mut s = sections("[p]\nname = 3\nport = \"x\"\n");
        assert!(s.take::<Probe>("p", || None).is_none());
        let keys: Vec<&str> = s.out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["p.name", "p.port"], "{:?}", s.out);
        let mut s = sections("p = 3\n");
        assert!(s.take::<Probe>("p", || None).is_none());
        assert_eq!(s.out.len(), 1, "{:?}", s.out);
    }

    #[test]
    fn absent_keys_default_or_are_required_and_leftovers_are_unknown() {
        let mut s = sections("colour = \"blue\"\n");
        assert_eq!(
            s.take::<String>("color", || Some("x".into())).as_deref(),
            Some("x")
        );
        assert_eq!(s.take::<String>("name", || None), None);
        s.extend("nats", vec![("urls".into(), "must not be empty".into())]);
        let out = s.finish("unknown key");
        assert_eq!(
            out,
            [
                ("name".to_owned(), "is required".to_owned()),
                ("nats.urls".to_owned(), "must not be empty".to_owned()),
                ("colour".to_owned(), "unknown key".to_owned()),
            ]
        );
    }
}
