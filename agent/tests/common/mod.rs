//! Shared by the agent's integration tests: a real nats-server with JetStream on a random
//! loopback port and a temp store (the tests skip, with a message, when it is not installed).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A nats-server with JetStream on a random port; killed on drop.
pub struct Server {
    _child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

pub async fn start_server() -> Option<Server> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = match Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping: cannot run nats-server: {e}");
            return None;
        }
    };
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                return Some(format!("nats://{}", addr.trim()));
            }
        }
        None
    })
    .await
    .expect("nats-server starts")
    .expect("nats-server prints its port");
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Server {
        _child: child,
        url,
        _dir: dir,
    })
}
