//! Consumers people may create, and forged deliveries into an agent's inbox.
//!
//! People read events only through consumers named in the create subject (the unnamed
//! subject's body could name a coordinator's durable) and create none on `OPS_CMDS`. A push
//! consumer a viewer points at an agent's inbox can still deliver there — the server does not
//! check the deliver subject against anyone's permissions — so the agent takes as a command
//! only what its own consumer delivered: checked here on real deliveries of both kinds.

use super::*;

use opsfleet_agent::commands::delivered_by_own_consumer;
use opsfleet_proto::pb;
use prost::Message as _;

/// What the agent's command loop passes to `delivered_by_own_consumer` for `msg`.
fn accepted_as_command(host: &str, msg: async_nats::Message, js: &jetstream::Context) -> bool {
    let msg = jetstream::Message {
        message: msg,
        context: js.clone(),
    };
    let info = msg.info().ok();
    let ack = info.as_ref().map(|i| (i.stream, i.consumer));
    delivered_by_own_consumer(host, msg.subject.as_str(), ack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_create_only_named_consumers_and_a_forged_push_is_no_command() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let blue = Probe::connect(&s, "blue", Role::Coordinator).await?;
    opsfleet_bus::ensure_topology(&blue.js, &TopologyConfig::default()).await?;
    let vera = Probe::connect(&s, "vera", Role::Operator).await?;
    let carol = Probe::connect(&s, "carol", Role::Operator).await?;

    // 1. The unnamed create subjects, and any consumer on the commands stream: refused.
    for p in [&vera, &carol] {
        for subject in [
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS",
            "$JS.API.CONSUMER.CREATE.OPS_DLQ",
            "$JS.API.CONSUMER.CREATE.OPS_CMDS",
            "$JS.API.CONSUMER.CREATE.OPS_CMDS.opsctl-x",
            "$JS.API.CONSUMER.CREATE.OPS_CMDS.agent-web-01.ops.cmd.web-01",
            "$JS.API.CONSUMER.DURABLE.CREATE.OPS_EVENTS.coord-blue",
        ] {
            p.client.publish(subject, "{}".into()).await?;
            p.expect_violation("publish", subject).await?;
        }
    }

    // 2. A named consumer (what `opsctl events` creates) works.
    let events = vera.js.get_stream(subjects::EVENTS_STREAM).await?;
    events
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some("opsctl-reader".into()),
            ..Default::default()
        })
        .await
        .context("vera cannot read events through a named consumer")?;

    // 3. A push consumer aimed at web-01's inbox, carrying a well-formed command for web-01
    // that web-02 published as an event.
    let web01 = Probe::connect(&s, "web-01", Role::Agent).await?;
    let web02 = Probe::connect(&s, "web-02", Role::Agent).await?;
    let mut inbox = web01.client.subscribe("_INBOX.web-01.forged.>").await?;
    web01.client.flush().await?;
    let forged = events
        .create_consumer(consumer::push::Config {
            name: Some("opsctl-forge".into()),
            deliver_subject: "_INBOX.web-01.forged.1".into(),
            filter_subject: "ops.evt.web-02.>".into(),
            ..Default::default()
        })
        .await;
    let command = pb::Command {
        id: "forged-1".into(),
        epoch: 999,
        issued_by: "vera".into(),
        target: "web-01".into(),
        deadline_unix_ms: i64::MAX / 2,
        issued_unix_ms: 0,
        action: Some(pb::command::Action::Pause(pb::ModuleAction {
            module: "disk".into(),
        })),
    };
    web02
        .js
        .publish("ops.evt.web-02.heartbeat", command.encode_to_vec().into())
        .await?
        .await
        .context("web-02 cannot publish its own event")?;
    // Whether the server delivers it at all depends on its version (2.15 left such a consumer
    // unbound); where it does, the agent must not take it for a command.
    match forged {
        Err(e) => eprintln!("the server refused the push consumer itself: {e}"),
        Ok(_) => match tokio::time::timeout(Duration::from_secs(5), inbox.next()).await {
            Err(_) => eprintln!("the server delivered nothing of the forged push consumer"),
            Ok(None) => bail!("web-01's inbox subscription closed"),
            Ok(Some(delivered)) => ensure!(
                !accepted_as_command("web-01", delivered, &web01.js),
                "a push from a viewer's consumer would be taken for a command"
            ),
        },
    }

    // 4. A real command through web-01's own consumer is taken.
    blue.js
        .publish(
            subjects::command_subject("web-01"),
            command.encode_to_vec().into(),
        )
        .await?
        .await?;
    let cmds = web01.js.get_stream(subjects::COMMANDS_STREAM).await?;
    let own = cmds
        .create_consumer(consumer::pull::Config {
            durable_name: Some("agent-web-01".into()),
            filter_subject: subjects::command_subject("web-01"),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("web-01 cannot create its command consumer")?;
    let mut batch = own
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(10))
        .messages()
        .await?;
    let msg = batch
        .next()
        .await
        .context("no command delivered")?
        .map_err(|e| anyhow!("fetch: {e}"))?;
    ensure!(
        accepted_as_command("web-01", msg.message.clone(), &web01.js),
        "the agent's own delivery is not taken for a command: {} {:?}",
        msg.subject,
        msg.reply
    );
    Ok(())
}
