//! The harness itself against a real nats-server: start on a free port, stop and restart on the
//! same port with the same store (JetStream data survives), kill, and clear errors for missing
//! binaries. Needs only `nats-server`, not the opsfleet binaries.

use std::time::Duration;

use opsfleet_tests::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restarts_on_the_same_port_with_its_store() {
    let mut nats = NatsServer::start().await.expect("start nats-server");
    let port = nats.port();
    assert_ne!(port, 0);
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));

    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "HARNESS".to_owned(),
        subjects: vec!["harness.>".to_owned()],
        ..Default::default()
    })
    .await
    .expect("create stream");
    js.publish("harness.one", "1".into())
        .await
        .expect("publish")
        .await
        .expect("puback");

    nats.stop().await.expect("graceful stop");
    assert!(!nats.is_running());
    nats.restart().await.expect("restart on the same port");
    assert_eq!(nats.port(), port, "restart must keep the port");

    // The old client reconnects by itself; the stream survived in the store dir.
    let mut stream = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match js.get_stream("HARNESS").await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("stream visible again after restart");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 1);

    nats.kill().await.expect("kill");
    assert!(!nats.is_running());
    nats.restart().await.expect("start after kill");
    assert_eq!(nats.port(), port);
}

#[test]
fn missing_binaries_say_how_to_build_them() {
    let err = opsfleet_tests::bins::bin("ops-does-not-exist").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("cargo build --workspace --bins") && msg.contains("scripts/test.sh"),
        "{msg}"
    );
}
