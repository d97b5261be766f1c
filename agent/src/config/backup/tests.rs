//! `[[modules]] type = "backup"` configs: defaults, every problem of a job, its pre-backup
//! step and its remote copy reported at once, unknown keys refused.

use super::super::{parse_str, ModuleConfig};

const HEAD: &str = "host = \"db-01\"\n[[modules]]\ntype = \"backup\"\n";

#[test]
fn a_job_parses_with_defaults() {
    let text = format!(
        "{HEAD}[[modules.jobs]]\nname = \"pg\"\nsources = [\"/var/lib/pg\"]\ndestination = \"/var/backups/pg\"\n"
    );
    let cfg = parse_str(&text).expect("valid");
    let ModuleConfig::Backup(b) = &cfg.modules[0] else {
        panic!("backup")
    };
    assert_eq!(cfg.modules[0].name(), "backup");
    assert_eq!(b.interval, super::default_backup_interval());
    let j = &b.jobs[0];
    assert_eq!(j.compression, super::Compression::Zstd);
    assert_eq!((j.keep_days, j.keep_count), (7, 7));
    assert_eq!(j.schedule, super::default_schedule());
    assert_eq!(j.progress_every_files, 1000);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = format!(
        "{HEAD}[[modules.jobs]]\nname = \"bad name\"\nsources = [\"rel\", \"/a/x\", \"/b/x\"]\ndestination = \"/a/x/out\"\nschedule = \"0s\"\nkeep_count = 0\ncompression = \"zstd\"\n[[modules.jobs]]\nname = \"ok\"\nsources = []\ndestination = \"dest\"\nprogress_every_files = 0\n[[modules.jobs]]\nname = \"ok\"\nsources = [\"/c\"]\ndestination = \"/d\"\n"
    );
    let problems = parse_str(&text).expect_err("invalid");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "modules[0].jobs[0].name",
        "modules[0].jobs[0].sources[0]",
        "modules[0].jobs[0].sources[2]",
        "modules[0].jobs[0].destination",
        "modules[0].jobs[0].schedule",
        "modules[0].jobs[0].keep_count",
        "modules[0].jobs[1].sources",
        "modules[0].jobs[1].destination",
        "modules[0].jobs[1].progress_every_files",
        "modules[0].jobs[2].name",
    ] {
        assert!(keys.contains(&k), "{k} missing from {problems:#?}");
    }
    // Lines point into the file.
    assert!(problems.iter().all(|p| p.line.is_some()), "{problems:#?}");
}

#[test]
fn a_pre_backup_step_parses_with_its_default_timeout() {
    let text = format!(
        "{HEAD}[[modules.jobs]]\nname = \"pg\"\nsources = [\"/etc/pg\"]\ndestination = \"/var/backups/pg\"\n\
         [modules.jobs.pre_backup]\ncommand = [\"/usr/bin/pg_dump\", \"-F\", \"c\", \"-f\", \"{{output}}\"]\noutput = \"app.dump\"\n"
    );
    let cfg = parse_str(&text).expect("valid");
    let ModuleConfig::Backup(b) = &cfg.modules[0] else {
        panic!("backup")
    };
    let pre = b.jobs[0].pre_backup.as_ref().expect("pre_backup");
    assert_eq!(pre.command[4], super::PRE_BACKUP_OUTPUT_PLACEHOLDER);
    assert_eq!(pre.output, "app.dump");
    assert_eq!(pre.timeout, super::default_pre_backup_timeout());
}

