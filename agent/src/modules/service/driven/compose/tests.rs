//! What the compose manager runs, and its reading of `ps` and `docker inspect` output.

use std::path::PathBuf;
use std::time::Duration;

use opsfleet_proto::pb::ServiceRunState;

use super::super::runner::fake::Recorder;
use super::super::runner::Output;
use super::*;

fn section(command: Option<&[&str]>) -> ComposeSection {
    ComposeSection {
        project_dir: PathBuf::from("/srv/stack"),
        file: Some("stack.yaml".into()),
        project: Some("shop".to_owned()),
        service: "api".to_owned(),
        command: command.map(argv),
    }
}

fn driver(command: Option<&[&str]>) -> (Compose, Recorder) {
    let rec = Recorder::default();
    (Compose::new(&section(command), Box::new(rec.clone())), rec)
}

const BASE: &str = "docker compose -p shop -f /srv/stack/stack.yaml";

fn inspect_json(id: &str, status: &str, exit_code: i64, image: &str) -> String {
    format!(
        r#"[{{"Id": "{id}", "RestartCount": 2,
            "State": {{"Status": "{status}", "Running": {running}, "Pid": 777, "ExitCode": {exit_code},
                      "Error": "", "StartedAt": "2026-12-05T20:28:41.461871517Z",
                      "FinishedAt": "0001-01-01T00:00:00Z"}},
            "Config": {{"Image": "{image}", "Env": ["A=b"]}}, "Name": "/shop_api_1"}}]"#,
        running = status == "running"
    )
}

#[test]
fn each_operation_runs_its_compose_command() {
    let (mut d, rec) = driver(None);
    rec.answer(&["compose", "version"], Output::ok("2.27.0\n"));
    d.start().expect("start");
    d.stop(Duration::from_millis(15_500)).expect("stop");
    d.restart(Duration::from_millis(200)).expect("restart");
    d.reload().expect("reload");
    assert_eq!(
        rec.commands(),
        [
            "docker compose version --short".to_owned(),
            format!("{BASE} up -d --no-deps api"),
            format!("{BASE} stop -t 15 api"),
            format!("{BASE} restart -t 1 api"),
            format!("{BASE} kill -s SIGHUP api"),
        ]
    );
}

#[test]
fn without_docker_compose_v2_docker_compose_v1_is_used() {
    let (mut d, rec) = driver(None);
    rec.answer(
        &["docker", "compose"],
        Output::failed(125, "unknown command"),
    );
    rec.answer(&["docker-compose", "version"], Output::ok("1.29.2\n"));
    let id = "c15a13156c5dd487d2e16f78ed0149aaeb35a266bc74dce3078c479e7568ab0a";
    rec.answer(&["ps", "--all", "-q"], Output::ok(&format!("{id}\n")));
    rec.answer(
        &["inspect"],
        Output::ok(&inspect_json(id, "running", 0, "shop/api:1.4")),
    );
    let o = d.observe().expect("observed");
    assert_eq!(o.state, ServiceRunState::Running);
    assert_eq!(
        (o.instance.as_str(), o.version.as_str()),
        ("c15a13156c5d", "1.4")
    );
    assert_eq!((o.pid, o.restarts), (777, 2));
    assert!(o.since_unix_ms > 1_700_000_000_000, "{}", o.since_unix_ms);
    let v1 = "docker-compose -p shop -f /srv/stack/stack.yaml";
    assert_eq!(
        rec.commands(),
        [
            "docker compose version --short".to_owned(),
            "docker-compose version --short".to_owned(),
            format!("{v1} ps --all -q api"),
            format!("docker inspect {id}"),
        ]
    );
    // The container found is inspected directly until an operation or its disappearance.
    d.observe().expect("observed");
    let last = rec.commands().last().cloned();
    assert_eq!(last.as_deref(), Some("docker inspect c15a13156c5d"));
    assert_eq!(rec.commands().len(), 5);
}

#[test]
fn a_configured_command_is_used_and_v2_ps_json_read() {
    let (mut d, rec) = driver(Some(&["/opt/compose", "--ansi", "never"]));
    rec.answer(&["version"], Output::ok("v2.30.1\n"));
    rec.answer(
        &["ps"],
        Output::ok("{\"ID\":\"abc123\",\"State\":\"exited\"}\n"),
    );
    rec.answer(
        &["inspect"],
        Output::ok(&inspect_json("abc123", "exited", 137, "api")),
    );
    let o = d.observe().expect("observed");
    assert_eq!(o.state, ServiceRunState::Failed);
    assert_eq!(o.detail, "exited with status 137");
    assert_eq!(
        (o.pid, o.version.as_str(), o.since_unix_ms),
        (0, "latest", 0)
    );
    assert_eq!(
        rec.commands()[1],
        "/opt/compose --ansi never -p shop -f /srv/stack/stack.yaml ps --all --format json api"
    );
}

