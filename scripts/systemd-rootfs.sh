#!/usr/bin/env bash
# scripts/systemd-rootfs.sh — a Debian bookworm root filesystem with systemd, built locally with
# debootstrap (from Debian's mirror; no image registry), imported as a Docker image, and cached:
# the tarball under ${XDG_CACHE_HOME:-~/.cache}/opsfleet/, the image in the local engine. Prints
# the image's tag. Concurrent runs wait for one another (flock). tests/tests/systemd_boot.rs
# boots hosts from it; by hand:
#   docker run -d --cap-add SYS_ADMIN --tmpfs /run --tmpfs /run/lock \
#       -v /sys/fs/cgroup:/sys/fs/cgroup:ro "$(scripts/systemd-rootfs.sh)" /sbin/init
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

suite=bookworm
mirror="${OPSFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="systemd,systemd-sysv,dbus,ca-certificates,procps,iproute2"
# The tag changes with what goes into the root filesystem.
key="$(printf '%s %s v1' "$suite" "$packages" | sha256sum | cut -c1-12)"
image="opsfleet-systemd:$suite-$key"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/opsfleet"
tarball="$cache/rootfs-$suite-$key.tar"
mkdir -p "$cache"

exec 9>"$cache/rootfs.lock"
flock 9

if docker image inspect "$image" >/dev/null 2>&1; then
    printf '%s\n' "$image"
    exit 0
fi
if [ ! -s "$tarball" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap (apt-get)"
        if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q debootstrap >&2
        else sudo apt-get install -y -q debootstrap >&2; fi
    fi
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root (run as root or build $tarball once by hand)"
    work="$cache/rootfs-$suite-$key.tmp"
    rm -rf "$work"
    say "building a $suite root filesystem with debootstrap ($packages); cached in $tarball"
    debootstrap --variant=minbase --include="$packages" "$suite" "$work" "$mirror" >&2
    # No machine id: each container gets its own at boot.
    : >"$work/etc/machine-id"
    tar -C "$work" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work"
fi
say "importing $tarball as $image"
docker import --change 'CMD ["/sbin/init"]' "$tarball" "$image" >/dev/null
printf '%s\n' "$image"
