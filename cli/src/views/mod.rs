//! `opsctl status|hosts|backups|incidents|alerts|services`: flags and the requests they make, every page
//! of the answer fetched by `paging::fetch_all`. The tables live in `render.rs`.

pub mod render;
pub mod rollouts;

use std::time::Duration;

use clap::Args;
use opsfleet_proto::api::{
    AlertsReply, AlertsRequest, BackupsReply, BackupsRequest, HostsReply, HostsRequest,
    IncidentsReply, IncidentsRequest, ServicesReply, ServicesRequest, StatusReply, StatusRequest,
};

use crate::client::{Api, ClientError};
use crate::paging::fetch_all;

/// Flags every view shares.
#[derive(Args, Debug, Clone, Default)]
pub struct Common {
    /// Only this host, or hosts matching a glob (`web-*`, `db-0?`).
    #[arg(long)]
    pub host: Option<String>,
    /// Ask this coordinator (by name) instead of whichever answers first.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Show at most this many rows (the coordinators answer in pages; opsctl follows them).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct HostsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only hosts in this liveness state: `up` (reported within 2x its heartbeat interval),
    /// `late` (within 5x), `lost`, `unknown` (never sent a heartbeat).
    #[arg(long, value_parser = ["up", "late", "lost", "unknown"])]
    pub state: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BackupsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only this backup job.
    #[arg(long)]
    pub job: Option<String>,
    /// List every archive kept of each job (newest first), not only the newest: the names
    /// `opsctl restore --archive` takes.
    #[arg(long)]
    pub archives: bool,
}

#[derive(Args, Debug, Clone)]
pub struct IncidentsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only log files with a match this recent (`30m`, `1h`, `2d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
}

#[derive(Args, Debug, Clone)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only alerts in this state (`firing`, `pending`, `resolved`).
    #[arg(long)]
    pub state: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only services in this state: `running`, `failed` (exited, waiting to be restarted),
    /// `stopping`, `stopped`, `starting`.
    #[arg(long, value_parser = ["running", "failed", "stopping", "stopped", "starting"])]
    pub state: Option<String>,
}

/// Examples shown by `opsctl hosts --help`.
pub const HOSTS_HELP: &str = "\
Examples:
  opsctl hosts                          every host, one line each
  opsctl hosts --host 'web-*'           hosts whose name matches a glob
  opsctl hosts --state lost             hosts silent for over 5 heartbeat intervals
  opsctl hosts --coordinator green      ask the standby (it answers too)
  opsctl hosts --output json | jq '.hosts[] | select(.liveness != \"up\") | .host'
  opsctl hosts --output json | jq '.hosts[] | select(.maintenance) | .host'

STATE reads `up (maintenance)` for a drained host (`opsctl drain`; no alert pages for it until
`opsctl undrain`). A lost host's modules show `unknown`: their last report is out of date.";

/// Examples shown by `opsctl backups --help`.
pub const BACKUPS_HELP: &str = "\
Examples:
  opsctl backups                        every job on every host: last success, last failure
  opsctl backups --host 'db-*'          only database hosts
  opsctl backups --job nightly          one job across the fleet
  opsctl backups --host db-01 --job nightly --archives
                                        every archive kept of the job, newest first
  opsctl backups --output json | jq '.backups[] | select(.state == \"failed\")'";

/// Examples shown by `opsctl incidents --help`.
pub const INCIDENTS_HELP: &str = "\
Examples:
  opsctl incidents                      every log file with ERROR/Traceback matches
  opsctl incidents --since 1h           files with a match in the last hour
  opsctl incidents --host web-01 --output json";

/// Examples shown by `opsctl alerts --help`.
pub const ALERTS_HELP: &str = "\
Examples:
  opsctl alerts                         every alert the log knows, with its state
  opsctl alerts --state firing          what is wrong right now
  opsctl alerts --host 'db-*' --output json
  opsctl alerts --state firing -o json | jq -r '.alerts[].key'     the keys `alerts ack` takes
  opsctl --operator alice alerts ack disk_crit/web-01//data         acknowledge one

NOTIFIED counts notifications delivered: sent, or printed by the dry-run route (no routes
configured). DETAIL follows a firing alert's value (disk 91% -> 95%) without a new transition.
SILENCED/ACKED names the active silences holding its notifications (`opsctl silence`) and who
acknowledged it.";

/// Examples shown by `opsctl services --help`.
pub const SERVICES_HELP: &str = "\
Examples:
  opsctl services                       every supervised service on every host
  opsctl services --state failed        services that exited and wait for their restart
  opsctl services --host 'web-*' --output json | jq '.services[] | select(.restarts > 0)'

A service is a `type = \"service\"` module of the agent (docs/modules.md). MANAGER process: the
agent starts it, restarts it after a backoff when it exits, and stops it when the agent stops;
RESTARTS counts restarts since the agent began supervising it. MANAGER systemd or compose: the
agent drives a unit or one compose service it does not own; INSTANCE is the unit or the
container's short id, RESTARTS as systemd or docker counts them. LAST EXIT says how the
previous run ended. HEALTH is the worst of the service's own probes (`-` when it declares
none); VERSION is read from its declared source at each start (compose: the image tag).
`opsctl service start|stop|restart|reload` acts on them.";

/// `opsctl status`: every page of hosts from one coordinator.
pub async fn status(
    api: &Api,
    host: Option<String>,
    coordinator: Option<&str>,
) -> Result<StatusReply, ClientError> {
    let req = StatusRequest {
        host,
        ..Default::default()
    };
    fetch_all(api, coordinator, req, None).await
}

/// `opsctl hosts`.
pub async fn hosts(api: &Api, a: HostsArgs) -> Result<HostsReply, ClientError> {
    let req = HostsRequest {
        host: a.common.host,
        state: a.state,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, coordinator, req, a.common.limit).await
}

/// `opsctl backups`.
pub async fn backups(api: &Api, a: BackupsArgs) -> Result<BackupsReply, ClientError> {
    let req = BackupsRequest {
        host: a.common.host,
        job: a.job,
        archives: a.archives,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, coordinator, req, a.common.limit).await
}

/// `opsctl incidents`; `now_unix_ms` turns `--since` into a time.
pub async fn incidents(
    api: &Api,
    a: IncidentsArgs,
    now_unix_ms: i64,
) -> Result<IncidentsReply, ClientError> {
    let req = IncidentsRequest {
        host: a.common.host,
        since_unix_ms: a
            .since
            .map(|d| now_unix_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, coordinator, req, a.common.limit).await
}

/// `opsctl services`.
pub async fn services(api: &Api, a: ServicesArgs) -> Result<ServicesReply, ClientError> {
    let req = ServicesRequest {
        host: a.common.host,
        state: a.state,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, coordinator, req, a.common.limit).await
}

/// `opsctl alerts`.
pub async fn alerts(api: &Api, a: AlertsArgs) -> Result<AlertsReply, ClientError> {
    let req = AlertsRequest {
        host: a.common.host,
        state: a.state,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, coordinator, req, a.common.limit).await
}
