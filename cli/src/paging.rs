//! Following the query API's pages: every paged `ops.api.*` reply carries a `next` cursor, and
//! `fetch_all` is the one loop that follows it (status, hosts, backups, incidents, alerts).

use opsfleet_proto::api::{PageRequest, PagedReply, PagedRequest};
use opsfleet_proto::subjects;

use crate::client::{Api, ClientError};

/// Asks the request's verb (or `verb.<coordinator>`) and follows `next` cursors until every
/// row, or `max_rows`, is in. Later pages go to the coordinator that answered the first, so one
/// coordinator's view is shown. The returned reply's `next` is set only if rows were left.
pub async fn fetch_all<Req>(
    api: &Api,
    coordinator: Option<&str>,
    mut req: Req,
    max_rows: Option<usize>,
) -> Result<Req::Reply, ClientError>
where
    Req: PagedRequest,
{
    let verb = Req::VERB;
    let subject = match coordinator {
        Some(name) => subjects::api_subject_for(verb, name),
        None => verb.to_owned(),
    };
    *req.page_mut() = PageRequest::first(max_rows);
    let mut all: Req::Reply = api.call(subject, &req).await?;
    let same = subjects::api_subject_for(verb, &all.responder().name);
    while let Some(after) = all.next().map(str::to_owned) {
        let left = max_rows.map(|m| m.saturating_sub(all.rows().len()));
        if left == Some(0) {
            break;
        }
        *req.page_mut() = PageRequest {
            limit: left,
            after: Some(after),
        };
        let page: Req::Reply = api.call(same.clone(), &req).await?;
        all.extend(page);
    }
    if let Some(m) = max_rows {
        all.rows_mut().truncate(m);
    }
    Ok(all)
}