#[test]
fn every_pre_backup_problem_is_reported() {
    let job = |name: &str, pre: &str| {
        format!(
            "[[modules.jobs]]\nname = \"{name}\"\nsources = [\"/srv/app.dump\"]\ndestination = \"/d\"\n[modules.jobs.pre_backup]\n{pre}\n"
        )
    };
    let text = format!(
        "{HEAD}{}{}{}{}",
        job(
            "a",
            "command = [\"pg_dump\"]\noutput = \"a/b\"\ntimeout = \"0s\""
        ),
        job("b", "command = []\noutput = \"app.dump\""),
        job("c", "command = [\"/bin/true\"]\noutput = \"..\""),
        job(
            "d",
            "command = [\"/bin/true\"]\noutput = \"o\"\npass_env = [\"PGHOST\", \"\", \"A=B\", \"OPSFLEET_BACKUP_OUTPUT\"]"
        ),
    );
    let problems = parse_str(&text).expect_err("invalid");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    let want = [
        "modules[0].jobs[0].pre_backup.command[0]",
        "modules[0].jobs[0].pre_backup.output",
        "modules[0].jobs[0].pre_backup.timeout",
        "modules[0].jobs[1].pre_backup.command",
        "modules[0].jobs[1].pre_backup.output",
        "modules[0].jobs[2].pre_backup.output",
        "modules[0].jobs[3].pre_backup.pass_env[1]",
        "modules[0].jobs[3].pre_backup.pass_env[2]",
        "modules[0].jobs[3].pre_backup.pass_env[3]",
    ];
    assert_eq!(keys.len(), want.len(), "{problems:#?}");
    for k in want {
        assert!(keys.contains(&k), "{k} missing from {problems:#?}");
    }
    let reason = |k: &str| {
        problems
            .iter()
            .find(|p| p.key == k)
            .map(|p| p.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason(want[0]).contains("absolute"), "{problems:#?}");
    assert!(reason(want[4]).contains("sources[0]"), "{problems:#?}");
    assert!(
        reason(want[8]).contains("set by the agent"),
        "{problems:#?}"
    );
    // Unknown keys in the table are refused too.
    let text = format!(
        "{HEAD}{}",
        job(
            "a",
            "command = [\"/bin/true\"]\noutput = \"o\"\nshell = true"
        )
    );
    let problems = parse_str(&text).expect_err("invalid");
    assert!(problems[0].key.ends_with("shell"), "{problems:#?}");
}

#[test]
fn every_remote_problem_is_reported() {
    let job = |name: &str, remote: &str| {
        format!(
            "[[modules.jobs]]\nname = \"{name}\"\nsources = [\"/srv/data\"]\ndestination = \"/var/backups/app\"\n[modules.jobs.remote]\ntype = \"path\"\n{remote}\n"
        )
    };
    let text = format!(
        "{HEAD}{}{}{}{}",
        job("a", "path = \"nas\"\nreconcile_every = \"0s\""),
        job("b", "path = \"/var/backups/app/copy\""),
        job("c", "path = \"/srv/data/copy\""),
        job("ok", "path = \"/mnt/nas/app\""),
    );
    let problems = parse_str(&text).expect_err("invalid");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    let want = [
        "modules[0].jobs[0].remote.path",
        "modules[0].jobs[0].remote.reconcile_every",
        "modules[0].jobs[1].remote.path",
        "modules[0].jobs[2].remote.path",
    ];
    assert_eq!(keys.len(), want.len(), "{problems:#?}");
    for k in want {
        assert!(keys.contains(&k), "{k} missing from {problems:#?}");
    }
    // An unknown kind or key is refused by the parser.
    let text = format!("{HEAD}{}", job("a", "path = \"/mnt/x\"\nbucket = \"b\""));
    let problems = parse_str(&text).expect_err("invalid");
    assert!(problems[0].key.ends_with("bucket"), "{problems:#?}");
    let text =
        format!("{HEAD}{}", job("a", "path = \"/mnt/x\"")).replace("\"path\"\n", "\"ftp\"\n");
    let problems = parse_str(&text).expect_err("invalid");
    assert!(
        problems
            .iter()
            .any(|p| p.key.ends_with("remote.type") && p.reason.contains("ftp")),
        "{problems:#?}"
    );
}

#[test]
fn unknown_keys_and_compressions_are_refused() {
    let text = format!(
        "{HEAD}[[modules.jobs]]\nname = \"a\"\nsources = [\"/s\"]\ndestination = \"/d\"\ncompression = \"xz\"\n"
    );
    let problems = parse_str(&text).expect_err("invalid");
    // The toml error path names the field (without the array index).
    assert!(
        problems[0].key.starts_with("modules[0].jobs"),
        "{problems:#?}"
    );
    assert!(problems[0].key.ends_with("compression"), "{problems:#?}");
    assert!(problems[0].reason.contains("xz"), "{problems:#?}");
    let text = format!("{HEAD}jobs = []\nkeep = 1\n");
    let problems = parse_str(&text).expect_err("invalid");
    assert_eq!(problems[0].key, "modules[0].keep", "{problems:#?}");
}
