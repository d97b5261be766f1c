//! Calling the coordinators' query API over NATS request/reply: identified subjects for
//! actions (`ops.api.as.<operator>.<role>.*`, the role the action needs), and clear errors when
//! the NATS server refuses a publish (a permissions violation names the subject; without
//! watching for it a refused request would only time out) or a coordinator refuses a role.

use std::time::Duration;

use futures::StreamExt;
use opsfleet_bus::{BusError, ConnectMode, NatsConfig};
use opsfleet_proto::api::{
    AlertAckReply, AlertAckRequest, SilenceReply, SilenceRequest, SILENCE_ROLE,
};
use opsfleet_proto::api::{
    ApiError, CommandReply, CommandRequest, CommandsReply, CommandsRequest, FailoverReply,
    FailoverRequest, Role, RolloutReply, RolloutRequest, RolloutsReply, RolloutsRequest,
    ServiceFailoverReply, ServiceFailoverRequest, StatusReply,
};
use opsfleet_proto::subjects;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("no coordinator answers on {subject}; is one running and connected to the same NATS?")]
    NoResponders { subject: String },
    #[error(
        "no answer on {subject} within {timeout:?} (commands, failovers and rollouts are answered \
         only by an active coordinator: `opsctl leader` shows which coordinators answer and \
         which is active)"
    )]
    Timeout { subject: String, timeout: Duration },
    #[error("request on {subject} failed")]
    Request {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("coordinator {responder} refused the request: {error}")]
    Refused {
        responder: String,
        error: String,
        /// The role the request needed, when a role was the reason.
        needs_role: Option<Role>,
    },
    #[error("the NATS server refused to let {identity} publish on {subject}: {why}")]
    NotPermitted {
        subject: String,
        /// `operator alice`, or `no --operator` for an unidentified connection.
        identity: String,
        why: String,
    },
    #[error("cannot gather replies on {subject}: {reason}")]
    Gather { subject: String, reason: String },
    #[error("cannot understand the reply on {subject}")]
    BadReply {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What a request is for, to explain a refusal: the action and the role it was sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acting {
    pub what: String,
    pub role: Role,
}

/// Does this server error report that publishing on `subject` was refused? (nats-server:
/// `Permissions Violation for Publish to "<subject>"`.)
pub fn is_publish_violation(error: &str, subject: &str) -> bool {
    let lower = error.to_lowercase();
    lower.contains("permissions violation")
        && lower.contains("publish")
        && error.contains(&format!("\"{subject}\""))
}

/// Why the server refused a publish, for the error message (pure).
pub fn not_permitted_reason(acting: Option<&Acting>, identity: &str) -> String {
    match acting {
        Some(a) => format!(
            "{} needs role {}, and these NATS credentials do not grant {identity} that role \
             (roles: viewer < operator < admin, each granted by the identity's NATS \
             permissions; see `opsctl --help` on --operator)",
            a.what, a.role
        ),
        None => format!("{identity} has no permission for this subject"),
    }
}

/// A connection used for API calls.
pub struct Api {
    client: async_nats::Client,
    timeout: Duration,
    operator: Option<String>,
    role: Option<Role>,
    /// The server's asynchronous errors (permission violations among them).
    server_errors: broadcast::Sender<String>,
}

impl Api {
    pub async fn connect(cfg: &NatsConfig) -> Result<Self, ClientError> {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
        let (server_errors, _) = broadcast::channel(64);
        let sink = server_errors.clone();
        let client = opsfleet_bus::connect_with(
            cfg,
            &format!("opsctl {user}"),
            ConnectMode::FailFast,
            |opts| {
                opts.event_callback(move |event| {
                    let sink = sink.clone();
                    async move {
                        if let async_nats::Event::ServerError(e) = event {
                            // Nobody listening is fine: no request is waiting.
                            let _ = sink.send(e.to_string());
                        }
                    }
                })
            },
        )
        .await?;
        Ok(Api {
            client,
            timeout: cfg.request_timeout,
            operator: None,
            role: None,
            server_errors,
        })
    }

    /// Sends actions as `operator` on `ops.api.as.<operator>.<role>.*`, where NATS permissions
    /// vouch for the name and the role, and the coordinator records both.
    pub fn with_operator(mut self, operator: Option<String>) -> Self {
        self.operator = operator;
        self
    }

    /// Acts in this role instead of the least one each action needs.
    pub fn with_role(mut self, role: Option<Role>) -> Self {
        self.role = role;
        self
    }

    /// The operator name given with `with_operator`.
    pub fn operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    fn identity(&self) -> String {
        match &self.operator {
            Some(op) => format!("operator {op}"),
            None => "this connection (no --operator)".to_owned(),
        }
    }

    /// The subject of an action needing `needs`, and what it acts as: identified with the
    /// operator (in `--role`, else the role needed), or plain without one.
    fn action_subject(
        &self,
        what: &str,
        needs: Role,
        identified: impl Fn(&str, Role) -> String,
        plain: &str,
    ) -> (String, Option<Acting>) {
        match &self.operator {
            Some(op) => {
                let role = self.role.unwrap_or(needs);
                (
                    identified(op, role),
                    Some(Acting {
                        what: what.to_owned(),
                        role,
                    }),
                )
            }
            None => (plain.to_owned(), None),
        }
    }

    /// Sends `req` as JSON on `subject` and decodes the first reply.
    pub async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        subject: String,
        req: &Req,
    ) -> Result<Rep, ClientError> {
        self.call_acting(subject, req, None).await
    }

    /// `call`, explaining a refused publish with what the request acts as.
    async fn call_acting<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        subject: String,
        req: &Req,
        acting: Option<Acting>,
    ) -> Result<Rep, ClientError> {
        self.call_within(subject, req, acting, self.timeout).await
    }

    /// `call_acting`, waiting up to `timeout` for the answer (an action answered only once
    /// done, like a service failover).
    async fn call_within<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        subject: String,
        req: &Req,
        acting: Option<Acting>,
        timeout: Duration,
    ) -> Result<Rep, ClientError> {
        let payload = serde_json::to_vec(req).map_err(|source| ClientError::BadReply {
            subject: subject.clone(),
            source,
        })?;
        let mut errors = self.server_errors.subscribe();
        let refused = async {
            loop {
                match errors.recv().await {
                    Ok(e) if is_publish_violation(&e, &subject) => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    // The connection is gone; the request itself reports that.
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let request = self.client.send_request(
            subject.clone(),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(timeout)),
        );
        let reply = tokio::select! {
            reply = request => reply,
            () = refused => {
                let identity = self.identity();
                return Err(ClientError::NotPermitted {
                    why: not_permitted_reason(acting.as_ref(), &identity),
                    subject: subject.clone(),
                    identity,
                });
            }
        };
        let reply = reply.map_err(|source| match source.kind() {
            async_nats::RequestErrorKind::NoResponders => ClientError::NoResponders {
                subject: subject.clone(),
            },
            async_nats::RequestErrorKind::TimedOut => ClientError::Timeout {
                subject: subject.clone(),
                timeout,
            },
            _ => ClientError::Request {
                subject: subject.clone(),
                source,
            },
        })?;
        if let Ok(err) = serde_json::from_slice::<ApiError>(&reply.payload) {
            return Err(ClientError::Refused {
                responder: err.responder,
                error: err.error,
                needs_role: err.needs_role,
            });
        }
        serde_json::from_slice(&reply.payload)
            .map_err(|source| ClientError::BadReply { subject, source })
    }

    /// Every coordinator's status reply that arrives within `window`.
    pub async fn status_all(&self, window: Duration) -> Result<Vec<StatusReply>, ClientError> {
        let subject = subjects::API_STATUS.to_owned();
        let inbox = self.client.new_inbox();
        let mut sub =
            self.client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| ClientError::Gather {
                    subject: subject.clone(),
                    reason: e.to_string(),
                })?;
        self.client
            .publish_with_reply(subject.clone(), inbox, b"{}".to_vec().into())
            .await
            .map_err(|e| ClientError::Gather {
                subject: subject.clone(),
                reason: e.to_string(),
            })?;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
            if let Ok(reply) = serde_json::from_slice::<StatusReply>(&msg.payload) {
                out.push(reply);
            }
        }
        Ok(out)
    }

    /// Asks the active coordinator to release its lease, as the operator in
    /// `Role::FAILOVER` (`ops.api.as.<operator>.<role>.failover`).
    pub async fn failover(&self, req: &FailoverRequest) -> Result<FailoverReply, ClientError> {
        let (subject, acting) = self.action_subject(
            "failover",
            Role::FAILOVER,
            subjects::api_failover_as,
            subjects::API_FAILOVER,
        );
        self.call_acting(subject, req, acting).await
    }

    /// Asks the active coordinator to issue a command, as the operator in the role the action
    /// needs (`ops.api.as.<operator>.<role>.command`).
    pub async fn command(&self, req: &CommandRequest) -> Result<CommandReply, ClientError> {
        let action = req.action.name();
        let needs = action.required_role().unwrap_or(Role::Admin);
        let (subject, acting) = self.action_subject(
            action.as_str(),
            needs,
            subjects::api_command_as,
            subjects::API_COMMAND,
        );
        self.call_acting(subject, req, acting).await
    }

    /// Asks the active coordinator to start or act on a rollout, as the operator in the role
    /// the op needs (`ops.api.as.<operator>.<role>.rollout`).
    pub async fn rollout(&self, req: &RolloutRequest) -> Result<RolloutReply, ClientError> {
        let (subject, acting) = self.action_subject(
            &format!("rollout {}", req.op.as_str()),
            req.op.required_role(),
            subjects::api_rollout_as,
            subjects::API_ROLLOUT,
        );
        self.call_acting(subject, req, acting).await
    }

    /// Rollouts, newest first, from whichever coordinator answers first.
    pub async fn rollouts(&self, req: &RolloutsRequest) -> Result<RolloutsReply, ClientError> {
        self.call(subjects::API_ROLLOUTS.to_owned(), req).await
    }

    /// Asks the active coordinator to fail a service group over, as the operator in the
    /// operator role (`ops.api.as.<operator>.<role>.service_failover`); answered once the new
    /// active reported its role, so it waits up to `wait`.
    pub async fn service_failover(
        &self,
        req: &ServiceFailoverRequest,
        wait: Duration,
    ) -> Result<ServiceFailoverReply, ClientError> {
        let (subject, acting) = self.action_subject(
            "service failover",
            Role::Operator,
            subjects::api_service_failover_as,
            subjects::API_SERVICE_FAILOVER,
        );
        self.call_within(subject, req, acting, wait).await
    }

    /// Asks the active coordinator to run a drill now, as the operator in the operator role
    /// (`ops.api.as.<operator>.<role>.drill`); answered once the run ended, so it waits up
    /// to `wait`.
    pub async fn drill_run(
        &self,
        req: &opsfleet_proto::api::DrillRunRequest,
        wait: Duration,
    ) -> Result<opsfleet_proto::api::DrillRunReply, ClientError> {
        let (subject, acting) = self.action_subject(
            "drill run",
            Role::Operator,
            subjects::api_drill_as,
            subjects::API_DRILL,
        );
        self.call_within(subject, req, acting, wait).await
    }

    /// Asks the active coordinator to add or expire a silence, as the operator in the operator
    /// role (`ops.api.as.<operator>.<role>.silence`).
    pub async fn silence(&self, req: &SilenceRequest) -> Result<SilenceReply, ClientError> {
        let (subject, acting) = self.action_subject(
            req.what(),
            SILENCE_ROLE,
            subjects::api_silence_as,
            subjects::API_SILENCE,
        );
        self.call_acting(subject, req, acting).await
    }

    /// Asks the active coordinator to acknowledge an alert, as the operator in the operator
    /// role (`ops.api.as.<operator>.<role>.alert_ack`).
    pub async fn alert_ack(&self, req: &AlertAckRequest) -> Result<AlertAckReply, ClientError> {
        let (subject, acting) = self.action_subject(
            "alerts ack",
            SILENCE_ROLE,
            subjects::api_alert_ack_as,
            subjects::API_ALERT_ACK,
        );
        self.call_acting(subject, req, acting).await
    }

    /// The command ledger, from whichever coordinator answers first.
    pub async fn commands(&self, req: &CommandsRequest) -> Result<CommandsReply, ClientError> {
        self.call(subjects::API_COMMANDS.to_owned(), req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_points_at_opsctl_leader() {
        let e = ClientError::Timeout {
            subject: "ops.api.command".into(),
            timeout: Duration::from_secs(10),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("no answer on ops.api.command within 10s"),
            "{text}"
        );
        assert!(text.contains("`opsctl leader`"), "{text}");
    }

    #[test]
    fn violations_are_matched_by_exact_subject() {
        let e = "nats: Permissions Violation for Publish to \"ops.api.as.alice.admin.command\"";
        assert!(is_publish_violation(e, "ops.api.as.alice.admin.command"));
        assert!(!is_publish_violation(e, "ops.api.as.alice.admin"));
        assert!(!is_publish_violation(
            e,
            "ops.api.as.alice.admin.command.blue"
        ));
        let sub = "nats: Permissions Violation for Subscription to \"ops.api.status\"";
        assert!(!is_publish_violation(sub, "ops.api.status"));
    }

    #[test]
    fn a_refusal_names_the_role_and_the_identity() {
        let why = not_permitted_reason(
            Some(&Acting {
                what: "config_apply".into(),
                role: Role::Admin,
            }),
            "operator alice",
        );
        assert!(
            why.starts_with(
                "config_apply needs role admin, and these NATS credentials do not grant \
                 operator alice that role"
            ),
            "{why}"
        );
        let why = not_permitted_reason(None, "operator vera");
        assert_eq!(why, "operator vera has no permission for this subject");
    }
}
