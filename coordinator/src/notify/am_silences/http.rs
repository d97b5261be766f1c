//! The HTTP edge of silence mirroring for one Alertmanager route: when a pass is due (the
//! opsfleet silences changed, or `resend_interval` passed), list `GET /api/v2/silences`, plan
//! (pure, `super::plan`), then `POST /api/v2/silences` / `DELETE /api/v2/silence/{id}` while
//! the caller is still the active coordinator. A create Alertmanager refuses (4xx) is logged
//! and skipped; any other failure ends the pass, tried again an interval later (or when the
//! silences change).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{found, plan, Action, Found, MAX_PER_PASS};
use crate::notify::matching::Match;
use crate::projection::Silences;

/// A mirroring request that failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{what}: request failed")]
    Request {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{what}: unexpected answer")]
    Answer {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// When the last pass ran, and over which silences.
#[derive(Default)]
struct LastPass {
    at: Option<Instant>,
    fingerprint: u64,
}

/// Silence mirroring of one Alertmanager route.
pub struct MirrorState {
    base: String,
    interval: Duration,
    timeout: Duration,
    last: Mutex<LastPass>,
}

/// What a pass looks at: every silence's id and bounds (not the clock).
fn fingerprint(silences: &Silences) -> u64 {
    let mut h = DefaultHasher::new();
    for s in silences.iter() {
        (&s.id, s.starts_unix_ms, s.end_unix_ms()).hash(&mut h);
    }
    h.finish()
}

impl MirrorState {
    pub fn new(base: &str, interval: Duration, timeout: Duration) -> MirrorState {
        MirrorState {
            base: base.trim_end_matches('/').to_owned(),
            interval,
            timeout,
            last: Mutex::new(LastPass::default()),
        }
    }

    /// Runs a pass if one is due; `still` says whether this coordinator may still act.
    /// Returns how many actions were carried out.
    pub async fn reconcile(
        &self,
        client: &reqwest::Client,
        route: &str,
        matcher: &Match,
        silences: &Silences,
        now_unix_ms: i64,
        still: &(dyn Fn() -> bool + Sync),
    ) -> Result<usize, MirrorError> {
        let print = fingerprint(silences);
        {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = last.at.is_some_and(|at| at.elapsed() < self.interval);
            if fresh && last.fingerprint == print {
                return Ok(0);
            }
        }
        let result = self.pass(client, route, matcher, silences, now_unix_ms, still);
        let result = result.await;
        // A failed pass waits an interval too (unless the silences change): no hammering. A
        // full pass that did all it planned runs again at once for the rest.
        let left_work =
            matches!(result, Ok((done, planned)) if planned >= MAX_PER_PASS && done == planned);
        if !left_work {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            *last = LastPass {
                at: Some(Instant::now()),
                fingerprint: print,
            };
        }
        result.map(|(done, _)| done)
    }

    /// Lists, plans and acts: (actions carried out, actions planned). A create Alertmanager
    /// refuses (4xx) is logged and the pass goes on; any other failure ends it.
    async fn pass(
        &self,
        client: &reqwest::Client,
        route: &str,
        matcher: &Match,
        silences: &Silences,
        now_unix_ms: i64,
        still: &(dyn Fn() -> bool + Sync),
    ) -> Result<(usize, usize), MirrorError> {
        let mirrors = self.list(client).await?;
        let actions = plan(silences, matcher, &mirrors, now_unix_ms, MAX_PER_PASS);
        let mut done = 0;
        for action in &actions {
            if !still() {
                break;
            }
            match action {
                Action::Create { silence_id, body } => {
                    let url = format!("{}/api/v2/silences", self.base);
                    let req = client.post(url).json(body);
                    match self.call(req, "create a mirror silence").await {
                        Ok(answer) => {
                            let am_id = answer
                                .get("silenceID")
                                .and_then(Value::as_str)
                                .unwrap_or("");
                            tracing::info!(route, silence = %silence_id, am_id, "silence mirrored into Alertmanager");
                        }
                        Err(MirrorError::Status { status, body, .. })
                            if (400..500).contains(&status) && status != 429 =>
                        {
                            tracing::warn!(route, silence = %silence_id, status, answer = %body, "Alertmanager refused a mirror silence");
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Action::Expire { am_id, silence_id } => {
                    let url = format!("{}/api/v2/silence/{am_id}", self.base);
                    self.call(client.delete(url), "expire a mirror silence")
                        .await?;
                    tracing::info!(route, silence = %silence_id, am_id, "mirror silence expired in Alertmanager");
                }
            }
            done += 1;
        }
        Ok((done, actions.len()))
    }

    /// The mirrors Alertmanager holds (silences with the marker).
    async fn list(&self, client: &reqwest::Client) -> Result<Vec<Found>, MirrorError> {
        let url = format!("{}/api/v2/silences", self.base);
        let all = self.call(client.get(url), "list silences").await?;
        let all = all.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(all.iter().filter_map(found).collect())
    }

    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        what: &'static str,
    ) -> Result<Value, MirrorError> {
        let resp = (req.timeout(self.timeout).send().await)
            .map_err(|source| MirrorError::Request { what, source })?;
        let status = resp.status();
        let text = (resp.text().await).map_err(|source| MirrorError::Request { what, source })?;
        if !status.is_success() {
            return Err(MirrorError::Status {
                what,
                status: status.as_u16(),
                body: super::cut(&text, 200),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|source| MirrorError::Answer { what, source })
    }
}

impl crate::notify::Notifier {
    /// Whether any route mirrors silences into Alertmanager.
    pub fn mirrors_silences(&self) -> bool {
        self.routes.iter().any(|r| r.mirror.is_some())
    }

    /// One reconciliation pass per mirroring route, where due (call it often while active
    /// and caught up; `still` says whether this coordinator may still act). Failures are
    /// logged and tried again next time. Returns how many actions were carried out.
    pub async fn mirror_silences(
        &self,
        silences: &Silences,
        now_unix_ms: i64,
        still: &(dyn Fn() -> bool + Sync),
    ) -> usize {
        let mut done = 0;
        for route in &self.routes {
            let Some(mirror) = &route.mirror else {
                continue;
            };
            let pass = mirror.reconcile(
                &self.client,
                &route.name,
                &route.matcher,
                silences,
                now_unix_ms,
                still,
            );
            match pass.await {
                Ok(n) => done += n,
                Err(e) => {
                    let e = opsfleet_report::ErrorChain(&e);
                    tracing::warn!(route = %route.name, error = %e, "cannot mirror silences into Alertmanager; will retry");
                }
            }
        }
        done
    }
}
