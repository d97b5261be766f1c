//! Every command the docs tell an operator to type resolves: the shell blocks (```sh) of
//! README.md, docs/*.md and docs/runbooks/*.md, and inline code spans that start with one of
//! our commands. Each is split into simple commands (`&&`, `||`, `;`, `|`, line continuations,
//! comments, `sudo`, `VAR=value` prefixes); for ours the test checks against the real thing:
//! - `opsctl`, `ops-agent`, `ops-coordinator`: every subcommand and every `--flag` exists in
//!   that (sub)command's `--help` of the built binary; `--check-config` on a config file of
//!   this repository is run;
//! - `scripts/*.sh`, `deploy/**/*.sh`: the script exists and handles every `--flag` given.
//!
//! Other programs (docker-compose, kubectl, systemctl, openssl, ...) are the host's: listed,
//! not checked. The test prints what it checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use opsfleet_tests::bins;
use opsfleet_tests::runbook::simple_commands;
use opsfleet_tests::secure::repo_root;

/// One command as the docs have it, and where.
#[derive(Debug, Clone)]
struct DocCommand {
    file: String,
    line: usize,
    words: Vec<String>,
}

/// Shell blocks and inline spans of one Markdown file.
fn commands_in(file: &Path, rel: &str) -> Result<Vec<DocCommand>> {
    let text = std::fs::read_to_string(file)?;
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut in_other = false;
    let mut pending = String::new();
    let mut pending_line = 0;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(lang) = trimmed.strip_prefix("```") {
            if in_sh || in_other {
                in_sh = false;
                in_other = false;
            } else if matches!(lang.trim(), "sh" | "bash" | "shell" | "console") {
                in_sh = true;
            } else {
                in_other = true;
            }
            continue;
        }
        if in_other {
            continue;
        }
        if in_sh {
            if pending.is_empty() {
                pending_line = i + 1;
            }
            let body = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
            if let Some(cont) = body.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(body);
            for words in simple_commands(&std::mem::take(&mut pending)) {
                out.push(DocCommand {
                    file: rel.to_owned(),
                    line: pending_line,
                    words,
                });
            }
            continue;
        }
        // Inline spans that are one of our commands, written out in full.
        for (n, span) in line.split('`').enumerate() {
            let ours = ["opsctl ", "ops-agent ", "ops-coordinator ", "scripts/"]
                .iter()
                .any(|p| span.starts_with(p));
            let concrete = !span.contains(['<', '[', '|', '…', '{', '*']) && !span.contains("...");
            if n % 2 == 1 && ours && concrete {
                for words in simple_commands(span) {
                    out.push(DocCommand {
                        file: rel.to_owned(),
                        line: i + 1,
                        words,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// What `--help` of one (sub)command offers.
#[derive(Debug, Default)]
struct Help {
    subcommands: BTreeSet<String>,
    /// Flag → whether it takes a value.
    flags: BTreeMap<String, bool>,
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut in_commands = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if t.is_empty() {
                in_commands = false;
            } else if line.starts_with("  ") {
                if let Some(name) = t.split_whitespace().next() {
                    help.subcommands.insert(name.to_owned());
                }
            }
            continue;
        }
        let flag_part = t.strip_prefix("-h, ").unwrap_or(t);
        let flag_part = match flag_part.split_once(", --") {
            Some((short, long)) if short.len() == 2 && short.starts_with('-') => {
                format!("--{long}")
            }
            _ => flag_part.to_owned(),
        };
        if let Some(rest) = flag_part.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let takes_value = rest[name.len()..].trim_start().starts_with('<');
            help.flags.insert(format!("--{name}"), takes_value);
        }
    }
    help
}

struct Checker {
    root: PathBuf,
    helps: BTreeMap<Vec<String>, Help>,
    checked: Vec<String>,
    external: BTreeSet<String>,
}

impl Checker {
    fn help(&mut self, path: &[String]) -> Result<&Help> {
        if !self.helps.contains_key(path) {
            let bin = bins::bin(&path[0])?;
            let out = Command::new(&bin)
                .args(&path[1..])
                .arg("--help")
                .output()
                .with_context(|| format!("cannot run {}", bin.display()))?;
            if !out.status.success() {
                bail!(
                    "`{} --help` fails: {}",
                    path.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let help = parse_help(&String::from_utf8_lossy(&out.stdout));
            self.helps.insert(path.to_vec(), help);
        }
        self.helps.get(path).context("help just inserted")
    }

    /// One of our binaries: subcommands and flags against its `--help`.
    fn binary(&mut self, words: &[String]) -> Result<()> {
        let mut path = vec![words[0].clone()];
        let mut i = 1;
        let mut config: Option<String> = None;
        while i < words.len() {
            let w = &words[i];
            let help = self.help(&path)?;
            if let Some(flag) = w
                .strip_prefix("--")
                .map(|_| w.split('=').next().unwrap_or(w))
            {
                let Some(&takes_value) = help.flags.get(flag) else {
                    bail!("`{}` has no flag {flag}", path.join(" "));
                };
                if takes_value && !w.contains('=') {
                    if flag == "--config" {
                        config = words.get(i + 1).cloned();
                    }
                    i += 1;
                }
            } else if w.starts_with('-') && w.len() == 2 {
                // Short flags (-o json): take a value when the long form does.
                if w == "-o" {
                    i += 1;
                }
            } else if help.subcommands.contains(w.as_str()) {
                path.push(w.clone());
            } else if !help.subcommands.is_empty() && path.len() == 1 {
                bail!("`{}` has no subcommand {w}", path.join(" "));
            }
            i += 1;
        }
        // A config of this repository checked as the doc says.
        if words.iter().any(|w| w == "--check-config") {
            if let Some(cfg) = config.filter(|c| self.root.join(c).is_file()) {
                let out = Command::new(bins::bin(&words[0])?)
                    .current_dir(&self.root)
                    .args(["--config", &cfg, "--check-config"])
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "`{} --config {cfg} --check-config` fails: {}",
                        words[0],
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        Ok(())
    }

    /// One of our scripts: it exists and handles every `--flag` given.
    fn script(&mut self, script: &str, args: &[String]) -> Result<()> {
        let path = self.root.join(script);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("{script} does not exist"))?;
        // A script that hands its arguments to one of our binaries: that binary's flags.
        for bin in ["opsfleet-bench"] {
            if text.contains(&format!("{bin}\" \"$@\"")) {
                let mut words = vec![bin.to_owned()];
                words.extend(args.iter().cloned());
                return self.binary(&words);
            }
        }
        for a in args.iter().filter(|a| a.starts_with("--")) {
            let flag = a.split('=').next().unwrap_or(a);
            if !text.contains(&format!("{flag})")) && !text.contains(&format!("{flag}|")) {
                bail!("{script} does not handle {flag}");
            }
        }
        Ok(())
    }

    fn check(&mut self, cmd: &DocCommand) -> Result<()> {
        let w = &cmd.words;
        let (first, rest) = (w[0].as_str(), &w[1..]);
        match first {
            // The example consumer of docs/events-api.md too.
            "opsctl" | "ops-agent" | "ops-coordinator" | "events-consumer" => self.binary(w)?,
            "bash" | "sh" if rest.first().is_some_and(|s| s.ends_with(".sh")) => {
                self.script(&rest[0], &rest[1..])?
            }
            s if s.ends_with(".sh") && (s.starts_with("scripts/") || s.starts_with("deploy/")) => {
                self.script(s, rest)?
            }
            // The package's name for scripts/install-host.sh (scripts/build-deb.sh).
            "opsfleet-join" => self.script("scripts/install-host.sh", rest)?,
            other => {
                self.external.insert(other.to_owned());
                return Ok(());
            }
        }
        self.checked
            .push(format!("{}:{}: {}", cmd.file, cmd.line, w.join(" ")));
        Ok(())
    }
}

#[test]
fn every_command_in_the_docs_resolves() -> Result<()> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "docs/runbooks"] {
        let mut md: Vec<PathBuf> = std::fs::read_dir(root.join(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        md.sort();
        files.extend(md);
    }
    let mut commands = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        commands.extend(commands_in(f, &rel)?);
    }
    let mut checker = Checker {
        root: root.clone(),
        helps: BTreeMap::new(),
        checked: Vec::new(),
        external: BTreeSet::new(),
    };
    let mut problems = Vec::new();
    for cmd in &commands {
        if let Err(e) = checker.check(cmd) {
            problems.push(format!(
                "{}:{}: `{}`: {e}",
                cmd.file,
                cmd.line,
                cmd.words.join(" ")
            ));
        }
    }
    eprintln!(
        "docs_commands: {} commands checked in {} files:\n  {}",
        checker.checked.len(),
        files.len(),
        checker.checked.join("\n  ")
    );
    eprintln!(
        "docs_commands: other programs, not checked: {}",
        checker
            .external
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !problems.is_empty() {
        bail!(
            "{} commands in the docs do not resolve:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    assert!(checker.checked.len() > 20, "too few commands found");
    Ok(())
}

#[test]
fn the_splitter_handles_what_the_docs_use() {
    let cmds = simple_commands(
        "sudo FOO=1 opsctl events --kind 'backup_*' --since 26h && echo \"a b\" | grep x # c",
    );
    assert_eq!(
        cmds,
        vec![
            vec!["opsctl", "events", "--kind", "backup_*", "--since", "26h"],
            vec!["echo", "a b"],
            vec!["grep", "x"],
        ]
    );
}

/// Steps 2 and 3 of docs/runbooks/backup-restore-drill.md, run as written against a real
/// archive: the runbook's host paths (the agent config, the job's source, the scratch target)
/// mapped into a temp dir, its `ops-agent ... restore` run, then its `diff -r` must find the
/// restored tree equal to the source.
#[test]
fn the_backup_restore_drill_runs_as_written() -> Result<()> {
    let root = repo_root();
    let rel = "docs/runbooks/backup-restore-drill.md";
    let commands = commands_in(&root.join(rel), rel)?;
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("var/lib/db-snapshots");
    std::fs::create_dir_all(src.join("2026-12-01"))?;
    std::fs::write(src.join("2026-12-01/db.dump"), vec![7u8; 10_000])?;
    std::fs::write(src.join("README"), b"snapshots of db-01\n")?;
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "host = \"db-01\"\ndata_dir = \"{}\"\n[[modules]]\ntype = \"backup\"\n\
             name = \"backup\"\n[[modules.jobs]]\nname = \"nightly-db\"\nsources = [\"{}\"]\n\
             destination = \"{}\"\n",
            tmp.path().join("data").display(),
            src.display(),
            tmp.path().join("backups").display()
        ),
    )?;
    let loaded = opsfleet_agent::config::load(&cfg).context("drill config")?;
    let job = opsfleet_agent::modules::backup::find_job(&loaded.config, "nightly-db", None)
        .map_err(anyhow::Error::msg)?;
    let cancel = std::sync::atomic::AtomicBool::new(false);
    opsfleet_agent::modules::backup::run_job(
        &job,
        std::time::SystemTime::now(),
        &mut |_| {},
        &cancel,
    )
    .context("backup for the drill")?;

    let map = |w: &str| -> String {
        let target = tmp.path().join("tmp/restore-drill");
        let pairs = [
            ("/etc/opsfleet/agent.toml", cfg.display().to_string()),
            ("/var/lib/db-snapshots", src.display().to_string()),
            ("/tmp/restore-drill", target.display().to_string()),
        ];
        pairs
            .iter()
            .find_map(|(from, to)| w.strip_prefix(from).map(|rest| format!("{to}{rest}")))
            .unwrap_or_else(|| w.to_owned())
    };
    let find = |first: &str, has: &str| {
        commands
            .iter()
            .find(|c| {
                c.words.first().is_some_and(|w| w == first) && c.words.iter().any(|w| w == has)
            })
            .map(|c| c.words.iter().map(|w| map(w)).collect::<Vec<_>>())
            .with_context(|| format!("no `{first} ... {has}` command in {rel}"))
    };
    let restore = find("ops-agent", "restore")?;
    let out = Command::new(bins::bin(bins::AGENT)?)
        .args(&restore[1..])
        .env("OPS_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{rel}: `{}` failed: {}",
        restore.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let diff = find("diff", "-r")?;
    let out = Command::new("diff").args(&diff[1..]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{rel} step 3: `{}` differs:\n{}",
        diff.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}
