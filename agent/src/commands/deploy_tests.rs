//! Unit tests of `service_deploy` on the agent: the policy (at acceptance and again when it
//! runs), payload checks, reuse and refusal of kept releases, the activation asked of the
//! service module, a failed activation leaving the new version current, and compose's image tag.

use std::path::Path;

use opsfleet_proto::pb;
use opsfleet_proto::pb::command::Action;

use super::*;
use crate::commands::decide::{check_policy, validate, Catalog};
use crate::config::{fs_resolve, parse_str};
use crate::modules::service::deploy::current_version;
use crate::modules::service::deploy::unpack::install;
use crate::modules::OnDemand;

fn config(dir: &Path) -> Arc<AgentConfig> {
    let d = dir.display();
    let toml = format!(
        r#"host = "web-01"
[[modules]]
type = "service"
name = "app"
argv = ["{d}/current/app"]
remote = ["deploy"]
[modules.deploy]
dir = "{d}"

[[modules]]
type = "service"
name = "locked"
argv = ["sleep", "1"]
remote = ["restart"]

[[modules]]
type = "service"
name = "web"
manager = "compose"
remote = ["deploy"]
compose = {{ project_dir = "{d}", service = "web" }}
[modules.deploy]
image = "registry.local/web"
"#
    );
    Arc::new(parse_str(&toml).expect("valid config"))
}

fn deploy(service: &str, version: &str, artifact: &str, sha: &str) -> pb::ServiceDeploy {
    pb::ServiceDeploy {
        service: service.to_owned(),
        version: version.to_owned(),
        artifact: artifact.to_owned(),
        sha256: sha.to_owned(),
        ready_samples: 0,
        rollout_id: "r-1".to_owned(),
    }
}

/// A job on `dir` whose activation is answered `answer`; what it asked of the module.
fn job(
    dir: &Path,
    d: pb::ServiceDeploy,
    answer: std::result::Result<String, String>,
) -> (
    Job,
    tokio::sync::mpsc::UnboundedReceiver<(String, OnDemand)>,
) {
    let config = config(dir);
    let (control, asked) = ControlHandle::answering(answer);
    let job = Job {
        id: "c-1".to_owned(),
        d,
        policy: HostPolicy::from_config(&config),
        config,
        control,
    };
    (job, asked)
}

/// Release `version` kept under `dir`, from an artifact with sha256 `sha`.
fn kept(dir: &Path, version: &str, sha: &str) {
    let file = dir.join(format!("art-{version}"));
    std::fs::write(&file, version).expect("artifact");
    install(&Releases::new(dir), version, &file, "app", sha, u64::MAX).expect("installed");
}

#[test]
fn deploy_is_refused_unless_the_hosts_file_lists_it_in_remote() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let policy = HostPolicy::from_config(&cfg);
    let action = |s: &str| Action::ServiceDeploy(deploy(s, "1.0", "", ""));
    let err = check_policy(Some(&action("locked")), &policy, &fs_resolve).expect_err("refused");
    assert!(
        err.starts_with("refused by service.remote") && err.contains("deploy"),
        "{err}"
    );
    let err = check_policy(Some(&action("nope")), &policy, &fs_resolve).expect_err("unknown");
    assert!(err.starts_with("refused by service.remote"), "{err}");
    assert!(check_policy(Some(&action("app")), &policy, &fs_resolve).is_ok());
}

#[test]
fn a_deploy_names_a_safe_version_and_an_artifact_comes_with_its_sha256() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::from_config(&config(tmp.path()));
    let check = |d: pb::ServiceDeploy| validate(Some(&Action::ServiceDeploy(d)), &catalog);
    assert!(check(deploy("app", "1.0", "", "")).is_ok());
    for bad in ["../x", "a/b", ".."] {
        let e = check(deploy("app", bad, "", "")).expect_err(bad);
        assert!(e.contains("refused"), "{e}");
    }
    let e = check(deploy("app", "1.0", "https://x/a.tgz", "")).expect_err("no sha");
    assert!(e.contains("without its sha256"), "{e}");
}

#[tokio::test]
async fn the_run_checks_the_policy_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (job, _) = job(
        tmp.path(),
        deploy("locked", "1.0", "", ""),
        Ok(String::new()),
    );
    let e = job.deploy().await.err().expect("refused");
    assert!(matches!(e, DeployError::Policy { .. }), "{e}");
}

#[tokio::test]
async fn ready_samples_without_a_probe_are_refused_before_anything_changes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    kept(tmp.path(), "1.0", "x");
    let mut d = deploy("app", "1.0", "", "");
    d.ready_samples = 3;
    let (j, _) = job(tmp.path(), d, Ok(String::new()));
    let e = j.deploy().await.err().expect("refused");
    assert!(matches!(e, DeployError::NoProbe { .. }), "{e}");
    assert_eq!(current_version(tmp.path()), None, "not switched");
}

