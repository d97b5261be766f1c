//! docs/modules.md cannot drift from the config structs: it has one section per module type;
//! each section's table names exactly the keys the struct (and its nested tables) accepts, as
//! serde's own "expected one of" lists them; every default written in backticks loads to the
//! same config as leaving the key out; every example loads with the agent's config loader; and
//! the full examples of a section (all but the first, minimal one: one per variant where keys
//! exclude each other, as the service managers') together set every documented key, except
//! the keys documented as `refused` (accepted by the struct, refused by the checks there).

use std::collections::BTreeSet;
use std::path::Path;

use opsfleet_agent::config::{parse_module_toml, parse_str, MODULE_TYPES};

/// One `## \`type\`` section of the page.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    /// `(key, default as TOML when written in backticks)`; nested keys as `jobs[].name`.
    keys: Vec<(String, Option<String>)>,
    /// The ```toml blocks, in order.
    examples: Vec<String>,
}

/// The default cell of a key the struct accepts but the section's checks refuse (a service's
/// probes take the health module's struct, minus the keys only a health module judges).
const REFUSED: &str = "refused";

fn sections() -> Vec<Section> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/modules.md");
    let text = std::fs::read_to_string(&path).expect("docs/modules.md");
    let mut out: Vec<Section> = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        if let Some(b) = block.as_mut() {
            if line == "```" {
                let done = block.take().unwrap_or_default();
                if let Some(s) = out.last_mut() {
                    s.examples.push(done);
                }
            } else {
                b.push_str(line);
                b.push('\n');
            }
            continue;
        }
        if line == "```toml" {
            block = Some(String::new());
        } else if let Some(kind) = line.strip_prefix("## `").and_then(|l| l.strip_suffix('`')) {
            out.push(Section {
                kind: kind.to_owned(),
                ..Default::default()
            });
        } else if let (Some(row), Some(s)) = (line.strip_prefix("| `"), out.last_mut()) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let key = cells[0].trim_end_matches('`').to_owned();
            let default = cells
                .get(1)
                .and_then(|d| d.strip_prefix('`'))
                .and_then(|d| d.strip_suffix('`'))
                .map(str::to_owned)
                .or_else(|| (cells.get(1) == Some(&REFUSED)).then(|| REFUSED.to_owned()));
            s.keys.push((key, default));
        }
    }
    out
}

/// The fields serde expects where `probe` (an unknown key) was put, from its error.
fn expected_fields(entry: &str) -> BTreeSet<String> {
    let problems = parse_module_toml(entry).expect_err("an unknown key is refused");
    let reason = problems
        .iter()
        .find(|(k, _)| k.ends_with("zz_undocumented"))
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("no unknown-field problem in {problems:?}"));
    let expected = reason.split("expected").nth(1).unwrap_or_default();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// `entry` with `line` added at the start of its first table whose header line is `header`
/// (`None`: the module's own table, right after `type = ...`).
fn insert(entry: &str, header: Option<&str>, line: &str) -> Option<String> {
    let mut out = String::new();
    let mut done = false;
    for l in entry.lines() {
        out.push_str(l);
        out.push('\n');
        let here = match header {
            None => l.starts_with("type = "),
            Some(h) => l == h,
        };
        if here && !done {
            out.push_str(line);
            out.push('\n');
            done = true;
        }
    }
    done.then_some(out)
}

fn load(entry: &str) -> opsfleet_agent::config::AgentConfig {
    parse_str(&format!("host = \"web-01\"\n{entry}"))
        .unwrap_or_else(|p| panic!("does not load: {p:?}\n{entry}"))
}

