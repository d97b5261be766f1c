//! `ops.api.services`: the state of every supervised service per host and service, paged by
//! a cursor; `ops.api.service_configs`: the history of their declared config files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PageRequest, ProbeStatus, Responder, ServiceRunState};

/// Request for `ops.api.services`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesRequest {
    /// Host name or glob (`web-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only services in this state: `running`, `failed`, `stopping`, `stopped`, `starting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Only this service (exact name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only hosts whose heartbeat labels include all of these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Which page: at most `limit` rows after the cursor `after`.
    #[serde(flatten)]
    pub page: PageRequest,
}

/// Reply to `ops.api.services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesReply {
    pub responder: Responder,
    /// One row per (host, service), ascending.
    pub services: Vec<ServiceView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One supervised service on one host, as its latest `service` event told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub host: String,
    pub service: String,
    /// `process`, `systemd` or `compose`.
    pub manager: String,
    pub state: ServiceRunState,
    /// The child's pid while running or stopping, else 0.
    pub pid: u32,
    /// When it entered `state` (agent clock).
    pub since_unix_ms: i64,
    /// Restarts since the agent began supervising it.
    pub restarts: u64,
    /// How the last run ended, empty before the first exit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exit_detail: String,
    /// What the manager calls the running instance: the unit (systemd), the container's short
    /// id (compose); empty for `process`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// The version running (compose: the image tag); empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The worst of its own health probes; absent when it declares none (or does not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ProbeStatus>,
}

/// Request for `ops.api.service_configs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfigsRequest {
    /// Host name or glob (`web-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only this file (its declared path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(flatten)]
    pub page: PageRequest,
}

/// Reply to `ops.api.service_configs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfigsReply {
    pub responder: Responder,
    /// One row per snapshot, by (host, service, file), oldest snapshot first.
    pub snapshots: Vec<ServiceConfigView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One snapshot of a service's config file: its fingerprint and why it changed (contents
/// never leave the host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfigView {
    pub host: String,
    pub service: String,
    pub file: String,
    /// sha256 (hex); empty when the file was missing.
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_fingerprint: String,
    pub size: u64,
    /// `start`, `drift`, `applied`, `rolled_back` or `restored`.
    pub cause: String,
    /// The command that made the change; empty for `start` and `drift`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command_id: String,
    /// Agent clock of the snapshot.
    pub at_unix_ms: i64,
}
