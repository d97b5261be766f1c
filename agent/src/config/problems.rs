//! How one TOML section becomes a value or a `(full key, reason)` problem: what the config
//! loader and the template renderer both report problems with.

use serde::de::DeserializeOwned;

/// Deserializes one section, turning an error into `(full key, reason)`.
pub(super) fn section<T: DeserializeOwned>(
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

pub(super) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}
