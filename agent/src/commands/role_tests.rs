//! Unit tests of what `service_role` and `traffic_switch` commands are permitted (and the
//! refusals), through the same check the command's admission uses.

use opsfleet_proto::pb;
use opsfleet_proto::pb::command::Action;

use super::*;
use crate::commands::check_policy;
use crate::config::{parse_str, HostPolicy};

fn policy(remote: &str) -> HostPolicy {
    let toml = format!(
        "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nname = \"router\"\nargv = [\"app\"]\n\
         remote = [{remote}]\n[modules.role]\ngroup = \"edge\"\nfile = \"/run/router.role\"\n\
         [modules.traffic]\nslot_group = \"web\"\nswitch = [\"true\"]\n\
         [[modules]]\ntype = \"service\"\nname = \"plain\"\nargv = [\"app\"]\nremote = [\"restart\"]\n"
    );
    HostPolicy::from_config(&parse_str(&toml).expect("valid config"))
}

fn role(service: &str, role: &str, group: &str) -> pb::ServiceRole {
    pb::ServiceRole {
        service: service.to_owned(),
        role: role.to_owned(),
        group: group.to_owned(),
    }
}

fn check(p: &HostPolicy, a: Action) -> Result<(), String> {
    check_policy(Some(&a), p, &|_: &std::path::Path| None)
}

#[test]
fn a_role_of_the_declared_group_is_permitted() {
    let p = policy("\"role\", \"switch\"");
    let (section, given) = permitted(&p, &role("router", "active", "edge")).expect("permitted");
    assert_eq!((section.group.as_str(), given), ("edge", GroupRole::Active));
    assert!(check(&p, Action::ServiceRole(role("router", "standby", "edge"))).is_ok());
    let switch = pb::TrafficSwitch {
        service: "router".into(),
    };
    assert!(check(&p, Action::TrafficSwitch(switch)).is_ok());
}

#[test]
fn role_not_in_remote_wrong_group_bad_role_and_unknown_service_are_refused() {
    let p = policy("\"restart\"");
    let err = check(&p, Action::ServiceRole(role("router", "active", "edge"))).unwrap_err();
    assert!(err.starts_with("refused by service.remote"), "{err}");
    let switch = |s: &str| Action::TrafficSwitch(pb::TrafficSwitch { service: s.into() });
    let err = check(&p, switch("router")).unwrap_err();
    assert!(err.starts_with("refused by service.remote"), "{err}");

    let p = policy("\"role\", \"switch\"");
    let err = check(&p, Action::ServiceRole(role("router", "active", "core"))).unwrap_err();
    assert!(
        err.contains("service.role.group") && err.contains("in group \"edge\", not \"core\""),
        "{err}"
    );
    let err = check(&p, Action::ServiceRole(role("router", "active", ""))).unwrap_err();
    assert!(err.contains("service.role.group"), "no group: {err}");
    let err = check(&p, Action::ServiceRole(role("router", "leader", "edge"))).unwrap_err();
    assert!(err.contains("unknown role \"leader\""), "{err}");
    let err = check(&p, Action::ServiceRole(role("ghost", "active", "edge"))).unwrap_err();
    assert!(err.contains("not a service of this host"), "{err}");
    let err = check(&p, switch("plain")).unwrap_err();
    assert!(err.starts_with("refused by service.remote"), "{err}");
}

#[test]
fn the_other_slots_of_a_slot_group_are_the_file_s() {
    let toml = "host = \"h\"\n\
        [[modules]]\ntype = \"service\"\nname = \"blue\"\nargv = [\"a\"]\n[modules.traffic]\nslot_group = \"web\"\nswitch = [\"x\"]\n\
        [[modules]]\ntype = \"service\"\nname = \"green\"\nargv = [\"a\"]\n[modules.traffic]\nslot_group = \"web\"\nswitch = [\"x\"]\n\
        [[modules]]\ntype = \"service\"\nname = \"api\"\nargv = [\"a\"]\n[modules.traffic]\nslot_group = \"api\"\nswitch = [\"x\"]\n";
    let cfg = parse_str(toml).expect("valid");
    assert_eq!(
        crate::commands::traffic::other_slots(&cfg, "blue", "web"),
        ["green"]
    );
    assert!(crate::commands::traffic::other_slots(&cfg, "api", "api").is_empty());
}
