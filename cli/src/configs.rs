//! `opsctl config show|history|diff`: one module's configs on one host as the coordinators'
//! log knows them (`ops.api.configs`) — the flags, the call, and the pure renderings (the
//! history table, a config's TOML, a line diff of two configs), golden-tested.

use clap::Args;
use opsfleet_proto::api::{ConfigVersion, ConfigsReply, ConfigsRequest};
use opsfleet_proto::subjects;

use crate::audit::timestamp;
use crate::client::{Api, ClientError};
use crate::sanitize::inert;
use crate::table::Table;

/// `opsctl config show|history <module> --host H`.
#[derive(Args, Debug, Clone)]
pub struct ConfigReadArgs {
    /// The module instance, as named in the agent's config (e.g. `disk`, `nightly-db`).
    pub module: String,
    /// The host.
    #[arg(long)]
    pub host: String,
}

impl ConfigReadArgs {
    fn request(&self) -> ConfigsRequest {
        ConfigsRequest {
            host: self.host.clone(),
            module: self.module.clone(),
        }
    }
}

/// `opsctl config show <module> --host H [--fingerprint FP]`.
#[derive(Args, Debug, Clone)]
pub struct ConfigShowArgs {
    #[command(flatten)]
    pub read: ConfigReadArgs,
    /// Show this config instead of the current one: a fingerprint from `config history` or a
    /// unique prefix of 8+ hex digits.
    #[arg(long)]
    pub fingerprint: Option<String>,
}

/// `opsctl config diff <module> --host H [--from FP] [--to FP]`.
#[derive(Args, Debug, Clone)]
pub struct ConfigDiffArgs {
    #[command(flatten)]
    pub read: ConfigReadArgs,
    /// The older side: a fingerprint or a unique prefix of 8+ hex digits (default: the
    /// config the module ran before the current one).
    #[arg(long)]
    pub from: Option<String>,
    /// The newer side (default: the current config).
    #[arg(long)]
    pub to: Option<String>,
}

/// The module's configs, oldest first.
pub async fn fetch(api: &Api, a: &ConfigReadArgs) -> Result<ConfigsReply, ClientError> {
    api.call(subjects::API_CONFIGS.to_owned(), &a.request())
        .await
}

/// The history table: one row per config, the current one marked `*`.
pub fn history(reply: &ConfigsReply) -> String {
    let mut table = Table::new(&["CURRENT", "FINGERPRINT", "FIRST SEEN", "LAST SEEN"]);
    for c in &reply.configs {
        table.row([
            if c.current { "*" } else { "" }.to_owned(),
            c.fingerprint.clone(),
            timestamp(c.first_seen_unix_ms),
            timestamp(c.last_seen_unix_ms),
        ]);
    }
    let mut out = header(reply);
    if reply.configs.is_empty() {
        out.push_str("no configs recorded for this module yet\n");
        return out;
    }
    table.write_to(&mut out);
    if reply.current_config().is_none() && !reply.current.is_empty() {
        out.push_str(&format!(
            "the current config {} is not in the kept history\n",
            inert(&reply.current)
        ));
    }
    out
}

/// One config: a comment line naming it, then its TOML (each line made inert).
pub fn show(reply: &ConfigsReply, c: &ConfigVersion) -> String {
    let mut out = format!(
        "# {} on {}: fingerprint {}{}, first seen {}, last seen {}\n",
        inert(&reply.module),
        inert(&reply.host),
        c.fingerprint,
        if c.current { " (current)" } else { "" },
        timestamp(c.first_seen_unix_ms),
        timestamp(c.last_seen_unix_ms)
    );
    for line in c.toml.lines() {
        out.push_str(&inert(line));
        out.push('\n');
    }
    out
}

/// The two configs a diff compares: `--from` (default: the newest config before `to` by
/// when it was last seen) and `--to` (default: the current one).
pub fn pick_pair<'a>(
    reply: &'a ConfigsReply,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(&'a ConfigVersion, &'a ConfigVersion), String> {
    let to = match to {
        Some(fp) => reply.find(fp)?,
        None => current(reply)?,
    };
    let from = match from {
        Some(fp) => reply.find(fp)?,
        None => reply
            .configs
            .iter()
            .filter(|c| c.fingerprint != to.fingerprint)
            .max_by_key(|c| c.last_seen_unix_ms)
            .ok_or_else(|| {
                format!(
                    "module {} on {} has run only one config; nothing to compare",
                    reply.module, reply.host
                )
            })?,
    };
    Ok((from, to))
}

/// The config `fingerprint` names, else the current one.
pub fn pick_one<'a>(
    reply: &'a ConfigsReply,
    fingerprint: Option<&str>,
) -> Result<&'a ConfigVersion, String> {
    match fingerprint {
        Some(fp) => reply.find(fp),
        None => current(reply),
    }
}

/// The config the module runs now.
pub fn current(reply: &ConfigsReply) -> Result<&ConfigVersion, String> {
    reply.current_config().ok_or_else(|| {
        format!(
            "the current config of module {} on {} ({}) is not in the history the log keeps",
            reply.module,
            reply.host,
            if reply.current.is_empty() {
                "none reported"
            } else {
                &reply.current
            }
        )
    })
}

/// A line diff of `from` and `to`, every line shown: ` ` kept, `-` only in `from`, `+` only
/// in `to`; headed by `--- FP` / `+++ FP`.
pub fn diff(from: &ConfigVersion, to: &ConfigVersion) -> String {
    let mut out = format!(
        "--- {}{}\n+++ {}{}\n",
        from.fingerprint,
        if from.current { " (current)" } else { "" },
        to.fingerprint,
        if to.current { " (current)" } else { "" }
    );
    for (mark, line) in line_diff(&from.toml, &to.toml) {
        out.push(mark);
        out.push_str(&inert(line));
        out.push('\n');
    }
    out
}

/// Lines of `a` and `b` marked ` `, `-` or `+` along a longest common subsequence. Pure.
fn line_diff<'a>(a: &'a str, b: &'a str) -> Vec<(char, &'a str)> {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(('-', a[i]));
            i += 1;
        } else {
            out.push(('+', b[j]));
            j += 1;
        }
    }
    out
}

fn header(reply: &ConfigsReply) -> String {
    format!(
        "module {} on {}: {} config(s) known (answered by {})\n",
        inert(&reply.module),
        inert(&reply.host),
        reply.configs.len(),
        inert(&reply.responder.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_diff_keeps_common_lines_and_marks_the_rest() {
        let d = line_diff("a\nb\nc\n", "a\nx\nc\nd\n");
        assert_eq!(
            d,
            [(' ', "a"), ('-', "b"), ('+', "x"), (' ', "c"), ('+', "d")]
        );
        assert_eq!(line_diff("", "a"), [('+', "a")]);
        assert_eq!(line_diff("a", ""), [('-', "a")]);
    }
}