/// Nested tables of an example: `jobs` of `[[modules.jobs]]` (an array of tables) and
/// `compose` of `[modules.compose]` (one table).
fn nested_tables(entry: &str) -> BTreeSet<String> {
    table_headers(entry)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// `(name, is an array of tables)` of each nested table header of an example.
fn table_headers(entry: &str) -> BTreeSet<(String, bool)> {
    let header = |l: &str| {
        if let Some(name) = l
            .strip_prefix("[[modules.")
            .and_then(|n| n.strip_suffix("]]"))
        {
            return Some((name.to_owned(), true));
        }
        let name = l.strip_prefix("[modules.")?.strip_suffix(']')?;
        Some((name.to_owned(), false))
    };
    entry.lines().filter_map(header).collect()
}

/// `entry` without the line setting `leaf` in the table whose header line is `header`.
fn without(entry: &str, header: &str, leaf: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for l in entry.lines() {
        if l.starts_with('[') {
            inside = l == header;
        }
        if !(inside && l.starts_with(&format!("{leaf} = "))) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// How the page names a nested table: `jobs[].pre_backup` for `[modules.jobs.pre_backup]`
/// inside the array of tables `[[modules.jobs]]`, else the header's name.
fn doc_table(table: &str, headers: &BTreeSet<(String, bool)>) -> String {
    match table.split_once('.') {
        Some((outer, inner)) if headers.contains(&(outer.to_owned(), true)) => {
            format!("{outer}[].{inner}")
        }
        _ => table.to_owned(),
    }
}

/// A documented key's table, if nested: `("jobs", "name")` of `jobs[].name`, `("compose",
/// "service")` of `compose.service`; the header of that table in a `[[modules]]` example.
fn nested_key(key: &str) -> Option<(String, &str)> {
    if let Some((table, leaf)) = key.split_once("[].") {
        // A table inside an array of tables: `jobs[].pre_backup.timeout`.
        if let Some((inner, leaf)) = leaf.rsplit_once('.') {
            return Some((format!("[modules.{table}.{inner}]"), leaf));
        }
        return Some((format!("[[modules.{table}]]"), leaf));
    }
    let (table, leaf) = key.split_once('.')?;
    Some((format!("[modules.{table}]"), leaf))
}

#[test]
fn every_module_type_has_a_section() {
    let kinds: Vec<String> = sections().into_iter().map(|s| s.kind).collect();
    assert_eq!(kinds, MODULE_TYPES, "docs/modules.md sections");
}

#[test]
fn every_example_loads_with_the_real_loader() {
    for s in sections() {
        assert!(
            s.examples.len() >= 2,
            "{}: a minimal and a full example",
            s.kind
        );
        for e in &s.examples {
            let cfg = load(e);
            assert_eq!(cfg.modules.len(), 1, "{}: one entry per example", s.kind);
            assert_eq!(cfg.modules[0].kind(), s.kind);
        }
    }
}

#[test]
fn the_tables_name_exactly_the_keys_of_the_structs() {
    for s in sections() {
        let mut want: BTreeSet<String> = BTreeSet::new();
        // Every example's tables (a section may show one example per variant, as the
        // service managers, each with its own table).
        for full in &s.examples {
            // One entry as `config apply` takes it: no `[[modules]]`, nested tables at the top.
            let entry = full
                .replace("[[modules]]\n", "")
                .replace("[[modules.", "[[")
                .replace("[modules.", "[");
            let top = insert(&entry, None, "zz_undocumented = 1").expect("type line");
            want.extend(expected_fields(&top));
            let headers = table_headers(full);
            for (table, array) in &headers {
                let (header, key) = if *array {
                    (format!("[[{table}]]"), format!("{table}[]."))
                } else {
                    (
                        format!("[{table}]"),
                        format!("{}.", doc_table(table, &headers)),
                    )
                };
                let nested = insert(&entry, Some(&header), "zz_undocumented = 1").expect("header");
                want.extend(
                    expected_fields(&nested)
                        .into_iter()
                        .map(|k| format!("{key}{k}")),
                );
            }
        }
        want.remove("type");
        let documented: BTreeSet<String> = s.keys.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            documented, want,
            "{}: documented keys vs the struct's",
            s.kind
        );
    }
}

/// The full examples (all but the first, minimal one) together set every documented key.
#[test]
fn the_full_example_sets_every_key() {
    for s in sections() {
        let full = &s.examples[1..];
        for (key, default) in &s.keys {
            if default.as_deref() == Some(REFUSED) {
                continue;
            }
            let leaf = key.rsplit('.').next().unwrap_or(key);
            let set = full.iter().any(|e| {
                e.lines().any(|l| l.starts_with(&format!("{leaf} = ")))
                    || nested_tables(e).contains(leaf)
                    || nested_tables(e).contains(key.as_str())
                    || table_headers(e).iter().any(|(t, _)| t == key)
                    || table_headers(e)
                        .iter()
                        .any(|(t, _)| doc_table(t, &table_headers(e)) == *key)
            });
            assert!(set, "{}: no full example sets {key}", s.kind);
        }
    }
}

/// Each documented default, added to the first example that has the key's table (the minimal
/// one for the entry's own keys), loads to the same config.
#[test]
fn documented_defaults_are_the_defaults() {
    for s in sections() {
        for (key, default) in &s.keys {
            let Some(default) = default.as_deref().filter(|d| *d != REFUSED) else {
                continue;
            };
            let (header, leaf) = match nested_key(key) {
                Some((header, leaf)) => (Some(header), leaf),
                None => (None, key.as_str()),
            };
            let example = match &header {
                Some(h) => s.examples.iter().find(|e| e.lines().any(|l| l == h)),
                None => s.examples.first(),
            };
            let example =
                example.unwrap_or_else(|| panic!("{}: no example has the {key} table", s.kind));
            // An array of tables the example writes as `[[modules.K]]` is not set again as
            // `K = []`.
            if nested_tables(example).contains(key) {
                continue;
            }
            // A full example may set the key itself: leave it out there first.
            let example = match &header {
                Some(h) => without(example, h, leaf),
                None => example.clone(),
            };
            let base = load(&example);
            let with = insert(&example, header.as_deref(), &format!("{leaf} = {default}"))
                .unwrap_or_else(|| panic!("{}: the example has no {key} table", s.kind));
            assert_eq!(
                load(&with),
                base,
                "{}: {key} = {default} is not the default",
                s.kind
            );
        }
    }
}
