//! Calling the coordinators' query API over NATS request/reply.

use std::time::Duration;

use futures::StreamExt;
use opsfleet_bus::{BusError, ConnectMode, NatsConfig};
use opsfleet_proto::api::{
    ApiError, CommandReply, CommandRequest, CommandsReply, CommandsRequest, FailoverReply,
    FailoverRequest, Role, StatusReply, StatusRequest,
};
use opsfleet_proto::subjects;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("no coordinator answers on {subject}; is one running and connected to the same NATS?")]
    NoResponders { subject: String },
    #[error("no answer on {subject} within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    #[error("request on {subject} failed")]
    Request {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("coordinator {responder} refused the request: {error}")]
    Refused { responder: String, error: String },
    #[error("cannot gather replies on {subject}: {reason}")]
    Gather { subject: String, reason: String },
    #[error("cannot understand the reply on {subject}")]
    BadReply {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A connection used for API calls.
pub struct Api {
    client: async_nats::Client,
    timeout: Duration,
    operator: Option<String>,
}

impl Api {
    pub async fn connect(cfg: &NatsConfig) -> Result<Self, ClientError> {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
        let client =
            opsfleet_bus::connect(cfg, &format!("opsctl {user}"), ConnectMode::FailFast).await?;
        Ok(Api {
            client,
            timeout: cfg.request_timeout,
            operator: None,
        })
    }

    /// Sends commands as `operator` on `ops.api.as.<operator>.command`, where NATS permissions
    /// vouch for the name and the coordinator records it as `issued_by`.
    pub fn with_operator(mut self, operator: Option<String>) -> Self {
        self.operator = operator;
        self
    }

    /// The operator name given with `with_operator`.
    pub fn operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    /// Sends `req` as JSON on `subject` and decodes the first reply.
    pub async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        subject: String,
        req: &Req,
    ) -> Result<Rep, ClientError> {
        let payload = serde_json::to_vec(req).map_err(|source| ClientError::BadReply {
            subject: subject.clone(),
            source,
        })?;
        let reply = self
            .client
            .request(subject.clone(), payload.into())
            .await
            .map_err(|source| match source.kind() {
                async_nats::RequestErrorKind::NoResponders => ClientError::NoResponders {
                    subject: subject.clone(),
                },
                async_nats::RequestErrorKind::TimedOut => ClientError::Timeout {
                    subject: subject.clone(),
                    timeout: self.timeout,
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

    /// Asks the active coordinator to release its lease.
    pub async fn failover(&self, req: &FailoverRequest) -> Result<FailoverReply, ClientError> {
        self.call(subjects::API_FAILOVER.to_owned(), req).await
    }

    /// Asks the active coordinator to issue a command.
    pub async fn command(&self, req: &CommandRequest) -> Result<CommandReply, ClientError> {
        let subject = match &self.operator {
            Some(op) => subjects::api_command_as(
                op,
                Role::required_for_action(&req.action).unwrap_or(Role::Operator),
            ),
            None => subjects::API_COMMAND.to_owned(),
        };
        self.call(subject, req).await
    }

    /// The command ledger, from whichever coordinator answers first.
    pub async fn commands(&self, req: &CommandsRequest) -> Result<CommandsReply, ClientError> {
        self.call(subjects::API_COMMANDS.to_owned(), req).await
    }

    /// `ops.api.status`, or `ops.api.status.<coordinator>` when one is named. Follows the
    /// reply's `next` cursor (asking the coordinator that answered first) until every host is
    /// in, unless `req.limit` asks for one page only.
    pub async fn status(
        &self,
        req: &StatusRequest,
        coordinator: Option<&str>,
    ) -> Result<StatusReply, ClientError> {
        let subject = match coordinator {
            Some(name) => subjects::api_subject_for(subjects::API_STATUS, name),
            None => subjects::API_STATUS.to_owned(),
        };
        let mut all: StatusReply = self.call(subject, req).await?;
        if req.limit.is_some() {
            return Ok(all);
        }
        let same = subjects::api_subject_for(subjects::API_STATUS, &all.responder.name);
        while let Some(after) = all.next.take() {
            let page_req = StatusRequest {
                after: Some(after),
                ..req.clone()
            };
            let page: StatusReply = self.call(same.clone(), &page_req).await?;
            all.hosts.extend(page.hosts);
            all.next = page.next;
        }
        Ok(all)
    }
}
