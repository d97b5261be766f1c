//! Smoke test of the benchmark: `opsfleet-bench --quick --json F` runs end to end against a
//! real nats-server and the real binaries, and the JSON holds every figure with a value, a
//! verdict and the machine it ran on. (Build the binaries first: `cargo build --workspace
//! --bins`.)

use std::process::Command;
use std::time::Instant;

/// Every figure the bench publishes (the keys docs/benchmarks.md and the closing note use).
const FIGURES: &[&str] = &[
    "js_publish_rate",
    "raw_consume_rate",
    "ingest_rate",
    "ingest_ratio",
    "persist_latency_p50",
    "persist_latency_p99",
    "fanout_ack_p50",
    "fanout_ack_p99",
    "fanout_ack_max",
    "fanout_completed_p99",
    "fanout_durable_ack_p50",
    "fanout_durable_ack_p99",
    "fanout_nats_idle_cpu",
    "fanout_nats_idle_cpu_per_agent",
    "fanout_nats_round_cpu",
    "fanout_nats_round_cpu_per_agent",
    "fanout_coordinator_round_cpu",
    "failover_crash_median",
    "failover_crash_max",
    "failover_crash_ttl_median",
    "failover_crash_ttl_max",
    "handover_api_median",
    "handover_sigterm_median",
    "agent_idle_rss_mb",
    "agent_idle_cpu_pct",
    "agent_binary_mb",
    "agent_idle_threads",
    "rebuild_seconds",
    "rebuild_fixture_write_rate",
    "rollout_total_s",
    "rollout_wave0_ms",
    "rollout_wave1_ms",
    "rollout_wave2_ms",
    "rollout_wave3_ms",
    "rollout_host_overhead_ms",
    "rollout_coord_cpu_pct",
    "rollout_idle_cpu_pct",
    "rollout_added_cpu_ms_per_host",
    "rollout_noop_all_ms",
    "scale_ingest_catchup_s",
    "scale_rss_kb_per_host",
    "scale_rss_kb_per_host_after_queries",
    "scale_status_page_ms",
    "scale_hosts_lost_page_ms",
    "scale_status_all_s",
    "scale_hosts_lost_all_s",
    "scale_projection_bytes_per_host",
    "scale_snapshot_s",
    "scale_rebuild_s",
    "scale_alert_eval_ms",
];

#[test]
fn quick_run_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_opsfleet-bench"))
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("cannot run opsfleet-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "opsfleet-bench --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!(
        "quick bench took {:.1} s\n{stdout}",
        start.elapsed().as_secs_f64()
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["quick"], true);
    assert!(report["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(report["machine"]["kernel"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
    let figures = report["figures"].as_array().unwrap();
    for &key in FIGURES {
        let f = figures
            .iter()
            .find(|f| f["key"] == key)
            .unwrap_or_else(|| panic!("figure {key} missing from the JSON"));
        let value = f["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("figure {key} has no value: {f}"));
        // The rollout's added CPU is a difference of two measured windows: it may dip below 0.
        let floor = if key == "rollout_added_cpu_ms_per_host" {
            f64::MIN
        } else {
            0.0
        };
        assert!(value.is_finite() && value >= floor, "{key} = {value}");
        let verdict = f["verdict"].as_str().unwrap();
        assert!(
            ["pass", "miss", "baseline"].contains(&verdict),
            "{key}: {verdict}"
        );
        assert_eq!(
            f["target"].is_null(),
            verdict == "baseline",
            "{key}: a figure has a target unless it is a baseline"
        );
        assert!(
            stdout.contains(f["label"].as_str().unwrap()),
            "{key} not in the table"
        );
    }
    assert_eq!(
        figures.len(),
        FIGURES.len(),
        "unexpected figures: {figures:?}"
    );
    assert!(report["figures"][3]["key"] == "ingest_ratio");
}
