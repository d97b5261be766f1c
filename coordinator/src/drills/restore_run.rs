//! The `restore_test` drill, as the active coordinator runs it: one `restore_test` command per
//! host the drill's `hosts`/`labels` select (resolved as for any fleet command, so a host
//! matched without a backup module is skipped and named), issued through the dispatcher as
//! `<coordinator>-drill-<drill>` in the operator role — fenced by the term's epoch, recorded
//! in the ledger, checked by each agent against its own policy — then each host's
//! `restore_tested` event with `requested_by` = its command id read from the log as it is
//! folded (or its command failing, rejected or expired), until every host has a result or the
//! run's time is out. The judgement is `restore`'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opsfleet_proto::api::CommandRequestJson;
use opsfleet_proto::envelope::EventEnvelope;
use opsfleet_proto::pb::event::Body;
use opsfleet_report::error_chain;
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::DrillConfig;
use super::restore::{outcome, verdict, Tested};
use crate::dispatch::Dispatcher;
use crate::identity::Issuer;
use crate::state::Shared;
use crate::store::EventStore;

/// How often the log and the ledger are looked at.
const POLL: Duration = Duration::from_millis(250);

/// The `restore_tested` events among the log entries from stream seq `from` whose
/// `requested_by` is one of `asked` (command id → host) and whose host is that command's:
/// added to `found` by command id. Returns the stream seq to read from next.
fn scan(
    store: &dyn EventStore,
    from: u64,
    asked: &HashMap<String, String>,
    found: &mut HashMap<String, Tested>,
) -> u64 {
    let mut next = from;
    for entry in store.log_from(from) {
        let (seq, bytes) = match entry {
            Ok(e) => e,
            Err(e) => {
                warn!(from, error = %error_chain(&e), "cannot read the log for restore tests");
                break;
            }
        };
        next = seq + 1;
        let Ok(ev) = EventEnvelope::decode(&bytes) else {
            continue;
        };
        let Body::RestoreTested(t) = &ev.body else {
            continue;
        };
        if asked.get(&t.requested_by) == Some(&ev.host) {
            found.insert(
                t.requested_by.clone(),
                Tested {
                    passed: t.passed,
                    source: t.source.clone(),
                    files: t.files,
                    duration_ms: t.duration_ms,
                    reason: t.reason.clone(),
                },
            );
        }
    }
    next
}

/// Runs the drill: what it found, or why it failed. `within`: how long the hosts have (the
/// commands' deadline too); `still`: whether the term that runs it still holds.
pub async fn run(
    shared: &Arc<Shared>,
    dispatcher: &Dispatcher,
    drill: &DrillConfig,
    within: Duration,
    still: impl Fn() -> bool,
) -> Result<String, String> {
    let issuer = Issuer {
        name: format!("{}-drill-{}", shared.name, drill.name),
        role: Some(opsfleet_proto::api::Role::Operator),
    };
    let deadline = within.min(dispatcher.max_deadline());
    // Every event a command of this run can cause comes after the commands: after this seq.
    let mut cursor = shared.applied() + 1;
    let req = CommandRequestJson {
        action: "restore_test".to_owned(),
        module: drill.module.clone(),
        job: drill.job.clone(),
        hosts: drill.hosts.clone(),
        labels: drill.labels.clone(),
        deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
        issued_by: issuer.name.clone(),
        ..Default::default()
    };
    let reply = (dispatcher.issue(req, &issuer).await)
        .map_err(|e| format!("cannot issue the restore tests: {}", error_chain(&e)))?;
    let asked: Vec<(String, String)> = (reply.commands.iter())
        .map(|c| (c.host.clone(), c.command_id.clone()))
        .collect();
    let skipped: Vec<(String, String)> = (reply.skipped.iter())
        .map(|s| (s.host.clone(), s.reason.clone()))
        .collect();
    info!(drill = %drill.name, hosts = asked.len(), skipped = skipped.len(), epoch = reply.epoch, "restore tests issued");
    let by_id: Arc<HashMap<String, String>> = Arc::new(
        (asked.iter())
            .map(|(host, id)| (id.clone(), host.clone()))
            .collect(),
    );
    let mut found: HashMap<String, Tested> = HashMap::new();
    let until = Instant::now() + within;
    loop {
        let store = Arc::clone(&shared.store);
        let ids = Arc::clone(&by_id);
        let mut batch = HashMap::new();
        let read = tokio::task::spawn_blocking(move || {
            let next = scan(store.as_ref(), cursor, &ids, &mut batch);
            (next, batch)
        })
        .await;
        match read {
            Ok((next, batch)) => {
                cursor = next;
                found.extend(batch);
            }
            Err(e) => warn!(error = %e, "the log reader for restore tests failed; trying again"),
        }
        let outcomes: Vec<_> = {
            let fleet = shared.fleet();
            (asked.iter())
                .map(|(host, id)| {
                    let command = fleet.command(id).map(|c| (c.state, c.detail.as_str()));
                    (host.clone(), outcome(found.get(id), command))
                })
                .collect()
        };
        if let Some(v) = verdict(&outcomes, &skipped, Instant::now() >= until) {
            return v;
        }
        if !still() {
            return Err("the coordinator's term ended during the restore tests".to_owned());
        }
        tokio::time::sleep(POLL).await;
    }
}
