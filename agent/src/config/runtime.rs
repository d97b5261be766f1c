//! Validation of one module config handed in at run time (reconfigure): the same checks as the
//! config file, every problem collected, keys relative to the module entry.

use opsfleet_configcheck::{syntax_reason, SYNTAX_KEY};

use super::load::module_entry;
use super::{modules_problems, ModuleConfig};

/// Every problem of one module config, as the config file would report them for its entry
/// (keys relative to the entry: `interval`, `probes[0].url`, `name`).
pub fn module_problems(m: &ModuleConfig) -> Vec<(String, String)> {
    strip(modules_problems(&[(0, m)]))
}

/// Parses one module entry written as a TOML table (`type = "disk"`, `paths = [...]`, ...)
/// and validates it; on failure returns every problem found.
pub fn parse_module_toml(text: &str) -> Result<ModuleConfig, Vec<(String, String)>> {
    let value: toml::Value = match toml::from_str::<toml::Table>(text) {
        Ok(t) => toml::Value::Table(t),
        Err(e) => return Err(vec![(SYNTAX_KEY.to_owned(), syntax_reason(&e))]),
    };
    let mut out = Vec::new();
    let parsed = module_entry(0, value, &mut out);
    let mut problems = strip(out);
    match parsed {
        Some(m) => {
            problems.extend(module_problems(&m));
            if problems.is_empty() {
                Ok(m)
            } else {
                Err(problems)
            }
        }
        None => Err(problems),
    }
}

fn strip(problems: Vec<(String, String)>) -> Vec<(String, String)> {
    problems
        .into_iter()
        .map(|(k, r)| {
            let k = k
                .strip_prefix("modules[0].")
                .or_else(|| k.strip_prefix("modules[0]"))
                .map_or(k.clone(), str::to_owned);
            (
                if k.is_empty() {
                    "(module)".to_owned()
                } else {
                    k
                },
                r,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_valid_entry() {
        let m =
            parse_module_toml("type = \"disk\"\nname = \"d1\"\npaths = [\"/\"]\n").expect("valid");
        assert_eq!(m.name(), "d1");
    }

    #[test]
    fn reports_every_problem_with_entry_keys() {
        let text = "type = \"disk\"\nname = \"bad name\"\ninterval = \"0s\"\npaths = [\"rel\"]\n";
        let problems = parse_module_toml(text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"interval"), "{problems:?}");
        assert!(keys.contains(&"paths[0]"), "{problems:?}");
        assert!(keys.contains(&"name"), "{problems:?}");
    }

    #[test]
    fn one_type_error_does_not_hide_the_others() {
        let text = "type = \"backup\"\ninterval = 5\nbogus = true\n\
                    [[jobs]]\nname = \"app\"\nsources = \"/srv\"\ndestination = \"/b\"\n\
                    keep_days = \"7\"\n";
        let problems = parse_module_toml(text).expect_err("invalid");
        let mut keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["bogus", "interval", "jobs[0].keep_days", "jobs[0].sources"],
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_keys_and_types_are_reported() {
        let problems = parse_module_toml("type = \"disk\"\nbogus = 1\n").expect_err("invalid");
        assert_eq!(problems[0].0, "bogus", "{problems:?}");
        let problems = parse_module_toml("type = \"nope\"\n").expect_err("invalid");
        assert_eq!(problems[0].0, "type", "{problems:?}");
    }
}
