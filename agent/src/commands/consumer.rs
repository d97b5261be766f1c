//! The consumer loop: subscribes to the fast path `ops.fastcmd.<host>`, opens (and re-opens,
//! with backoff) the durable pull consumer `agent-<host>`, samples the server's clock, and
//! feeds each delivered message through `admit`, the ack and `complete` (a `backup_run` in the
//! background; deploys, lifecycle ops, role changes and traffic switches in the background in
//! their service's lane). A fast copy (checked by `fastpath::fast_copy`) goes through the same
//! `admit` when it comes right after the last message handled (`fastpath::fast_step`), and is
//! run the same way; it is not acked (the durable consumer acks its own copy later, a
//! duplicate by then). Otherwise it is left to the durable consumer.

use opsfleet_report::ErrorChain;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, AckKind};
use futures::{FutureExt, StreamExt};
use opsfleet_proto::{pb, subjects};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use opsfleet_proto::time::unix_ms;

use super::clock;
use super::decide::delivered_by_own_consumer;
use super::exec::Execution;
use super::fastpath::{fast_copy, fast_step, relay_problem, FastStep, Via};
use super::{consumer_name, Accepted, CommandHandler};
use crate::modules::service::ServiceOp;
use crate::telemetry;
use tokio::sync::oneshot;

/// How often a refused fast-path copy is logged as a warning (the rest at debug).
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(60);

