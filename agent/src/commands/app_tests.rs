//! Unit tests of `app` forwarding: what is permitted, the request body, the answer's excerpt
//! and verdict, and one POST to a local listener.

use opsfleet_proto::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::parse_str;

fn policy(remote: &str, control: &str) -> HostPolicy {
    let toml = format!(
        "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nname = \"web\"\nargv = [\"app\"]\n\
         remote = [{remote}]\n{control}\n[[modules]]\ntype = \"service\"\nname = \"plain\"\n\
         argv = [\"app\"]\nremote = [\"app\"]\n"
    );
    HostPolicy::from_config(&parse_str(&toml).expect("valid config"))
}

const CONTROL: &str = "[modules.control]\nhttp = \"http://127.0.0.1:9/control\"\n\
    [[modules.control.actions]]\nname = \"pipeline.pause\"\nargs = [\"reason\"]\n";

fn action(service: &str, name: &str, args: &[(&str, &str)]) -> pb::AppAction {
    pb::AppAction {
        service: service.to_owned(),
        action: name.to_owned(),
        args: (args.iter())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[test]
fn only_a_declared_action_of_a_service_allowing_app_is_permitted() {
    let p = policy("\"app\"", CONTROL);
    let ok = permitted(&p, &action("web", "pipeline.pause", &[("reason", "x")]));
    assert!(ok.is_ok(), "{ok:?}");
    let refused = |p: &HostPolicy, a: pb::AppAction| permitted(p, &a).unwrap_err();
    let undeclared = refused(&p, action("web", "pipeline.drop", &[]));
    assert!(
        undeclared.contains("\"pipeline.drop\" is not declared")
            && undeclared.contains("declared: \"pipeline.pause\""),
        "{undeclared}"
    );
    let arg = refused(&p, action("web", "pipeline.pause", &[("force", "1")]));
    assert!(arg.contains("no argument \"force\""), "{arg}");
    let no_control = refused(&p, action("plain", "pipeline.pause", &[]));
    assert!(
        no_control.contains("declares no control endpoint"),
        "{no_control}"
    );
    let not_remote = refused(
        &policy("\"restart\"", CONTROL),
        action("web", "pipeline.pause", &[]),
    );
    assert!(
        not_remote.starts_with("refused by service.remote"),
        "{not_remote}"
    );
    let unknown = refused(&p, action("db", "pipeline.pause", &[]));
    assert!(
        unknown.starts_with("refused by service.remote"),
        "{unknown}"
    );
    // The same verdict at accept time.
    let cmd = pb::command::Action::App(action("web", "pipeline.drop", &[]));
    let at_accept = super::super::check_policy(Some(&cmd), &p, &|_| None).unwrap_err();
    assert_eq!(at_accept, undeclared);
}

#[test]
fn the_request_is_the_action_and_its_args_as_json() {
    let body = request_body(&action("web", "module.disable", &[("module", "ingest")]));
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({"action": "module.disable", "args": {"module": "ingest"}})
    );
    let empty = request_body(&action("web", "pipeline.pause", &[]));
    assert_eq!(empty, r#"{"action":"pipeline.pause","args":{}}"#);
}

#[test]
fn answers_are_excerpted_and_judged_by_status() {
    assert_eq!(
        judge_http(200, b"{\"status\": \"done\"}\n"),
        Ok("app answered 200: {\"status\": \"done\"}".to_owned())
    );
    assert_eq!(
        judge_http(400, b"bad\x1b[31m\r\naction"),
        Err("app answered 400: bad[31maction".to_owned())
    );
    let long = "x".repeat(1000);
    let e = excerpt(long.as_bytes());
    assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
    assert!(e.ends_with('…'));
    assert!(judge_http(302, b"").is_err());
    assert!(judge_http(204, b"").is_ok());
}

/// A listener that answers one request with `status` and `body`; returns the URL and the
/// request it received.
async fn one_answer(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/control",
        listener.local_addr().expect("local addr")
    );
    let seen = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the headers, then as many body bytes as Content-Length says.
        loop {
            let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = (text.lines())
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    break;
                }
            }
            let n = sock.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(answer.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&got).into_owned()
    });
    (url, seen)
}

#[tokio::test]
async fn a_post_carries_the_json_and_returns_the_answer() {
    let (url, seen) = one_answer(200, "{\"status\":\"done\"}").await;
    let body = request_body(&action("web", "pipeline.pause", &[("reason", "x")]));
    let (status, answer) = post_json(&url, &body).await.expect("answered");
    assert_eq!(status, 200);
    assert_eq!(answer, b"{\"status\":\"done\"}");
    let request = seen.await.expect("listener");
    assert!(request.starts_with("POST /control HTTP/1.1"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{request}"
    );
    assert!(request.ends_with(&body), "{request}");

    let (url, _seen) = one_answer(400, "unknown action").await;
    let (status, answer) = post_json(&url, "{}").await.expect("answered");
    assert_eq!(
        judge_http(status, &answer),
        Err("app answered 400: unknown action".to_owned())
    );
    let refused = post_json("http://127.0.0.1:1/control", "{}")
        .await
        .unwrap_err();
    assert!(refused.starts_with("connect 127.0.0.1:1"), "{refused}");
}
