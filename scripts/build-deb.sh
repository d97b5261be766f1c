#!/usr/bin/env bash
# scripts/build-deb.sh — builds the Debian package opsfleet_<version>_<arch>.deb with dpkg-deb
# (no extra tool): ops-agent, ops-coordinator and opsctl in /usr/bin; the units in
# /lib/systemd/system (not enabled: a host needs its secrets first); the system users
# (sysusers.d) and directories (tmpfiles.d), applied by postinst; /etc/opsfleet/agent.toml, the
# template every host can use (a conffile) and coordinator.toml.example; the docs; and
# `opsfleet-join`, which installs a host's secrets with the right owners and modes, pins its
# name and starts its unit:
#
#   scripts/build-deb.sh [--bin-dir target/dist] [--out DIR] [--fast]
#   apt-get install ./opsfleet_0.1.0_amd64.deb
#   opsfleet-join --role agent --name app-03 --secrets ./secrets
#
# --bin-dir defaults to target/dist, the `dist` profile that ships (Cargo.toml: release + fat
# LTO, one codegen unit, stripped; built here if missing); --fast compresses with gzip -1
# (tests); prints the package's path.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OPSFLEET_ROOT"

bin_dir="" out="$OPSFLEET_ROOT/target/deb" compress=(-Zxz)
while [ "$#" -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="${2:-}"; shift 2 ;;
        --out) out="${2:-}"; shift 2 ;;
        --fast) compress=(-Zgzip -z1); shift ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "build-deb.sh: unknown argument $1 (see --help)" ;;
    esac
done
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is needed (Debian's dpkg package)"
if [ -z "$bin_dir" ]; then
    bin_dir="$OPSFLEET_ROOT/target/dist"
    if [ ! -x "$bin_dir/ops-agent" ]; then
        say "building the shipped binaries (profile dist; the agent in dist-agent, copied beside them)"
        cargo build --profile dist -p opsfleet-coordinator -p opsfleet-cli --bins
        cargo build --profile dist-agent -p opsfleet-agent --bins
        install -m 0755 "$OPSFLEET_ROOT/target/dist-agent/ops-agent" "$bin_dir/ops-agent"
    fi
fi
for b in ops-agent ops-coordinator opsctl; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing"
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/opsfleet_${version}_${arch}"
share="$root/usr/share/opsfleet"

install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/sbin" "$root/lib/systemd/system" \
    "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" "$root/etc/opsfleet" \
    "$root/usr/share/doc/opsfleet" "$share/scripts" "$share/deploy/systemd" "$share/deploy/nats" \
    "$share/docs"
for b in ops-agent ops-coordinator opsctl; do
    install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"
done
# The units run the package's binaries; nats-server comes from elsewhere (opsfleet-join
# --role nats --nats-bin FILE puts it in /usr/local/bin).
for u in ops-agent ops-coordinator; do
    sed 's#/usr/local/bin/ops-#/usr/bin/ops-#g' "deploy/systemd/$u.service" >"$root/lib/systemd/system/$u.service"
done
install -m 0644 deploy/systemd/nats-server.service "$root/lib/systemd/system/nats-server.service"
chmod 0644 "$root"/lib/systemd/system/*.service
install -m 0644 deploy/systemd/opsfleet.sysusers "$root/usr/lib/sysusers.d/opsfleet.conf"
install -m 0644 deploy/systemd/opsfleet.tmpfiles "$root/usr/lib/tmpfiles.d/opsfleet.conf"
install -m 0600 deploy/systemd/agent.toml "$root/etc/opsfleet/agent.toml"
install -m 0644 deploy/systemd/coordinator.toml "$root/etc/opsfleet/coordinator.toml.example"
for doc in agent-health-control.md deployment.md security.md; do
    install -m 0644 "docs/$doc" "$root/usr/share/doc/opsfleet/$doc"
    install -m 0644 "docs/$doc" "$share/docs/$doc"
done
# What opsfleet-join (scripts/install-host.sh in packaged mode) reads.
install -m 0644 scripts/install-host.sh scripts/lib.sh "$share/scripts/"
install -m 0644 deploy/systemd/*.service deploy/systemd/*.toml deploy/systemd/opsfleet.* "$share/deploy/systemd/"
install -m 0644 deploy/nats/cluster.conf deploy/nats/auth.conf "$share/deploy/nats/"
cat >"$root/usr/sbin/opsfleet-join" <<'EOF'
#!/bin/sh
# opsfleet-join: install this host's secrets, config and unit for one opsfleet role.
# See `opsfleet-join --help`; the packaged form of scripts/install-host.sh.
OPSFLEET_PACKAGED=1 exec bash /usr/share/opsfleet/scripts/install-host.sh "$@"
EOF
chmod 0755 "$root/usr/sbin/opsfleet-join"

cat >"$root/DEBIAN/control" <<EOF
Package: opsfleet
Version: $version
Architecture: $arch
Maintainer: opsfleet maintainers <maintainers@opsfleet.invalid>
Section: admin
Priority: optional
Depends: libc6 (>= 2.36), systemd
Description: ops agent cluster: host agents and coordinators over NATS
 ops-agent publishes health, disk, log-error and backup events onto NATS and runs control
 commands; ops-coordinator keeps the event log and elects an active/standby pair; opsctl is
 the operators' client. Units are installed but not enabled: run opsfleet-join with the
 host's secrets to enable one.
EOF
echo /etc/opsfleet/agent.toml >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    systemd-sysusers /usr/lib/sysusers.d/opsfleet.conf || true
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/opsfleet.conf || true
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop ops-agent.service ops-coordinator.service 2>/dev/null || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/opsfleet_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
printf '%s\n' "$deb"