/// Whether the lane's previous holder has not ended yet (its sender is alive).
fn before_running(end: &mut oneshot::Receiver<()>) -> bool {
    matches!(end.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}
use opsfleet_report::error_chain;

/// The service and op of a lifecycle command; `None` for other actions.
fn lifecycle(action: &pb::command::Action) -> Option<(String, ServiceOp)> {
    use pb::command::Action;
    Some(match action {
        Action::ServiceStart(s) => (s.service.clone(), ServiceOp::Start),
        Action::ServiceStop(s) => (s.service.clone(), ServiceOp::Stop),
        Action::ServiceRestart(s) => (s.service.clone(), ServiceOp::Restart),
        Action::ServiceReload(s) => (s.service.clone(), ServiceOp::Reload),
        _ => return None,
    })
}

/// The service whose lane runs `action` in the background (after that service's earlier
/// deploy, role change, switch or lifecycle op, never beside it): deploys, role changes (an
/// env-file role restarts or reloads the service) and traffic switches; `None` for others
/// (lifecycle ops take the lane in `detach_service`). Pure.
fn laned_service(action: &pb::command::Action) -> Option<&str> {
    use pb::command::Action;
    match action {
        Action::ServiceDeploy(d) => Some(&d.service),
        Action::ServiceRole(r) => Some(&r.service),
        Action::TrafficSwitch(t) => Some(&t.service),
        _ => None,
    }
}

impl CommandHandler {
    /// Consumes `ops.cmd.<host>` until `cancel`: reports interrupted commands, then opens (and
    /// on failure re-opens, with backoff) the durable consumer.
    pub async fn run(mut self, js: jetstream::Context, cancel: CancellationToken) {
        self.nats = Some(js.client());
        while let Err(e) = self.recover().await {
            warn!(host = %self.host, error = %ErrorChain(&e), "cannot report interrupted commands, retrying");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            match self.consume(&js, &cancel).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    debug!(host = %self.host, error = %ErrorChain(&*e), "command consumer unavailable, retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// One session of the consumer: subscribes to the fast path, opens the durable consumer,
    /// then serves deliveries from both, background results and clock resamples until
    /// `cancel` or the message stream ends.
    async fn consume(
        &mut self,
        js: &jetstream::Context,
        cancel: &CancellationToken,
    ) -> Result<(), async_nats::Error> {
        let durable = consumer_name(&self.host);
        // Without the subscribe right (an older auth.conf) the server refuses it and nothing
        // arrives here: every command still comes through the durable consumer.
        let mut fast = js
            .client()
            .subscribe(subjects::command_copy_subject(&self.host))
            .await?;
        let (mut messages, stream_id) = self.open(js, &durable).await?;
        self.on_stream(stream_id);
        info!(host = %self.host, consumer = %durable, "command consumer open");
        self.sample_server_clock(js, &durable).await;
        let mut resample = tokio::time::interval(clock::RESAMPLE_EVERY);
        resample.tick().await;
        loop {
            // Biased: of a command on both paths at once, the fast copy first (the durable
            // one is then a duplicate, acked).
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                _ = resample.tick() => {
                    self.sample_server_clock(js, &durable).await;
                    continue;
                }
                Some((id, kind, run)) = self.detached_rx.recv() => {
                    if let Err(e) = self.finish(&id, kind, run).await {
                        warn!(error = %ErrorChain(&e), "cannot record command result; a restart reports it failed");
                    }
                    continue;
                }
                Some(msg) = fast.next() => {
                    self.on_fast(msg).await;
                    continue;
                }
                next = messages.next() => next,
            };
            match next {
                None => return Ok(()),
                // Re-opened: the consumer (or the whole stream) may be gone, and a re-created
                // stream counts its sequences anew, which `on_stream` checks.
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(msg)) => self.on_message(msg).await,
            }
        }
    }

    /// Gets or creates the durable consumer `durable` (explicit acks, one in flight) and opens
    /// its message stream; also returns the stream's identity (its creation time).
    async fn open(
        &self,
        js: &jetstream::Context,
        durable: &str,
    ) -> Result<(consumer::pull::Stream, String), async_nats::Error> {
        let mut stream = js.get_stream(subjects::COMMANDS_STREAM).await?;
        let stream_id = stream
            .info()
            .await?
            .created
            .unix_timestamp_nanos()
            .to_string();
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                durable,
                consumer::pull::Config {
                    durable_name: Some(durable.to_owned()),
                    description: Some(format!("opsfleet agent {}", self.host)),
                    filter_subject: subjects::command_subject(&self.host),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await?;
        let messages = consumer
            .stream()
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        Ok((messages, stream_id))
    }

    /// A session opened on the `OPS_CMDS` of identity `stream_id`: the cursor carries over
    /// within one stream (in memory, or the ledger's last decision at start); a stream
    /// re-created since counts its sequences anew, so the cursor starts from 0 there.
    fn on_stream(&mut self, stream_id: String) {
        if self.stream_id.as_deref() == Some(stream_id.as_str()) {
            return;
        }
        let (seq, counted_in) = self.ledger.seq();
        let before = self.cursor;
        self.cursor = if counted_in == Some(stream_id.as_str()) {
            seq
        } else {
            0
        };
        if self.stream_id.is_some() || (seq > 0 && self.cursor == 0) {
            info!(host = %self.host, stream_id, cursor = self.cursor, before, "commands stream is new to this agent; the fast path counts from its start");
        }
        self.stream_id = Some(stream_id);
    }

    /// One delivered message: checked to come from this host's consumer, admitted (recorded,
    /// or nak'ed for redelivery when it cannot be), acked, then run.
    async fn on_message(&mut self, msg: jetstream::Message) {
        let info = msg.info().ok();
        let ack = info.as_ref().map(|i| (i.stream, i.consumer));
        if !delivered_by_own_consumer(&self.host, msg.subject.as_str(), ack) {
            // Not from agent-<host> on OPS_CMDS: never decoded, never acked (its ack
            // subject, if any, belongs to somebody else's consumer).
            warn!(subject = %msg.subject, stream = ack.map(|a| a.0), consumer = ack.map(|a| a.1), "ignoring a message on the command inbox that its consumer did not deliver");
            return;
        }
        if let Some(header) = relay_problem(msg.headers.as_ref()) {
            // The server relayed a stored message here (a direct-get answer to a chosen
            // reply subject), not a coordinator: never decoded, no state change; acked so
            // it is not redelivered.
            let seq = info.as_ref().map(|i| i.stream_sequence);
            warn!(host = %self.host, subject = %msg.subject, stream_seq = seq, header, "refusing a server relay copy on the command inbox");
            telemetry::command("relay_copy");
            if let Err(e) = msg.ack().await {
                warn!(error = %ErrorChain(&*e), "cannot ack relay copy; its redelivery is refused again");
            }
            self.handled(seq);
            return;
        }
        let seq = info.as_ref().map(|i| i.stream_sequence);
        let accepted = match self.admit_at(&msg.payload, Via::Durable, seq).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %ErrorChain(&e), "cannot record command; asking for redelivery");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return;
            }
        };
        // The decision is flushed: a redelivery from here on is a duplicate.
        if let Err(e) = msg.ack().await {
            warn!(error = %ErrorChain(&*e), "cannot ack command; a redelivery will be ignored as a duplicate");
        }
        self.handled(seq);
        if let Some(accepted) = accepted {
            self.run_accepted(accepted).await;
        }
    }

    /// The durable consumer's message at stream sequence `seq` is handled (acked): the fast
    /// path may go on right after it.
    fn handled(&mut self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.cursor = self.cursor.max(seq);
        }
    }

    /// One message of the fast-path subscription: checked to be the stream's republish of a
    /// command to this host, then, when it comes right after the last message handled,
    /// admitted exactly as a durable delivery (target, seen id, epoch fencing, deadline, host
    /// policy) and run. Nothing to ack; a copy after a gap, or one that cannot be recorded, is
    /// left to the durable consumer.
    async fn on_fast(&mut self, msg: async_nats::Message) {
        let placed = match fast_copy(&self.host, msg.subject.as_str(), msg.headers.as_ref()) {
            Ok(placed) => placed,
            Err(problem) => {
                telemetry::command("relay_copy");
                let now = std::time::Instant::now();
                if self
                    .refusal_warned
                    .is_none_or(|at| now.duration_since(at) >= REFUSAL_WARN_EVERY)
                {
                    self.refusal_warned = Some(now);
                    warn!(host = %self.host, subject = %msg.subject, problem, "refusing a message on the command fast path that the stream did not republish (logged at most once a minute; counted as relay_copy)");
                } else {
                    debug!(host = %self.host, subject = %msg.subject, problem, "refusing a message on the command fast path");
                }
                return;
            }
        };
        match fast_step(placed, self.cursor) {
            FastStep::Run => {
                if self.fast_behind {
                    self.fast_behind = false;
                    info!(host = %self.host, seq = placed.seq, "fast path caught up");
                }
            }
            FastStep::Seen => return,
            FastStep::Leave => {
                telemetry::command("fast_left");
                if !self.fast_behind {
                    self.fast_behind = true;
                    info!(host = %self.host, seq = placed.seq, previous = placed.previous, cursor = self.cursor, "fast path behind; commands come through the durable consumer, in order, until it has caught up");
                } else {
                    debug!(host = %self.host, seq = placed.seq, previous = placed.previous, cursor = self.cursor, "fast copy after a gap; the durable consumer brings it");
                }
                return;
            }
        }
        match self
            .admit_at(&msg.payload, Via::Fast, Some(placed.seq))
            .await
        {
            Ok(accepted) => {
                self.cursor = placed.seq;
                if let Some(accepted) = accepted {
                    self.run_accepted(accepted).await;
                }
            }
            Err(e) => {
                warn!(error = %ErrorChain(&e), "cannot record a command from the fast path; the durable consumer brings it again");
            }
        }
    }

    /// Runs an accepted command: in the background (a backup or restore test, a lifecycle
    /// op, a laned service action) or inline.
    async fn run_accepted(&mut self, accepted: Accepted) {
        let backup = match &accepted.action {
            pb::command::Action::BackupRun(b) => Some(self.backup_run_task(b.clone()).boxed()),
            pb::command::Action::RestoreTest(t) => {
                Some(self.restore_test_task(&accepted.id, t.clone()).boxed())
            }
            _ => None,
        };
        if let Some(run) = backup {
            self.detach_backup(accepted, run);
            return;
        }
        if let Some((service, op)) = lifecycle(&accepted.action) {
            self.detach_service(accepted, service, op).await;
            return;
        }
        // Deploys, role changes and traffic switches run in the background, in their
        // service's lane: after its earlier deploy or lifecycle op, never beside it.
        let run = match &accepted.action {
            pb::command::Action::ServiceDeploy(d) => {
                Some(self.service_deploy_task(&accepted.id, d).boxed())
            }
            pb::command::Action::ServiceRole(r) => Some(self.service_role_task(r).boxed()),
            pb::command::Action::TrafficSwitch(t) => Some(self.traffic_switch_task(t).boxed()),
            _ => None,
        };
        let service = laned_service(&accepted.action).map(str::to_owned);
        if let (Some(service), Some(run)) = (service, run) {
            self.detach_in_lane(accepted, &service, run);
            return;
        }
        if let Err(e) = self.complete(accepted).await {
            warn!(error = %ErrorChain(&e), "cannot record command result; a restart reports it failed");
        }
    }

    /// A backup (or a restore test) may run for minutes: in the background, its result
    /// recorded when it comes (through `detached_rx`); a restart meanwhile reports it failed
    /// (`recover`).
    fn detach_backup(
        &self,
        accepted: Accepted,
        run: futures::future::BoxFuture<'static, Result<String, String>>,
    ) {
        let tx = self.detached_tx.clone();
        tokio::spawn(async move {
            let result = run.await;
            let _ = tx.send((accepted.id, accepted.kind, Execution::done(result)));
        });
    }

    /// A lifecycle op waits for the service to be ready (up to its `ready_timeout`): in the
    /// background like a backup, so the host's other commands (a `drain`, another service's
    /// stop) are not held behind it. Ops on one service stay in order: its supervisor takes
    /// them one at a time, as they were accepted.
    async fn detach_service(&mut self, accepted: Accepted, service: String, op: ServiceOp) {
        let tx = self.detached_tx.clone();
        let (busy, lane_done) = self.lane(&service);
        if let Some(before) = busy {
            // A deploy (or an op queued behind one) of this service is still running: this
            // op is handed to the module only after it.
            let control = self.control.clone();
            tokio::spawn(async move {
                let _ = before.await;
                let result = match control.start_service_op(&service, op).await {
                    Ok(outcome) => outcome.await.map_err(|e| error_chain(&e)),
                    Err(e) => Err(error_chain(&e)),
                };
                drop(lane_done);
                let _ = tx.send((accepted.id, accepted.kind, Execution::done(result)));
            });
            return;
        }
        // Handed to the module here, in the consumer's order; only the wait is detached.
        match self.control.start_service_op(&service, op).await {
            Ok(outcome) => {
                tokio::spawn(async move {
                    let result = outcome.await.map_err(|e| error_chain(&e));
                    drop(lane_done);
                    let _ = tx.send((accepted.id, accepted.kind, Execution::done(result)));
                });
            }
            Err(e) => {
                let result = Err(error_chain(&e));
                let _ = tx.send((accepted.id, accepted.kind, Execution::done(result)));
            }
        }
    }

    /// A deploy fetches, switches and waits for the restarted service; a role change may
    /// restart it; a traffic switch runs a command: all of it in the background, after the
    /// previous deploy, role change, switch or lifecycle op of the same service.
    fn detach_in_lane(
        &mut self,
        accepted: Accepted,
        service: &str,
        run: futures::future::BoxFuture<'static, Execution>,
    ) {
        let tx = self.detached_tx.clone();
        let (busy, lane_done) = self.lane(service);
        tokio::spawn(async move {
            if let Some(before) = busy {
                let _ = before.await;
            }
            let execution = run.await;
            drop(lane_done);
            let _ = tx.send((accepted.id, accepted.kind, execution));
        });
    }

    /// Takes `service`'s lane: the previous holder's end when it is still running, and the
    /// sender whose drop ends this one.
    fn lane(&mut self, service: &str) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, end) = oneshot::channel();
        let before = self
            .lanes
            .insert(service.to_owned(), end)
            .and_then(|mut before| before_running(&mut before).then_some(before));
        (before, done)
    }

    /// Reads the server's time from the consumer's info reply; warns when this host's wall
    /// clock is off by more than `SKEW_WARN_MS`. A failure keeps the previous reading.
    async fn sample_server_clock(&mut self, js: &jetstream::Context, durable: &str) {
        let subject = format!("CONSUMER.INFO.{}.{durable}", subjects::COMMANDS_STREAM);
        let sent = clock::boot_ms();
        let reply: Result<jetstream::response::Response<clock::Stamped>, _> =
            js.request(subject, &serde_json::json!({})).await;
        let received = clock::boot_ms();
        let stamped = match reply {
            Ok(jetstream::response::Response::Ok(s)) => s,
            Ok(jetstream::response::Response::Err { error }) => {
                debug!(consumer = %durable, error = %ErrorChain(&error), "cannot read the server's time");
                return;
            }
            Err(e) => {
                debug!(consumer = %durable, error = %ErrorChain(&e), "cannot read the server's time");
                return;
            }
        };
        let Some(server_ms) = clock::parse_ts(&stamped.ts) else {
            debug!(ts = %stamped.ts, "unreadable server time");
            return;
        };
        self.clock.observe(server_ms, sent, received);
        let wall = unix_ms(SystemTime::now());
        if let Some(skew) = self.clock.skew_ms(wall, clock::boot_ms()) {
            if skew.abs() > clock::SKEW_WARN_MS {
                warn!(host = %self.host, skew_ms = skew, "this host's clock differs from the NATS server's; command deadlines follow the server's");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::command::Action;

    /// A role change (an env-file role restarts the service) and a traffic switch (a command
    /// that may take long) run in their service's lane, like a deploy: never inline in the
    /// consumer, never beside that service's deploy.
    #[test]
    fn deploys_roles_and_switches_run_in_their_service_lane() {
        let deploy = Action::ServiceDeploy(pb::ServiceDeploy {
            service: "app".into(),
            ..Default::default()
        });
        let role = Action::ServiceRole(pb::ServiceRole {
            service: "router".into(),
            ..Default::default()
        });
        let switch = Action::TrafficSwitch(pb::TrafficSwitch {
            service: "blue".into(),
        });
        assert_eq!(laned_service(&deploy), Some("app"));
        assert_eq!(laned_service(&role), Some("router"));
        assert_eq!(laned_service(&switch), Some("blue"));
        assert_eq!(laned_service(&Action::Noop(pb::Noop::default())), None);
    }
}
