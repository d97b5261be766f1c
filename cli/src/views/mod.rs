//! `opsctl hosts|backups|incidents|alerts`: flags, paging through the coordinators' answers,
//! and printing them as tables or JSON. The tables live in `render.rs`.

pub mod render;

use std::time::Duration;

use clap::Args;
use opsfleet_proto::api::{
    AlertsReply, AlertsRequest, BackupsReply, BackupsRequest, HostsReply, HostsRequest,
    IncidentsReply, IncidentsRequest, Responder, StatusReply, StatusRequest,
};
use opsfleet_proto::subjects;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{Api, ClientError};

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

/// Examples shown by `opsctl hosts --help`.
pub const HOSTS_HELP: &str = "\
Examples:
  opsctl hosts                          every host, one line each
  opsctl hosts --host 'web-*'           hosts whose name matches a glob
  opsctl hosts --state lost             hosts silent for over 5 heartbeat intervals
  opsctl hosts --coordinator green      ask the standby (it answers too)
  opsctl hosts --output json | jq '.hosts[] | select(.liveness != \"up\") | .host'";

/// Examples shown by `opsctl backups --help`.
pub const BACKUPS_HELP: &str = "\
Examples:
  opsctl backups                        every job on every host: last success, last failure
  opsctl backups --host 'db-*'          only database hosts
  opsctl backups --job nightly          one job across the fleet
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
  opsctl alerts --host 'db-*' --output json";

/// A paged request: opsctl sets the cursor and page size.
pub trait PageRequest: Serialize {
    fn set_page(&mut self, after: Option<String>, limit: Option<usize>);
}

/// A paged reply: who answered, the rows, and the cursor of the next page.
pub trait PageReply: DeserializeOwned {
    fn responder(&self) -> &Responder;
    fn next(&self) -> Option<String>;
    fn rows(&self) -> usize;
    /// Appends `later`'s rows and takes its cursor.
    fn extend(&mut self, later: Self);
    /// Keeps the first `n` rows.
    fn truncate(&mut self, n: usize);
}

macro_rules! paged {
    ($req:ty, $rep:ty, $rows:ident) => {
        impl PageRequest for $req {
            fn set_page(&mut self, after: Option<String>, limit: Option<usize>) {
                self.after = after;
                self.limit = limit;
            }
        }
        impl PageReply for $rep {
            fn responder(&self) -> &Responder {
                &self.responder
            }
            fn next(&self) -> Option<String> {
                self.next.clone()
            }
            fn rows(&self) -> usize {
                self.$rows.len()
            }
            fn extend(&mut self, later: Self) {
                self.$rows.extend(later.$rows);
                self.next = later.next;
            }
            fn truncate(&mut self, n: usize) {
                if self.$rows.len() > n {
                    self.$rows.truncate(n);
                }
            }
        }
    };
}

paged!(HostsRequest, HostsReply, hosts);
paged!(BackupsRequest, BackupsReply, backups);
paged!(IncidentsRequest, IncidentsReply, incidents);
paged!(AlertsRequest, AlertsReply, alerts);

/// Asks `verb` (or `verb.<coordinator>`) and follows `next` cursors until every row, or
/// `max_rows`, is in. Later pages go to the coordinator that answered the first, so one
/// coordinator's view is shown. The returned reply's `next` is set only if rows were left.
pub async fn fetch_all<Req: PageRequest, Rep: PageReply>(
    api: &Api,
    verb: &str,
    coordinator: Option<&str>,
    mut req: Req,
    max_rows: Option<usize>,
) -> Result<Rep, ClientError> {
    let subject = match coordinator {
        Some(name) => subjects::api_subject_for(verb, name),
        None => verb.to_owned(),
    };
    req.set_page(None, max_rows);
    let mut all: Rep = api.call(subject, &req).await?;
    let same = subjects::api_subject_for(verb, &all.responder().name);
    while let Some(after) = all.next() {
        let left = max_rows.map(|m| m.saturating_sub(all.rows()));
        if left == Some(0) {
            break;
        }
        req.set_page(Some(after), left);
        let page: Rep = api.call(same.clone(), &req).await?;
        all.extend(page);
    }
    if let Some(m) = max_rows {
        all.truncate(m);
    }
    Ok(all)
}

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
    // `Api::status` follows the pages, so every caller (drill, leader) sees every host.
    api.status(&req, coordinator).await
}

/// `opsctl hosts`.
pub async fn hosts(api: &Api, a: HostsArgs) -> Result<HostsReply, ClientError> {
    let req = HostsRequest {
        host: a.common.host,
        state: a.state,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, subjects::API_HOSTS, coordinator, req, a.common.limit).await
}

/// `opsctl backups`.
pub async fn backups(api: &Api, a: BackupsArgs) -> Result<BackupsReply, ClientError> {
    let req = BackupsRequest {
        host: a.common.host,
        job: a.job,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, subjects::API_BACKUPS, coordinator, req, a.common.limit).await
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
    fetch_all(
        api,
        subjects::API_INCIDENTS,
        coordinator,
        req,
        a.common.limit,
    )
    .await
}

/// `opsctl alerts`.
pub async fn alerts(api: &Api, a: AlertsArgs) -> Result<AlertsReply, ClientError> {
    let req = AlertsRequest {
        host: a.common.host,
        state: a.state,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, subjects::API_ALERTS, coordinator, req, a.common.limit).await
}
