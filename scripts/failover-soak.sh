#!/usr/bin/env bash
# scripts/failover-soak.sh — spurious-failover soak: runs the local cluster (deploy/local, fast
# takeover 1 s; scripts/cluster.sh) for SECONDS (default 600) with both coordinators healthy,
# and counts every step-down (lease_lapsed, lease_lost) and every takeover by CAS in their
# logs: each one is a spurious failover. Prints the load average (1 min) sampled every 10 s.
#
#   scripts/failover-soak.sh [SECONDS]
#
# Binaries from OPSFLEET_BIN_DIR (default target/release: build them first with
# `cargo build --release --bin ops-coordinator --bin ops-agent --bin opsctl`). The cluster
# runs in its own directory (OPSFLEET_CLUSTER_DIR, default a temp dir) on OPSFLEET_NATS_PORT
# (default 14222) and is stopped at the end.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OPSFLEET_ROOT"

SECONDS_TO_RUN="${1:-600}"
export OPSFLEET_BIN_DIR="${OPSFLEET_BIN_DIR:-$OPSFLEET_ROOT/target/release}"
export OPSFLEET_CLUSTER_DIR="${OPSFLEET_CLUSTER_DIR:-$(mktemp -d /tmp/opsfleet-soak.XXXXXX)}"
export OPSFLEET_NATS_PORT="${OPSFLEET_NATS_PORT:-14222}"
LOGS="$OPSFLEET_CLUSTER_DIR/logs"

# failovers: step-downs and takeovers logged by both coordinators so far.
failovers() {
    cat "$LOGS"/coordinator-*.log 2>/dev/null |
        grep -cE 'lease_lapsed|lease_lost|taking over' || true
}

say "starting the local cluster in $OPSFLEET_CLUSTER_DIR (binaries: $OPSFLEET_BIN_DIR)"
scripts/cluster.sh up -d >/dev/null
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
sleep 10
before="$(failovers)"
say "soaking for $SECONDS_TO_RUN s (failovers logged before: $before)"
loads=()
end=$((SECONDS + SECONDS_TO_RUN))
while [ "$SECONDS" -lt "$end" ]; do
    loads+=("$(cut -d' ' -f1 /proc/loadavg)")
    sleep 10
done
after="$(failovers)"
sorted="$(printf '%s\n' "${loads[@]}" | sort -n)"
median="$(printf '%s\n' "$sorted" | sed -n "$(((${#loads[@]} + 1) / 2))p")"
say "spurious failovers in $SECONDS_TO_RUN s: $((after - before))"
info "load average (1 min) over ${#loads[@]} samples: min $(head -1 <<<"$sorted"), median $median, max $(tail -1 <<<"$sorted")"
info "nproc $(nproc)"
grep -hE 'lease_lapsed|lease_lost|taking over' "$LOGS"/coordinator-*.log || true