#[tokio::test]
async fn a_kept_release_with_the_same_sha_is_reused_and_activated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sha = "ab".repeat(32);
    kept(tmp.path(), "1.0", &sha);
    kept(tmp.path(), "2.0", &sha);
    Releases::new(tmp.path()).switch("1.0").expect("switch");
    // The artifact does not exist: reusing must not fetch it.
    let d = deploy(
        "app",
        "2.0",
        "/nonexistent/app-2.0.tgz",
        &sha.to_uppercase(),
    );
    let (job, mut asked) = job(tmp.path(), d, Ok("running (pid 9); ready".to_owned()));
    let run = job.run().await;
    assert_eq!(
        run.result,
        Ok("deployed 2.0 (was 1.0): running (pid 9); ready".to_owned())
    );
    let Some(pb::event::Body::ServiceDeployed(ev)) = run.bodies.first() else {
        panic!("{:?}", run.bodies);
    };
    assert_eq!(
        (ev.version.as_str(), ev.previous.as_str(), ev.fetched),
        ("2.0", "1.0", false)
    );
    assert_eq!(
        (ev.command_id.as_str(), ev.rollout_id.as_str()),
        ("c-1", "r-1")
    );
    assert!(ev.location.ends_with("releases/2.0"), "{}", ev.location);
    assert_eq!(current_version(tmp.path()).as_deref(), Some("2.0"));
    let (module, what) = asked.recv().await.expect("asked");
    assert_eq!(module, "app");
    assert_eq!(
        what,
        OnDemand::Activate {
            op: ServiceOp::Restart,
            ready_samples: 0
        }
    );
}

#[tokio::test]
async fn another_artifact_for_a_kept_version_and_an_unkept_version_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    kept(tmp.path(), "1.0", &"ab".repeat(32));
    kept(tmp.path(), "1.1", &"ab".repeat(32));
    Releases::new(tmp.path()).switch("1.0").expect("switch");
    let other = deploy("app", "1.1", "/srv/app-1.1.tgz", &"cd".repeat(32));
    let (j, _) = job(tmp.path(), other, Ok(String::new()));
    let e = j.deploy().await.err().expect("refused");
    assert!(matches!(e, DeployError::OtherContent { .. }), "{e}");
    let (j, _) = job(tmp.path(), deploy("app", "3.0", "", ""), Ok(String::new()));
    let e = j.deploy().await.err().expect("not kept").to_string();
    assert!(e.contains("not kept") && e.contains("1.0, 1.1"), "{e}");
    assert_eq!(
        current_version(tmp.path()).as_deref(),
        Some("1.0"),
        "untouched"
    );
}

#[tokio::test]
async fn a_failed_activation_leaves_the_new_version_current_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    kept(tmp.path(), "1.0", "x");
    kept(tmp.path(), "2.0", "x");
    Releases::new(tmp.path()).switch("1.0").expect("switch");
    let (j, _) = job(
        tmp.path(),
        deploy("app", "2.0", "", ""),
        Err("running (pid 3) but not ready after 30s: health failed".to_owned()),
    );
    let run = j.run().await;
    let e = run.result.expect_err("failed");
    assert!(
        e.contains("2.0 is in place (was 1.0) but its restart failed")
            && e.contains("not ready after 30s")
            && e.contains("2.0 stays current"),
        "{e}"
    );
    assert!(run.bodies.is_empty(), "no service_deployed");
    assert_eq!(current_version(tmp.path()).as_deref(), Some("2.0"));
}

#[tokio::test]
async fn a_compose_deploy_writes_the_tag_and_runs_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (j, mut asked) = job(
        tmp.path(),
        deploy("web", "1.4", "", ""),
        Ok("running".to_owned()),
    );
    let run = j.run().await;
    assert_eq!(
        run.result,
        Ok("deployed 1.4 (was none): running".to_owned())
    );
    let (_, what) = asked.recv().await.expect("asked");
    assert_eq!(
        what,
        OnDemand::Activate {
            op: ServiceOp::Start,
            ready_samples: 0
        }
    );
    let (j, _) = job(
        tmp.path(),
        deploy("web", "1.5", "", ""),
        Ok("running".to_owned()),
    );
    let run = j.run().await;
    assert_eq!(run.result, Ok("deployed 1.5 (was 1.4): running".to_owned()));
    let Some(pb::event::Body::ServiceDeployed(ev)) = run.bodies.first() else {
        panic!("{:?}", run.bodies);
    };
    assert_eq!(ev.location, "registry.local/web:1.5");
    let (j, _) = job(
        tmp.path(),
        deploy("web", "1.6", "/x.tgz", "ab"),
        Ok(String::new()),
    );
    let e = j.deploy().await.err().expect("artifact");
    assert!(matches!(e, DeployError::ArtifactForImage { .. }), "{e}");
}
