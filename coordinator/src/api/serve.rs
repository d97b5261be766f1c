//! The request loop of `ops.api.*`: subscribe to every verb (broadcast, addressed to this
//! coordinator, and identified `ops.api.as.<operator>.<role>.*`), refuse foreign reply
//! subjects, and hand each request to its verb's handler; a handler returns the reply, or
//! nothing when this coordinator stays silent (a standby on a broadcast action) or answers
//! from a task (commands).

use std::sync::Arc;

use async_nats::jetstream::stream;
use async_nats::Message;
use futures::StreamExt;
use opsfleet_proto::api::{
    AlertsRequest, BackupsRequest, CommandRequestJson, CommandsReply, CommandsRequest,
    ConfigsRequest, FailoverRequest, GroupsRequest, HostsRequest, IncidentsRequest, RolloutRequest,
    RolloutsRequest, ServiceConfigsRequest, ServiceFailoverRequest, ServicesRequest,
    SilencesRequest, StatusRequest,
};
use opsfleet_proto::subjects;
use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::ErrorChain;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    behind, command_views, commands, error_reply, guard, parse, status, to_json, SubscribeError,
    View,
};
use crate::config::ApiConfig;
use crate::dispatch::{DispatchError, Dispatcher};
use crate::election::ReleaseHandle;
use crate::groups::ask::AskError;
use crate::groups::ask::GroupsHandle;
use crate::identity::Identity;
use crate::state::Shared;

/// Every verb of the API, each subscribed broadcast and addressed to this coordinator.
const VERBS: [&str; 20] = [
    subjects::API_STATUS,
    subjects::API_FAILOVER,
    subjects::API_COMMAND,
    subjects::API_COMMANDS,
    subjects::API_HOSTS,
    subjects::API_BACKUPS,
    subjects::API_INCIDENTS,
    subjects::API_ALERTS,
    subjects::API_CONFIGS,
    subjects::API_SERVICES,
    subjects::API_SERVICE_CONFIGS,
    subjects::API_ROLLOUT,
    subjects::API_ROLLOUTS,
    subjects::API_SERVICE_FAILOVER,
    subjects::API_GROUPS,
    subjects::API_SILENCE,
    subjects::API_ALERT_ACK,
    subjects::API_SILENCES,
    subjects::API_DRILLS,
    subjects::API_DRILL,
];

/// What acts for the active coordinator: commands, the group driver, the drill driver.
pub struct Actors {
    pub dispatcher: Dispatcher,
    pub groups: GroupsHandle,
    pub drills: crate::drills::ask::DrillsHandle,
}

/// What a handler needs to answer.
pub(super) struct Server {
    pub(super) client: async_nats::Client,
    pub(super) shared: Arc<Shared>,
    pub(super) events: stream::Stream,
    release: ReleaseHandle,
    pub(super) dispatcher: Dispatcher,
    groups: GroupsHandle,
    /// The drill driver's handle, with the declared drills.
    pub(super) drills: crate::drills::ask::DrillsHandle,
    pub(super) policy: ApiConfig,
    pub(super) counters: Arc<guard::Counters>,
    /// Whether silences and acks may be recorded now (active and caught up).
    pub(super) gate: Arc<super::silences::SharedGate>,
}

/// One request, its reply subject checked.
pub(super) struct Incoming {
    pub(super) msg: Message,
    pub(super) reply_to: async_nats::Subject,
    /// The identity its subject names (`ops.api.as.<operator>.<role>.*`), if any.
    pub(super) operator: Option<Identity>,
    /// Sent to this coordinator's own subject rather than the broadcast one.
    pub(super) addressed_to_me: bool,
}

/// Answers API requests until `cancel` fires.
pub async fn serve(
    client: async_nats::Client,
    shared: Arc<Shared>,
    events: stream::Stream,
    release: ReleaseHandle,
    actors: Actors,
    policy: ApiConfig,
    cancel: CancellationToken,
) -> Result<(), SubscribeError> {
    let Actors {
        dispatcher,
        groups,
        drills,
    } = actors;
    let gate = crate::acting::Gate::new(Arc::clone(&shared), events.clone(), "silences");
    let gate = Arc::new(tokio::sync::Mutex::new(gate));
    let server = Server {
        client,
        shared,
        events,
        release,
        dispatcher,
        groups,
        drills,
        policy,
        counters: Arc::new(guard::Counters::default()),
        gate,
    };
    let mut requests = server.subscribe().await?;
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            msg = requests.next() => msg,
        };
        let Some(msg) = msg else { return Ok(()) };
        let Some(req) = server.admit(msg) else {
            continue;
        };
        let reply_to = req.reply_to.clone();
        if let Some(reply) = server.answer(req).await {
            server.send(reply_to, reply).await;
        }
    }
}

