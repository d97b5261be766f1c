//! Alertmanager re-sends: Alertmanager resolves an alert on its own once its `endsAt` passes,
//! so while an alert fires the active coordinator posts it again every `resend_interval`
//! (one POST per route per interval, at most [`alertmanager::MAX_BATCH`] alerts each). Only
//! alerts whose current firing transition was already handled on the route are re-sent, so
//! a route's matching (and anything that kept a notification back) holds for re-sends too.
//! Re-sends are not recorded as events: they repeat what the log already says.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::alertmanager::{self, LastPosts};
use super::transport::attempt;
use super::{Notification, Notifier, RouteConfig};

/// The re-send state of one Alertmanager route.
pub(super) struct Refresh {
    url: String,
    interval: Duration,
    timeout: Duration,
    last: Mutex<LastPosts>,
}

impl Refresh {
    pub fn new(url: &str, r: &RouteConfig) -> Refresh {
        Refresh {
            url: url.to_owned(),
            interval: r.resend_interval,
            timeout: r.timeout,
            last: Mutex::new(LastPosts::new()),
        }
    }
}

/// A firing alert as the delivery loop sees it: its notification and the routes its current
/// transition was handled on.
#[derive(Debug, Clone)]
pub struct Firing {
    pub notification: Notification,
    pub routes: Vec<String>,
}

impl Notifier {
    /// Whether any route re-sends firing alerts (an Alertmanager route).
    pub fn re_sends(&self) -> bool {
        self.routes.iter().any(|r| r.refresh.is_some())
    }

    /// Posts again the firing alerts that each Alertmanager route is due to re-send (call it
    /// often, with every firing alert, while active). Returns how many alerts were posted.
    /// A failed post is logged and tried again an interval later. Each post is made only while
    /// `still()` holds (the sender acts in its term): a deposed active must not bring back an
    /// alert the new one resolved.
    pub async fn refresh(&self, firing: &[Firing], still: &(dyn Fn() -> bool + Sync)) -> usize {
        let mut posted = 0;
        for route in &self.routes {
            if !still() {
                break;
            }
            let Some(refresh) = &route.refresh else {
                continue;
            };
            let mine: Vec<&Notification> = firing
                .iter()
                .filter(|f| f.routes.contains(&route.name))
                .map(|f| &f.notification)
                .collect();
            let ids: HashSet<&str> = mine.iter().map(|n| n.alert_id.as_str()).collect();
            let due = {
                let mut last = match refresh.last.lock() {
                    Ok(l) => l,
                    Err(poisoned) => poisoned.into_inner(),
                };
                alertmanager::due(&mut last, &ids, Instant::now(), refresh.interval)
            };
            if due.is_empty() {
                continue;
            }
            let due: Vec<&Notification> = mine
                .into_iter()
                .filter(|n| due.binary_search(&n.alert_id).is_ok())
                .collect();
            for batch in due.chunks(alertmanager::MAX_BATCH) {
                if !still() {
                    return posted;
                }
                let body = alertmanager::body(
                    batch,
                    opsfleet_proto::time::now_unix_ms(),
                    refresh.interval,
                );
                let result = attempt(&self.client, refresh.timeout, &refresh.url, &body, None);
                match result.await {
                    Ok(()) => {
                        posted += batch.len();
                        tracing::debug!(route = %route.name, alerts = batch.len(), "firing alerts re-sent");
                    }
                    Err(e) => {
                        tracing::warn!(route = %route.name, alerts = batch.len(), reason = %e.reason, "cannot re-send firing alerts");
                    }
                }
            }
        }
        posted
    }
}
