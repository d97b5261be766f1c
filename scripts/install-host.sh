#!/usr/bin/env bash
# scripts/install-host.sh — installs one opsfleet role on this host (run as root on a systemd
# host, from a checkout or an unpacked release): binaries, unit, system users (sysusers.d),
# directories (tmpfiles.d), config, this identity's secrets with the owners and modes the unit
# needs, and the docs its Documentation= points at; then enables and starts the unit.
#
#   scripts/install-host.sh --role agent --name app-03 --secrets ./secrets [--nats-url tls://nats-1:4222,...]
#   scripts/install-host.sh --role coordinator --name blue --secrets ./secrets
#   scripts/install-host.sh --role nats --name nats-1 --secrets ./secrets [--nats-bin /path/nats-server]
#
# --secrets is a directory written by scripts/dev-certs.sh (or your own PKI in the same layout);
# only this role's files are copied from it: never a CA key or another identity's seed.
# --bin-dir (default target/dist, the profile that ships; else target/release, else
# target/debug) holds ops-agent, ops-coordinator and opsctl. --config FILE installs FILE instead of the example config rendered for --name.
# --no-start installs without enabling the unit. Re-running replaces what it installed.
# Packaged (the .deb of scripts/build-deb.sh runs this as `opsfleet-join`): binaries, units,
# users, directories and docs come from the package; only the role's secrets, config and the
# start are done here (and, for --role nats, the nats-server binary given with --nats-bin).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

role="" name="" secrets="" bin_dir="" config="" nats_bin="" nats_urls="" start=1
while [ "$#" -gt 0 ]; do
    case "$1" in
        --role) role="${2:-}"; shift 2 ;;
        --name) name="${2:-}"; shift 2 ;;
        --secrets) secrets="${2:-}"; shift 2 ;;
        --bin-dir) bin_dir="${2:-}"; shift 2 ;;
        --config) config="${2:-}"; shift 2 ;;
        --nats-bin) nats_bin="${2:-}"; shift 2 ;;
        --nats-url) nats_urls="${2:-}"; shift 2 ;;
        --no-start) start=0; shift ;;
        -h|--help) usage 0 ;;
        *) printf 'install-host.sh: unknown argument %s\n\n' "$1" >&2; usage 2 ;;
    esac