impl Server {
    async fn subscribe(
        &self,
    ) -> Result<futures::stream::SelectAll<async_nats::Subscriber>, SubscribeError> {
        let mut subjects: Vec<String> = Vec::new();
        for verb in VERBS {
            subjects.push(verb.to_owned());
            subjects.push(subjects::api_subject_for(verb, &self.shared.name));
        }
        subjects.extend(crate::identity::subscriptions(&self.shared.name));
        subjects.push(subjects::API_CONSOLE_ALL.to_owned());
        let mut subs = Vec::new();
        for subject in subjects {
            let sub = self
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|source| SubscribeError { subject, source })?;
            subs.push(sub);
        }
        Ok(futures::stream::select_all(subs))
    }

    /// The request, unless it has no reply subject or one that is not the requester's own
    /// inbox: answering on any other subject would have this coordinator publish there with
    /// its own (wider) permissions.
    fn admit(&self, msg: Message) -> Option<Incoming> {
        let Some(reply_to) = msg.reply.clone() else {
            debug!(subject = %msg.subject, "request without reply subject ignored");
            return None;
        };
        if msg.subject.starts_with(subjects::API_CONSOLE_PREFIX) {
            return self.admit_console(msg, reply_to);
        }
        let (subject, operator) = crate::identity::split(&msg.subject);
        if let Err(e) = guard::check_reply(&reply_to, operator.as_ref()) {
            self.counters.foreign_reply();
            warn!(
                subject = %msg.subject,
                reply = %e.reply,
                wanted = %e.wanted,
                operator = operator.as_ref().map_or("", |i| i.operator.as_str()),
                refused_total = self.counters.snapshot().foreign_reply,
                "request with a foreign reply subject refused"
            );
            return None;
        }
        let addressed_to_me = subject.ends_with(&format!(".{}", self.shared.name));
        Some(Incoming {
            msg,
            reply_to,
            operator,
            addressed_to_me,
        })
    }

    /// A request a coordinator forwarded for its console's login: served as the plain verb
    /// with the login's identity, exactly like `ops.api.as.<operator>.<role>.<verb>`.
    fn admit_console(&self, msg: Message, reply_to: async_nats::Subject) -> Option<Incoming> {
        match guard::check_console(&msg.subject, &msg.payload, &reply_to) {
            Ok(fwd) => Some(Incoming {
                msg: Message {
                    subject: fwd.plain.into(),
                    payload: fwd.request.into(),
                    ..msg
                },
                reply_to,
                operator: Some(fwd.identity),
                addressed_to_me: false,
            }),
            Err(e) => {
                if matches!(e, guard::ConsoleRefusal::Reply(_)) {
                    self.counters.foreign_reply();
                }
                warn!(subject = %msg.subject, reply = %reply_to, error = %e, "console request refused");
                None
            }
        }
    }

    /// The handler table: one handler per verb.
    async fn answer(&self, req: Incoming) -> Option<Vec<u8>> {
        let (subject, _) = crate::identity::split(&req.msg.subject);
        let verb = subject
            .strip_suffix(&format!(".{}", self.shared.name))
            .unwrap_or(&subject);
        let payload = &req.msg.payload;
        match verb {
            subjects::API_STATUS => Some(self.status(payload).await),
            subjects::API_FAILOVER => self.failover(&req).await,
            subjects::API_COMMAND => self.command(req).await,
            subjects::API_COMMANDS => Some(self.read(payload, "commands", |r| self.commands(r))),
            subjects::API_HOSTS => Some(self.view::<HostsRequest>(payload).await),
            subjects::API_BACKUPS => Some(self.view::<BackupsRequest>(payload).await),
            subjects::API_SERVICES => Some(self.view::<ServicesRequest>(payload).await),
            subjects::API_SERVICE_CONFIGS => {
                Some(self.view::<ServiceConfigsRequest>(payload).await)
            }
            subjects::API_INCIDENTS => Some(self.view::<IncidentsRequest>(payload).await),
            subjects::API_ALERTS => Some(self.view::<AlertsRequest>(payload).await),
            subjects::API_CONFIGS => Some(self.configs(payload).await),
            subjects::API_ROLLOUT => self.rollout(req).await,
            subjects::API_ROLLOUTS => Some(self.rollouts(payload)),
            subjects::API_SERVICE_FAILOVER => self.service_failover(req),
            subjects::API_GROUPS => Some(self.groups(payload).await),
            subjects::API_SILENCE => self.silence(req),
            subjects::API_ALERT_ACK => self.alert_ack(req),
            subjects::API_SILENCES => Some(self.view::<SilencesRequest>(payload).await),
            subjects::API_DRILLS => Some(self.drills(payload).await),
            subjects::API_DRILL => self.drill_run(req),
            _ => None,
        }
    }

    async fn send(&self, reply_to: async_nats::Subject, reply: Vec<u8>) {
        if let Err(e) = self.client.publish(reply_to, reply.into()).await {
            warn!(error = %ErrorChain(&e), "cannot send API reply");
        }
    }

    /// The request parsed (an empty body is the default request) and answered by `f`, or
    /// `bad <what> request: <reason>`.
    fn read<R: Default + DeserializeOwned>(
        &self,
        payload: &[u8],
        what: &str,
        f: impl FnOnce(R) -> Vec<u8>,
    ) -> Vec<u8> {
        match parse::<R>(payload) {
            Ok(req) => f(req),
            Err(e) => error_reply(&self.shared, format!("bad {what} request: {e}")),
        }
    }

    /// A paged view answered from this coordinator's fleet, with how far behind the stream
    /// it is, or `bad <what> request: <reason>`.
    async fn view<V: View>(&self, payload: &[u8]) -> Vec<u8> {
        match parse::<V>(payload) {
            Ok(req) => {
                let responder = self
                    .shared
                    .responder(behind(&self.shared, &self.events).await);
                to_json(&req.answer(&self.shared.fleet(), responder, now_unix_ms()))
            }
            Err(e) => error_reply(&self.shared, format!("bad {} request: {e}", V::WHAT)),
        }
    }

    /// One module's config history, or an error naming what is known.
    async fn configs(&self, payload: &[u8]) -> Vec<u8> {
        let req = match parse::<ConfigsRequest>(payload) {
            Ok(req) => req,
            Err(e) => return error_reply(&self.shared, format!("bad configs request: {e}")),
        };
        let responder = self
            .shared
            .responder(behind(&self.shared, &self.events).await);
        match super::configs::configs(&self.shared.fleet(), &req, responder) {
            Ok(reply) => to_json(&reply),
            Err(e) => error_reply(&self.shared, e),
        }
    }

    async fn status(&self, payload: &[u8]) -> Vec<u8> {
        match parse::<StatusRequest>(payload) {
            Ok(req) => {
                let refusals = self.counters.snapshot();
                to_json(&status(&self.shared, &self.events, &req, refusals).await)
            }
            Err(e) => error_reply(&self.shared, format!("bad status request: {e}")),
        }
    }

    async fn failover(&self, req: &Incoming) -> Option<Vec<u8>> {
        let body: FailoverRequest = match self.request(&req.msg.payload, "failover") {
            Ok(body) => body,
            Err(reply) => return Some(reply),
        };
        // Every coordinator refuses alike; the first answer wins.
        if let Err(r) = guard::check_failover(req.operator.as_ref(), self.policy.allow_unidentified)
        {
            return Some(self.refuse(req, r));
        }
        let claimed = body.requested_by.clone().unwrap_or_default();
        let issuer = crate::identity::issuer(&claimed, req.operator.as_ref());
        match commands::failover(&self.shared, &self.client, &self.release, body, &issuer).await {
            Ok(reply) => Some(to_json(&reply)),
            // Standbys stay silent on the broadcast subject so the active one answers; the
            // active one's refusal (already active, unknown target) reaches the operator.
            Err(commands::FailoverError::NotActive { .. }) if !req.addressed_to_me => None,
            Err(e) => Some(error_reply(&self.shared, e.to_string())),
        }
    }

    /// Issuing may take a while for a large fleet: answered from a task so that status
    /// requests are not held up.
    async fn command(&self, req: Incoming) -> Option<Vec<u8>> {
        let body: CommandRequestJson = match self.request(&req.msg.payload, "command") {
            Ok(body) => body,
            Err(reply) => return Some(reply),
        };
        let allowed = guard::check_command(
            req.operator.as_ref(),
            &body.action,
            self.policy.allow_unidentified,
        );
        if let Err(r) = allowed {
            return Some(self.refuse(&req, r));
        }
        let issuer = crate::identity::issuer(&body.issued_by, req.operator.as_ref());
        let (dispatcher, shared) = (self.dispatcher.clone(), Arc::clone(&self.shared));
        let addressed_to_me = req.addressed_to_me;
        self.answer_later(req.reply_to, async move {
            Some(match dispatcher.issue(body, &issuer).await {
                Ok(reply) => to_json(&reply),
                // Standbys stay silent on the broadcast subject.
                Err(DispatchError::NotActive { .. }) if !addressed_to_me => return None,
                Err(e) => error_reply(&shared, opsfleet_report::error_chain(&e)),
            })
        });
        None
    }

    /// A rollout request: role-checked here, recorded by the active coordinator (standbys stay
    /// silent on the broadcast subject).
    async fn rollout(&self, req: Incoming) -> Option<Vec<u8>> {
        let body: RolloutRequest = match serde_json::from_slice(&req.msg.payload) {
            Ok(body) => body,
            Err(e) => {
                return Some(error_reply(
                    &self.shared,
                    format!("bad rollout request: {e}"),
                ))
            }
        };
        let allowed = guard::check_rollout(
            req.operator.as_ref(),
            body.op,
            self.policy.allow_unidentified,
        );
        if let Err(r) = allowed {
            return Some(self.refuse(&req, r));
        }
        let issuer = crate::identity::issuer(&body.requested_by, req.operator.as_ref());
        // Answered from a task: recording waits for the step to fold back, which must not
        // hold up the other verbs.
        let (dispatcher, shared) = (self.dispatcher.clone(), Arc::clone(&self.shared));
        let addressed_to_me = req.addressed_to_me;
        self.answer_later(req.reply_to, async move {
            Some(
                match super::rollouts::act(&shared, &dispatcher, body, &issuer).await {
                    Ok(reply) => to_json(&reply),
                    Err(e) if e.is_not_active() && !addressed_to_me => return None,
                    Err(e) => error_reply(&shared, opsfleet_report::error_chain(&e)),
                },
            )
        });
        None
    }

    fn rollouts(&self, payload: &[u8]) -> Vec<u8> {
        match parse::<RolloutsRequest>(payload) {
            Ok(req) => match super::rollouts::list(&self.shared, &req) {
                Ok(reply) => to_json(&reply),
                Err(e) => error_reply(&self.shared, e.to_string()),
            },
            Err(e) => error_reply(&self.shared, format!("bad rollouts request: {e}")),
        }
    }

    /// Every group, from this coordinator's fleet.
    async fn groups(&self, payload: &[u8]) -> Vec<u8> {
        let req = match parse::<GroupsRequest>(payload) {
            Ok(req) => req,
            Err(e) => return error_reply(&self.shared, format!("bad groups request: {e}")),
        };
        let responder = (self.shared).responder(behind(&self.shared, &self.events).await);
        let reply = super::groups::groups(&self.shared.fleet(), &req, responder, now_unix_ms());
        to_json(&reply)
    }

    /// A group's failover, by the active coordinator's group driver; answered from a task
    /// once the new active reported its role (standbys stay silent on the broadcast subject).
    fn service_failover(&self, req: Incoming) -> Option<Vec<u8>> {
        let body: ServiceFailoverRequest = match self.request(&req.msg.payload, "service_failover")
        {
            Ok(body) => body,
            Err(reply) => return Some(reply),
        };
        let allowed =
            guard::check_service_failover(req.operator.as_ref(), self.policy.allow_unidentified);
        if let Err(r) = allowed {
            return Some(self.refuse(&req, r));
        }
        if !self.acts_on(&req) {
            return None;
        }
        let claimed = body.requested_by.clone().unwrap_or_default();
        let issuer = crate::identity::issuer(&claimed, req.operator.as_ref());
        let (groups, shared) = (self.groups.clone(), Arc::clone(&self.shared));
        let addressed_to_me = req.addressed_to_me;
        self.answer_later(req.reply_to, async move {
            let asked = groups
                .failover(body.group, body.to, body.drill, issuer.name)
                .await;
            Some(match asked {
                Ok(done) => to_json(&super::groups::failover_reply(done, shared.responder(0))),
                Err(AskError::NotActive) if !addressed_to_me => return None,
                Err(e) => error_reply(&shared, e.to_string()),
            })
        });
        None
    }

    fn commands(&self, req: CommandsRequest) -> Vec<u8> {
        to_json(&CommandsReply {
            responder: self.shared.responder(0),
            commands: command_views(&self.shared.fleet(), &req),
        })
    }
}
