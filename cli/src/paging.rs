//! Following the query API's pages: every paged `ops.api.*` reply carries a `next` cursor, and
//! `fetch_all` is the one loop that follows it (status, hosts, backups, incidents, alerts).

use opsfleet_proto::api::{
    AlertsReply, AlertsRequest, BackupsReply, BackupsRequest, HostsReply, HostsRequest,
    IncidentsReply, IncidentsRequest, Responder, StatusReply, StatusRequest,
};
use opsfleet_proto::subjects;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{Api, ClientError};

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

paged!(StatusRequest, StatusReply, hosts);
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
