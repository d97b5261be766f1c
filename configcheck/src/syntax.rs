//! The reason of a TOML syntax error, and the key such a problem is reported under.

/// Key of a problem that makes the whole file unparsable.
pub const SYNTAX_KEY: &str = "(syntax)";

/// What is wrong with unparsable TOML. toml's `message()` is empty for some errors (a key
/// with no value: `A=`); then the description lines of its full report are used.
pub fn syntax_reason(e: &toml::de::Error) -> String {
    let message = e.message().trim();
    if !message.is_empty() {
        return message.to_owned();
    }
    let report = e.to_string();
    let described: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("TOML parse error") && !l.contains('|'))
        .collect();
    if described.is_empty() {
        "invalid TOML".to_owned()
    } else {
        described.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_without_a_value_has_a_reason() {
        for text in ["A=", "host =", "[nats]\nurls ="] {
            let e = toml::from_str::<toml::Table>(text).expect_err("invalid");
            assert!(!syntax_reason(&e).is_empty(), "{text:?}");
        }
    }
}
