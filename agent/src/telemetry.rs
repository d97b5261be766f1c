//! The agent's Prometheus metrics: their names, the recorder (rendered by the `/metrics` route
//! of `http`, no listener of its own) and the small recording helpers the runner and publisher
//! call. Without an installed recorder the helpers are no-ops.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge: events in the outbox not yet acknowledged (set on every scrape).
pub const OUTBOX_DEPTH: &str = "opsfleet_agent_outbox_depth";
/// Histogram (seconds): first publish attempt to PubAck, retries included.
pub const PUBLISH_LATENCY: &str = "opsfleet_agent_publish_latency_seconds";
/// Histogram (seconds) by `module`: one run of a module.
pub const MODULE_RUN: &str = "opsfleet_agent_module_run_seconds";
/// Counter by `module`: failed or timed-out runs.
pub const MODULE_ERRORS: &str = "opsfleet_agent_module_errors_total";
/// Counter: events not written because the outbox was full (or its write failed).
pub const EVENTS_DROPPED: &str = "opsfleet_agent_events_dropped_total";
/// Counter by `outcome`: commands handled (accepted, duplicate, rejected, expired, completed,
/// failed, undecodable).
pub const COMMANDS: &str = "opsfleet_agent_commands_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A recorder with real histograms (buckets) for the latency metrics.
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(PUBLISH_LATENCY.to_owned()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(MODULE_RUN.to_owned()), LATENCY_BUCKETS)
}

/// Installs the process-wide recorder and describes the metrics; call once at start.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    metrics::describe_gauge!(OUTBOX_DEPTH, "Events in the outbox not yet acknowledged");
    metrics::describe_histogram!(
        PUBLISH_LATENCY,
        metrics::Unit::Seconds,
        "Publish to PubAck, retries included"
    );
    metrics::describe_histogram!(
        MODULE_RUN,
        metrics::Unit::Seconds,
        "Duration of one module run"
    );
    metrics::describe_counter!(MODULE_ERRORS, "Module runs that failed or timed out");
    metrics::describe_counter!(EVENTS_DROPPED, "Events dropped because the outbox was full");
    metrics::describe_counter!(COMMANDS, "Commands handled, by outcome");
}

pub fn module_run(module: &str, took: Duration, ok: bool) {
    metrics::histogram!(MODULE_RUN, "module" => module.to_owned()).record(took.as_secs_f64());
    if !ok {
        metrics::counter!(MODULE_ERRORS, "module" => module.to_owned()).increment(1);
    }
}

pub fn publish_latency(took: Duration) {
    metrics::histogram!(PUBLISH_LATENCY).record(took.as_secs_f64());
}

pub fn events_dropped(n: u64) {
    if n > 0 {
        metrics::counter!(EVENTS_DROPPED).increment(n);
    }
}

pub fn command(outcome: &'static str) {
    metrics::counter!(COMMANDS, "outcome" => outcome).increment(1);
}

pub fn outbox_depth(pending: u64) {
    // Gauges are f64; an outbox never holds 2^53 events.
    metrics::gauge!(OUTBOX_DEPTH).set(pending as f64);
}