done
problems=()
case "$role" in agent|coordinator|nats) ;; *) problems+=("--role must be agent, coordinator or nats") ;; esac
[[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || problems+=("--name must be a host, coordinator or node name ([a-z0-9-])")
[ -n "$secrets" ] && [ -d "$secrets" ] || problems+=("--secrets must be a directory written by scripts/dev-certs.sh")
[ -z "$config" ] || [ -f "$config" ] || problems+=("--config $config does not exist")
[ "$(id -u)" -eq 0 ] || problems+=("run as root (it installs units, users and secrets)")
if [ "${#problems[@]}" -gt 0 ]; then
    for p in "${problems[@]}"; do printf 'install-host.sh: %s\n' "$p" >&2; done
    exit 2
fi
packaged="${OPSFLEET_PACKAGED:-0}"
if [ "$packaged" = 1 ]; then
    bin_dir=/usr/bin
elif [ -z "$bin_dir" ]; then
    bin_dir="$OPSFLEET_ROOT/target/dist"
    [ -x "$bin_dir/ops-agent" ] || bin_dir="$OPSFLEET_ROOT/target/release"
    [ -x "$bin_dir/ops-agent" ] || bin_dir="$OPSFLEET_ROOT/target/debug"
fi
deploy="$OPSFLEET_ROOT/deploy"
tls="$secrets/tls"

need() { [ -e "$1" ] || die "$1 is missing (from --secrets or --bin-dir)"; }
# put SRC DEST MODE OWNER:GROUP
put() { need "$1"; install -D -m "$3" -o "${4%%:*}" -g "${4##*:}" "$1" "$2"; info "$2 ($3 $4)"; }
# ship SRC DEST MODE OWNER:GROUP: what the package installs itself (skipped when packaged).
ship() { if [ "$packaged" = 1 ]; then info "$2 (from the package)"; else put "$@"; fi; }
dir() { install -d -m "$2" -o "${3%%:*}" -g "${3##*:}" "$1"; }

say "installing the opsfleet $role $name"
# System users and directories first: the secrets below are owned by their groups.
ship "$deploy/systemd/opsfleet.sysusers" /usr/lib/sysusers.d/opsfleet.conf 0644 root:root
ship "$deploy/systemd/opsfleet.tmpfiles" /usr/lib/tmpfiles.d/opsfleet.conf 0644 root:root
systemd-sysusers /usr/lib/sysusers.d/opsfleet.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/opsfleet.conf
for doc in agent-health-control.md deployment.md security.md; do
    ship "$OPSFLEET_ROOT/docs/$doc" "/usr/share/doc/opsfleet/$doc" 0644 root:root
done
ship "$bin_dir/opsctl" /usr/local/bin/opsctl 0755 root:root

# rendered EXAMPLE FROM TO...: the example config with names replaced (pairs of FROM TO).
rendered() {
    local file="$1"; shift
    local text; text="$(cat "$file")"
    while [ "$#" -ge 2 ]; do text="${text//$1/$2}"; shift 2; done
    if [ -n "$nats_urls" ]; then
        local list; list="$(printf '"%s", ' ${nats_urls//,/ })"
        text="$(printf '%s\n' "$text" | sed "s|^urls = \[.*\]|urls = [${list%, }]|")"
    fi
    printf '%s\n' "$text"
}

case "$role" in
agent)
    unit=ops-agent.service
    ship "$bin_dir/ops-agent" /usr/local/bin/ops-agent 0755 root:root
    dir /etc/opsfleet 0755 root:root
    dir /etc/opsfleet/secrets 0700 root:root
    put "$tls/ca.pem" /etc/opsfleet/secrets/tls/ca.pem 0644 root:root
    put "$tls/agent.pem" /etc/opsfleet/secrets/tls/agent.pem 0644 root:root
    put "$tls/agent-key.pem" /etc/opsfleet/secrets/tls/agent-key.pem 0600 root:root
    put "$secrets/nkeys/$name.nk" "/etc/opsfleet/secrets/nkeys/$name.nk" 0600 root:root
    if [ -n "$config" ]; then src="$config"; else
        src="$(mktemp)"; trap 'rm -f "$src"' EXIT
        rendered "$deploy/systemd/agent.toml" 'host_from = "hostname"' "host = \"$name\"" >"$src"
    fi
    put "$src" /etc/opsfleet/agent.toml 0600 root:root
    "$bin_dir/ops-agent" --config /etc/opsfleet/agent.toml --check-config
    ;;
coordinator)
    unit=ops-coordinator.service
    ship "$bin_dir/ops-coordinator" /usr/local/bin/ops-coordinator 0755 root:root
    dir /etc/opsfleet 0755 root:root
    # Public: 0644. Private: readable by the service's group only (the unit's User=opsfleet).
    dir /etc/opsfleet/secrets 0750 root:opsfleet
    dir /etc/opsfleet/secrets/tls 0750 root:opsfleet
    dir /etc/opsfleet/secrets/nkeys 0750 root:opsfleet
    put "$tls/ca.pem" /etc/opsfleet/secrets/tls/ca.pem 0644 root:root
    put "$tls/coordinator.pem" /etc/opsfleet/secrets/tls/coordinator.pem 0644 root:root
    put "$tls/coordinator-key.pem" /etc/opsfleet/secrets/tls/coordinator-key.pem 0640 root:opsfleet
    put "$secrets/nkeys/$name.nk" /etc/opsfleet/secrets/nkeys/coordinator.nk 0640 root:opsfleet
    if [ -n "$config" ]; then src="$config"; else
        src="$(mktemp)"; trap 'rm -f "$src"' EXIT
        rendered "$deploy/systemd/coordinator.toml" '"blue"' "\"$name\"" _INBOX.blue "_INBOX.$name" >"$src"
    fi
    put "$src" /etc/opsfleet/coordinator.toml 0644 root:opsfleet
    ;;
nats)
    unit=nats-server.service
    if [ -z "$nats_bin" ]; then
        ensure_nats_server
        # The binary itself, not a pyenv shim (the unit runs /usr/local/bin/nats-server).
        for c in "$(pyenv which nats-server 2>/dev/null || true)" "$(command -v nats-server)"; do
            if [ -n "$c" ] && [ "$(head -c 4 "$c" | od -An -c | tr -d ' ')" = '177ELF' ]; then
                nats_bin="$c"; break
            fi
        done
        [ -n "$nats_bin" ] || die "cannot find the nats-server binary; pass --nats-bin"
    fi
    nats_real="$(readlink -f "$nats_bin")"
    put "$nats_real" /usr/local/bin/nats-server 0755 root:root
    dir /etc/nats 0755 root:root
    dir /etc/nats/secrets 0750 root:nats
    dir /etc/nats/secrets/tls 0750 root:nats
    put "$deploy/nats/cluster.conf" /etc/nats/nats.conf 0644 root:root
    put "$deploy/nats/auth.conf" /etc/nats/auth.conf 0644 root:root
    for f in tls/ca.pem tls/client-ca.pem tls/server.pem tls/route.pem; do
        put "$secrets/$f" "/etc/nats/secrets/$f" 0644 root:nats
    done
    for f in tls/server-key.pem tls/route-key.pem route.conf nkeys.conf; do
        put "$secrets/$f" "/etc/nats/secrets/$f" 0640 root:nats
    done
    printf 'SERVER_NAME=%s\n' "$name" >/etc/default/nats-server
    chmod 0644 /etc/default/nats-server
    SERVER_NAME="$name" /usr/local/bin/nats-server -t -c /etc/nats/nats.conf
    ;;
esac
ship "$deploy/systemd/$unit" "/etc/systemd/system/$unit" 0644 root:root

if [ "$start" -eq 1 ]; then
    systemctl daemon-reload
    systemctl enable --now "$unit"
    say "$unit enabled and started; check: systemctl status $unit"
else
    say "installed; start with: systemctl daemon-reload && systemctl enable --now $unit"
fi
