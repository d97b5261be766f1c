//! `ops-agent --config F restore ...` as a real process: a verified restore prints its report,
//! a corrupt archive exits 1 naming the corrupt file with the target untouched, and the agent's
//! sled is never opened (the data_dir stays absent).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use opsfleet_agent::config;
use opsfleet_agent::modules::backup;

fn agent(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ops-agent"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("OPS_LOG", "warn")
        .output()
        .expect("run ops-agent")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn restore_subcommand_verifies_and_reports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let src = root.join("srv/www");
    fs::create_dir_all(src.join("static")).expect("mkdir");
    fs::write(src.join("index.html"), b"<h1>web-01</h1>\n").expect("write");
    fs::write(src.join("static/app.js"), vec![b'j'; 70_000]).expect("write");
    let cfg_path = root.join("agent.toml");
    fs::write(
        &cfg_path,
        format!(
            r#"host = "web-01"
data_dir = "{data}"
[[modules]]
type = "backup"
name = "nightly"
[[modules.jobs]]
name = "www"
sources = ["{src}"]
destination = "{dest}"
compression = "gzip"
"#,
            data = root.join("data").display(),
            src = src.display(),
            dest = root.join("backups").display(),
        ),
    )
    .expect("write config");
    let loaded = config::load(&cfg_path).expect("config");
    let job = backup::find_job(&loaded.config, "www", None).expect("job");
    let cancel = AtomicBool::new(false);
    let written = backup::run_job(&job, SystemTime::now(), &mut |_| {}, &cancel)
        .expect("backup")
        .written;

    // Happy path, JSON output.
    let target = root.join("restore-1");
    let out = agent(
        &cfg_path,
        &[
            "restore",
            "--job",
            "www",
            "--target",
            target.to_str().expect("utf-8"),
            "--output",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["files"], 2);
    assert_eq!(report["archive"], written.manifest.archive.as_str());
    assert_eq!(
        fs::read(target.join("www/index.html")).expect("restored"),
        b"<h1>web-01</h1>\n"
    );
    assert!(
        !root.join("data").exists(),
        "restore must not open the agent's sled"
    );

    // Unknown job: clear error, exit 1.
    let out = agent(&cfg_path, &["restore", "--job", "nope", "--target", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backup job \"nope\""));

    // Corrupt one byte: exit 1, the damaged file named, target untouched.
    let mut bytes = fs::read(&written.archive_path).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    fs::write(&written.archive_path, &bytes).expect("write");
    let target = root.join("restore-2");
    let out = agent(
        &cfg_path,
        &[
            "restore",
            "--job",
            "www",
            "--archive",
            &written.manifest.archive,
            "--target",
            target.to_str().expect("utf-8"),
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let failure = json(&out);
    assert_eq!(failure["ok"], false);
    let corrupt = failure["corrupt_files"].as_array().expect("list");
    assert!(!corrupt.is_empty(), "{failure}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert!(!target.exists());
    let mut names: Vec<String> = fs::read_dir(root)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["agent.toml", "backups", "restore-1", "srv"]);
}