#[test]
fn no_container_is_stopped_and_a_failing_ps_is_an_error() {
    let (mut d, rec) = driver(None);
    rec.answer(&["version"], Output::ok("2.27.0"));
    rec.answer(&["ps"], Output::ok("[]"));
    let o = d.observe().expect("observed");
    assert_eq!(
        (o.state, o.detail.as_str()),
        (ServiceRunState::Stopped, "no container")
    );
    rec.answer(
        &["ps"],
        Output::failed(1, "no such file: /srv/stack/stack.yaml"),
    );
    let err = d.observe().expect_err("ps failed").to_string();
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn no_compose_program_is_an_error_naming_both() {
    let (mut d, rec) = driver(None);
    rec.answer(&["version"], Output::failed(127, "not found"));
    let err = d.start().expect_err("no compose").to_string();
    assert!(err.contains("docker-compose version"), "{err}");
}

#[test]
fn ps_json_comes_as_an_array_or_as_lines() {
    let array = r#"[{"ID":"a1","Name":"x","State":"running"},{"ID":"b2","State":"exited"}]"#;
    assert_eq!(
        parse_ps_json(array),
        Some(vec!["a1".to_owned(), "b2".to_owned()])
    );
    let lines = "{\"ID\":\"a1\",\"State\":\"running\"}\n{\"ID\":\"b2\",\"State\":\"exited\"}\n";
    assert_eq!(
        parse_ps_json(lines),
        Some(vec!["a1".to_owned(), "b2".to_owned()])
    );
    assert_eq!(parse_ps_json(" \n"), Some(Vec::new()));
    assert_eq!(parse_ps_json("[]"), Some(Vec::new()));
    assert_eq!(
        parse_ps_json("List containers.\n\nUsage: ps [options]"),
        None
    );
}

#[test]
fn container_states_map_to_service_states() {
    for (status, code, want) in [
        ("running", 0, ServiceRunState::Running),
        ("restarting", 1, ServiceRunState::Starting),
        ("created", 0, ServiceRunState::Stopped),
        ("exited", 0, ServiceRunState::Stopped),
        ("exited", 143, ServiceRunState::Failed),
        ("dead", 0, ServiceRunState::Failed),
        ("removing", 0, ServiceRunState::Stopping),
    ] {
        let found: Vec<Inspect> =
            serde_json::from_str(&inspect_json("abc", status, code, "x:1")).expect("json");
        assert_eq!(pick(&found).map(|o| o.state), Some(want), "{status} {code}");
    }
}

#[test]
fn a_running_container_is_picked_over_stopped_ones() {
    let a = inspect_json("aaa", "exited", 1, "x:1");
    let b = inspect_json("bbb", "running", 0, "x:2");
    let text = format!("[{},{}]", &a[1..a.len() - 1], &b[1..b.len() - 1]);
    let found: Vec<Inspect> = serde_json::from_str(&text).expect("json");
    let o = pick(&found).expect("picked");
    assert_eq!((o.instance.as_str(), o.version.as_str()), ("bbb", "2"));
}

#[test]
fn the_image_tag_is_the_version() {
    for (image, tag) in [
        ("nginx:1.27", "1.27"),
        ("registry.local:5000/shop/api:2.3.1", "2.3.1"),
        ("registry.local:5000/shop/api", "latest"),
        ("api@sha256:abcd", "sha256:abcd"),
        ("api:1.2@sha256:abcd", "1.2"),
    ] {
        assert_eq!(image_tag(image), tag, "{image}");
    }
}

#[test]
fn a_deploy_override_is_an_extra_file_on_every_command_once_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = section(None);
    s.project_dir = tmp.path().to_owned();
    let file = override_file(&s);
    let rec = Recorder::default();
    let mut d = Compose::new(&s, Box::new(rec.clone())).with_override(file.clone());
    rec.answer(&["compose", "version"], Output::ok("2.27.0\n"));
    let base = format!(
        "docker compose -p shop -f {}/stack.yaml",
        tmp.path().display()
    );
    d.restart(Duration::from_secs(1)).expect("restart");
    // The deploy writes the tag; its activation is `up -d` with the override.
    crate::modules::service::deploy::compose::write_override(&s, "registry.local/shop", "2.1")
        .expect("override");
    d.start().expect("up");
    d.stop(Duration::from_secs(1)).expect("stop");
    let with = format!("{base} -f {}", file.display());
    assert_eq!(
        rec.commands(),
        [
            "docker compose version --short".to_owned(),
            format!("{base} restart -t 1 api"),
            format!("{with} up -d --no-deps api"),
            format!("{with} stop -t 1 api"),
        ]
    );
}
