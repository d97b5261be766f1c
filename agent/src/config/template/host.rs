//! The host name a template is rendered for: `--host`, a literal `host`, or `host_from`
//! (`"hostname"` / `"env:VAR"`), up to the first `.`.

use super::{Facts, CHECK_HOST};

/// The host name: `--host`, else `host`, else `host_from`.
pub(super) fn resolve_host(
    table: &mut toml::Table,
    facts: &Facts,
    check: bool,
    out: &mut Vec<(String, String)>,
) -> Option<String> {
    let literal = table.remove("host");
    let from = table.remove("host_from");
    if literal.is_some() && from.is_some() {
        out.push((
            "host_from".to_owned(),
            "set either `host` or `host_from`, not both".to_owned(),
        ));
    }
    let from_source = from.and_then(|v| from_source(v, facts, check, out));
    match (&facts.host, literal) {
        (Some(cli), Some(toml::Value::String(file))) if *cli != file => {
            out.push((
                "host".to_owned(),
                format!("the file names host {file:?}, --host says {cli:?}"),
            ));
            Some(file)
        }
        (Some(cli), _) => Some(cli.clone()),
        (None, Some(toml::Value::String(file))) => Some(file),
        (None, Some(other)) => {
            // Let the typed parse report the shape.
            table.insert("host".to_owned(), other);
            None
        }
        (None, None) => from_source,
    }
}

/// The host name `host_from` names, up to the first `.`. Unavailable while checking (or with
/// `--host`): [`CHECK_HOST`].
fn from_source(
    from: toml::Value,
    facts: &Facts,
    check: bool,
    out: &mut Vec<(String, String)>,
) -> Option<String> {
    let toml::Value::String(src) = from else {
        out.push((
            "host_from".to_owned(),
            format!(
                "must be a string (\"hostname\" or \"env:VAR\"), found {}",
                from.type_str()
            ),
        ));
        return None;
    };
    let found = if src == "hostname" {
        facts
            .hostname
            .clone()
            .ok_or_else(|| "the kernel host name is not readable".to_owned())
    } else if let Some(var) = src.strip_prefix("env:") {
        if var.is_empty() {
            out.push((
                "host_from".to_owned(),
                "\"env:\" needs a variable name (\"env:NODE_NAME\")".to_owned(),
            ));
            return None;
        }
        facts
            .env
            .get(var)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| format!("environment variable {var} is not set"))
    } else {
        out.push((
            "host_from".to_owned(),
            format!("{src:?} is not a host source; use \"hostname\" or \"env:VAR\""),
        ));
        return None;
    };
    match found {
        // The first DNS label: `ip-10-0-1-7.ec2.internal` → `ip-10-0-1-7` (a host name
        // is one subject token, without dots).
        Ok(h) => Some(h.split('.').next().unwrap_or(&h).to_owned()),
        Err(_) if check || facts.host.is_some() => Some(CHECK_HOST.to_owned()),
        Err(e) => {
            out.push(("host_from".to_owned(), e));
            None
        }
    }
}
