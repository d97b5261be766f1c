//! How a TOML value becomes a typed section or `(full key, reason)` problems: one section at a
//! time ([`section`]), or every top-level key of a document in turn ([`Sections`]).

use serde::de::DeserializeOwned;

/// Deserializes one section, turning an error into `(full key, reason)` in `out`.
pub fn section<T: DeserializeOwned>(
    prefix: &str,
    value: toml::Value,
    out: &mut Vec<(String, String)>,
) -> Option<T> {
    match T::deserialize(value) {
        Ok(v) => Some(v),
        Err(e) => {
            out.push(error_key(prefix, &e));
            None
        }
    }
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
