//! Paging of the `ops.api.*` views: the page part of every paged request, and the two traits
//! that let one client loop and one server handler serve every paged view.

use serde::{Deserialize, Serialize};

use super::{
    AlertView, AlertsReply, AlertsRequest, BackupView, BackupsReply, BackupsRequest, HostSummary,
    HostView, HostsReply, HostsRequest, IncidentView, IncidentsReply, IncidentsRequest, Responder,
    ServiceConfigView, ServiceConfigsReply, ServiceConfigsRequest, ServiceView, ServicesReply,
    ServicesRequest, SilenceView, SilencesReply, SilencesRequest, StatusReply, StatusRequest,
};
use super::{HOSTS_PAGE_DEFAULT, HOSTS_PAGE_MAX, ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX};
use super::{STATUS_PAGE_DEFAULT, STATUS_PAGE_MAX};

/// Which page of a view a request asks for; flattened into every paged request, so its fields
/// sit beside the view's own filters on the wire (`{"host":"web-*","limit":50}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// At most this many rows (the view's default when absent, never above its maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Rows after this cursor: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl PageRequest {
    /// The first page of at most `limit` rows.
    pub fn first(limit: Option<usize>) -> Self {
        PageRequest { limit, after: None }
    }
}

/// A request for one page of a view.
pub trait PagedRequest: Serialize {
    /// The reply it gets.
    type Reply: PagedReply;
    /// The verb it is asked on (`ops.api.hosts`, ...; the constants of `subjects`, which a
    /// test checks: `subjects` builds on `api`, not the other way round).
    const VERB: &'static str;
    /// What it is called in errors (`bad hosts request: ...`).
    const WHAT: &'static str;
    /// Page size when the request names none.
    const DEFAULT_LIMIT: usize;
    /// Largest page a coordinator answers.
    const MAX_LIMIT: usize;

    fn page(&self) -> &PageRequest;
    fn page_mut(&mut self) -> &mut PageRequest;

    /// The page size to answer with: the requested one, or the default, within `1..=MAX`.
    fn limit(&self) -> usize {
        self.page()
            .limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// One page of a view: who answered, the rows, and the cursor of the next page.
pub trait PagedReply: Serialize + for<'de> Deserialize<'de> {
    /// One row of the view.
    type Row;

    fn responder(&self) -> &Responder;
    fn rows(&self) -> &[Self::Row];
    fn rows_mut(&mut self) -> &mut Vec<Self::Row>;
    /// Set when more rows follow: pass it as `after` to get the next page.
    fn next(&self) -> Option<&str>;
    fn set_next(&mut self, next: Option<String>);

    /// Appends `later`'s rows and takes its cursor.
    fn extend(&mut self, mut later: Self)
    where
        Self: Sized,
    {
        let next = later.next().map(str::to_owned);
        self.rows_mut().append(later.rows_mut());
        self.set_next(next);
    }
}

macro_rules! paged {
    ($req:ty => $rep:ty, $rows:ident: $row:ty, $verb:expr, $what:literal, $default:expr, $max:expr) => {
        impl PagedRequest for $req {
            type Reply = $rep;
            const VERB: &'static str = $verb;
            const WHAT: &'static str = $what;
            const DEFAULT_LIMIT: usize = $default;
            const MAX_LIMIT: usize = $max;
            fn page(&self) -> &PageRequest {
                &self.page
            }
            fn page_mut(&mut self) -> &mut PageRequest {
                &mut self.page
            }
        }
        impl PagedReply for $rep {
            type Row = $row;
            fn responder(&self) -> &Responder {
                &self.responder
            }
            fn rows(&self) -> &[$row] {
                &self.$rows
            }
            fn rows_mut(&mut self) -> &mut Vec<$row> {
                &mut self.$rows
            }
            fn next(&self) -> Option<&str> {
                self.next.as_deref()
            }
            fn set_next(&mut self, next: Option<String>) {
                self.next = next;
            }
        }
    };
}

paged!(StatusRequest => StatusReply, hosts: HostView, "ops.api.status", "status",
    STATUS_PAGE_DEFAULT, STATUS_PAGE_MAX);
paged!(HostsRequest => HostsReply, hosts: HostSummary, "ops.api.hosts", "hosts",
    HOSTS_PAGE_DEFAULT, HOSTS_PAGE_MAX);
paged!(BackupsRequest => BackupsReply, backups: BackupView, "ops.api.backups", "backups",
    ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX);
paged!(IncidentsRequest => IncidentsReply, incidents: IncidentView, "ops.api.incidents",
    "incidents", ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX);
paged!(AlertsRequest => AlertsReply, alerts: AlertView, "ops.api.alerts", "alerts",
    ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX);
paged!(ServicesRequest => ServicesReply, services: ServiceView, "ops.api.services",
    "services", ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX);
paged!(ServiceConfigsRequest => ServiceConfigsReply, snapshots: ServiceConfigView,
    "ops.api.service_configs", "service configs", ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX);
paged!(SilencesRequest => SilencesReply, silences: SilenceView, "ops.api.silences",
    "silences", ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_part_sits_beside_the_filters_on_the_wire() {
        let req = HostsRequest {
            host: Some("web-*".into()),
            state: None,
            page: PageRequest {
                limit: Some(50),
                after: Some("web-07".into()),
            },
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"host":"web-*","limit":50,"after":"web-07"}"#);
        assert_eq!(serde_json::from_str::<HostsRequest>(&json).unwrap(), req);
        let empty: AlertsRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, AlertsRequest::default());
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
    }

    #[test]
    fn verbs_are_the_subjects_constants() {
        use crate::subjects;
        assert_eq!(StatusRequest::VERB, subjects::API_STATUS);
        assert_eq!(HostsRequest::VERB, subjects::API_HOSTS);
        assert_eq!(BackupsRequest::VERB, subjects::API_BACKUPS);
        assert_eq!(IncidentsRequest::VERB, subjects::API_INCIDENTS);
        assert_eq!(AlertsRequest::VERB, subjects::API_ALERTS);
        assert_eq!(ServicesRequest::VERB, subjects::API_SERVICES);
        assert_eq!(ServiceConfigsRequest::VERB, subjects::API_SERVICE_CONFIGS);
        assert_eq!(SilencesRequest::VERB, subjects::API_SILENCES);
    }

    #[test]
    fn limits_fall_back_to_the_default_and_stay_within_the_maximum() {
        let mut req = BackupsRequest::default();
        assert_eq!(req.limit(), ROWS_PAGE_DEFAULT);
        req.page.limit = Some(0);
        assert_eq!(req.limit(), 1);
        req.page.limit = Some(usize::MAX);
        assert_eq!(req.limit(), ROWS_PAGE_MAX);
        let mut status = StatusRequest::default();
        status.page.limit = Some(10_000);
        assert_eq!(status.limit(), STATUS_PAGE_MAX);
    }

    #[test]
    fn a_bad_limit_is_still_an_error() {
        assert!(serde_json::from_str::<IncidentsRequest>(r#"{"limit":"many"}"#).is_err());
        assert!(serde_json::from_str::<IncidentsRequest>(r#"{"limit":-1}"#).is_err());
    }
}
