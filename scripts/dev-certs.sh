#!/usr/bin/env bash
# scripts/dev-certs.sh — generates the development secrets of an opsfleet deployment: a CA, TLS
# certificates (NATS servers, HTTP endpoints, one client certificate per role) and one NATS nkey
# per identity (agents by host name, coordinators by name, operators by user name, programs that
# read events by name: `reader`, docs/events-api.md).
#
#   scripts/dev-certs.sh [OUT_DIR] [--hosts "web-01 web-02 db-01"] [--coordinators "blue green"]
#                        [--operators "vera alice bob carol"] [--programs "reader"]
#                        [--force | --rotate]
#
# OUT_DIR defaults to deploy/secrets (ignored by git). It receives two separate chains:
#   tls/ca.pem, tls/ca-key.pem           the SERVER CA: signs server and route certificates
#                                        only; clients trust it (keep ca-key.pem private)
#   tls/client-ca.pem, client-ca-key.pem the CLIENT CA: signs client certificates only; the
#                                        servers verify clients against it, never routes
#   tls/server.pem, tls/server-key.pem   NATS servers and HTTP endpoints (serverAuth only);
#                                        SANs: localhost, 127.0.0.1, nats, nats-1..3, *.nats
#                                        (Kubernetes), every host and coordinator
#   tls/route.pem, tls/route-key.pem     cluster routes between NATS nodes (serverAuth +
#                                        clientAuth, from the server CA)
#   tls/{agent,coordinator,operator}.pem + -key.pem   client certificates (clientAuth only,
#                                        from the client CA): unusable as server or route
#   route.conf, route-k8s.conf           ROUTE_PASSWORD and ROUTES, the route URLs that carry
#                                        it (nats-1..3; Kubernetes pods nats-0..2.nats); the
#                                        cluster configs include one of them
#   nkeys/<name>.nk                      the nkey seed of one identity (mode 0600)
#   nkeys.conf                           NKEY_<NAME> = "U..." for every identity; the shipped
#                                        NATS configs include it (public keys only)
# Existing files are kept unless --force is given, so re-running adds only new identities.
# --force replaces EVERYTHING (new CAs, new nkeys): a new deployment, never a rotation.
# --rotate issues new leaf certificates (server, route, agent, coordinator, operator) from the
#   EXISTING CAs and keeps the CAs, nkeys and route password; the old leaves move to
#   tls/previous-<UTC time>/. Old and new leaves verify against the same CA, so a rolling
#   restart (or `nats-server --signal reload`) never splits the cluster
#   (docs/runbooks/certificate-rotation.md).
# Certificates are valid from one hour before they are made (hosts whose clock runs behind still
# accept them) for 825 days.
# Needs openssl (>= 1.1.1) and python3 (standard library only, for the nkey encoding).
set -euo pipefail

out="deploy/secrets"
hosts="web-01 web-02 db-01"
coordinators="blue green"
operators="vera alice bob carol"
programs="reader"
force=0
rotate=0
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) hosts="$2"; shift 2 ;;
        --coordinators) coordinators="$2"; shift 2 ;;
        --operators) operators="$2"; shift 2 ;;
        --programs) programs="$2"; shift 2 ;;
        --force) force=1; shift ;;
        --rotate) rotate=1; shift ;;
        -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
        -*) echo "dev-certs.sh: unknown option $1" >&2; exit 2 ;;
        *) out="$1"; shift ;;
    esac
done

command -v openssl >/dev/null || { echo "dev-certs.sh: openssl is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "dev-certs.sh: python3 is required" >&2; exit 1; }
umask 077
mkdir -p "$out/tls" "$out/nkeys"
tls="$out/tls"

[ "$force" = 1 ] && [ "$rotate" = 1 ] && { echo "dev-certs.sh: --force and --rotate exclude each other" >&2; exit 2; }
fresh() { [ "$force" = 1 ] || [ ! -s "$1" ]; }

if [ "$rotate" = 1 ]; then
    for f in ca.pem ca-key.pem client-ca.pem client-ca-key.pem; do
        [ -s "$tls/$f" ] || { echo "dev-certs.sh: --rotate needs the existing CA: $tls/$f is missing" >&2; exit 1; }
    done
    previous="$tls/previous-$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$previous"
    for leaf in server route agent coordinator operator; do
        [ -s "$tls/$leaf.pem" ] && mv "$tls/$leaf.pem" "$tls/$leaf-key.pem" "$previous/"
    done
    echo "dev-certs.sh: rotating the leaf certificates; the old ones are in $previous" >&2
fi

# Every certificate is valid from an hour ago, as public CAs backdate theirs: a host whose
# clock runs up to an hour behind still accepts a certificate issued a moment ago (a fresh
# certificate is otherwise "not yet valid" there, and the host cannot connect at all).
read -r not_before not_after < <(python3 -c '
import datetime as d
now = d.datetime.now(d.timezone.utc)
f = "%Y%m%d%H%M%SZ"
print((now - d.timedelta(hours=1)).strftime(f), (now + d.timedelta(days=825)).strftime(f))')

# sign CSR OUT EXTFILE KEY [CA]: a certificate for CSR, signed by CA (tls/CA.pem and
# tls/CA-key.pem), or self-signed with KEY when CA is empty. `openssl ca` is the one tool of
# OpenSSL 1.1.1..3.x that takes a start date; its database lives in a temporary directory.
sign() {
    local csr="$1" pem="$2" ext="$3" key="$4" ca="${5:-}" db
    db="$(mktemp -d)"
    : >"$db/index.txt"
    openssl rand -hex 16 >"$db/serial"
    printf '%s\n' "[ca]" "default_ca = dev" "[dev]" "database = $db/index.txt" \
        "new_certs_dir = $db" "serial = $db/serial" "default_md = sha256" "policy = names" \
        "unique_subject = no" "[names]" "organizationName = optional" \
        "commonName = supplied" >"$db/ca.cnf"
    local by=(-selfsign -keyfile "$key")
    [ -n "$ca" ] && by=(-cert "$tls/$ca.pem" -keyfile "$tls/$ca-key.pem")
    openssl ca -batch -notext -config "$db/ca.cnf" "${by[@]}" -in "$csr" -out "$pem" \
        -startdate "$not_before" -enddate "$not_after" -extfile "$ext" 2>"$db/err" || {
        cat "$db/err" >&2
        rm -rf "$db"
        echo "dev-certs.sh: cannot sign $pem" >&2
        exit 1
    }
    rm -rf "$db"
}

# make_ca NAME CN: a self-signed CA (tls/NAME.pem, tls/NAME-key.pem).
make_ca() {
    fresh "$tls/$1.pem" || return 0
    local ext
    ext="$(mktemp)"
    printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" \
        "keyUsage=critical,keyCertSign,cRLSign" "subjectKeyIdentifier=hash" >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/O=opsfleet dev/CN=$2" -keyout "$tls/$1-key.pem" -out "$tls/$1.csr" 2>/dev/null
    sign "$tls/$1.csr" "$tls/$1.pem" "$ext" "$tls/$1-key.pem"
    rm -f "$tls/$1.csr" "$ext"
}
make_ca ca "opsfleet dev server CA"
make_ca client-ca "opsfleet dev client CA"

# issue NAME CN EXTENDED_KEY_USAGE [SAN] [CA]: a certificate signed by CA (default: ca).
issue() {
    local name="$1" cn="$2" eku="$3" san="${4:-}" ca="${5:-ca}" ext
    fresh "$tls/$name.pem" || return 0
    ext="$(mktemp)"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -n "$san" ] && echo "subjectAltName=$san"
    } >"$ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/O=opsfleet dev/CN=$cn" -keyout "$tls/$name-key.pem" -out "$tls/$name.csr" 2>/dev/null
    sign "$tls/$name.csr" "$tls/$name.pem" "$ext" "" "$ca"
    rm -f "$tls/$name.csr" "$ext"
}

# nats-1..3: compose and systemd hosts; nats, *.nats(.opsfleet.svc...): the Kubernetes
# headless service and its pods (deploy/k8s/nats.yaml).
san="DNS:localhost,IP:127.0.0.1,DNS:nats,DNS:nats-1,DNS:nats-2,DNS:nats-3,DNS:*.nats"
san="$san,DNS:nats.opsfleet.svc,DNS:*.nats.opsfleet.svc,DNS:*.nats.opsfleet.svc.cluster.local"
for n in $hosts $coordinators; do san="$san,DNS:$n"; done
issue server "opsfleet server" "serverAuth" "$san"
# Routes: nodes authenticate each other (both ends present it), from the server CA only.
issue route "opsfleet route" "serverAuth,clientAuth" "$san"
issue agent "opsfleet agent" "clientAuth" "DNS:agent" client-ca
issue coordinator "opsfleet coordinator" "clientAuth" "DNS:coordinator" client-ca
issue operator "opsfleet operator" "clientAuth" "DNS:operator" client-ca

# Route credentials: a random password, and the route URLs that carry it (NATS variables
# replace whole values, not parts of strings): route.conf names nats-1..3 (compose, systemd),
# route-k8s.conf the StatefulSet's pods nats-0..2.nats (deploy/k8s/nats.yaml).
if fresh "$out/route.conf"; then
    pw="$(openssl rand -hex 24)"
    write_routes() {
        echo "# Generated by scripts/dev-certs.sh: the cluster route credentials (secret)."
        echo "ROUTE_PASSWORD = \"$pw\""
        printf 'ROUTES = ['
        local sep=""
        for h in "$@"; do printf '%s "nats-route://route:%s@%s:6222"' "$sep" "$pw" "$h"; sep=","; done
        echo " ]"
    }
    write_routes nats-1 nats-2 nats-3 >"$out/route.conf"
    write_routes nats-0.nats nats-1.nats nats-2.nats >"$out/route-k8s.conf"
fi

# One ed25519 key per identity, encoded as NATS nkeys (user seed "SU...", public key "U...").
for n in $hosts $coordinators $operators $programs; do
    seed_file="$out/nkeys/$n.nk"
    fresh "$seed_file" || continue
    der="$(mktemp)"
    openssl genpkey -algorithm ed25519 -outform DER -out "$der"
    python3 - "$der" "$seed_file" <<'PY'
import base64, subprocess, sys
der_path, seed_path = sys.argv[1], sys.argv[2]
seed = open(der_path, "rb").read()[-32:]
pub = subprocess.run(["openssl", "pkey", "-inform", "DER", "-in", der_path, "-pubout",
                      "-outform", "DER"], check=True, capture_output=True).stdout[-32:]
def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc.to_bytes(2, "little")
def encode(raw):
    return base64.b32encode(raw + crc16(raw)).decode().rstrip("=")
USER = 20 << 3
SEED = 18 << 3
seed_text = encode(bytes([SEED | (USER >> 5), (USER & 31) << 3]) + seed)
pub_text = encode(bytes([USER]) + pub)
with open(seed_path, "w") as f:
    f.write(seed_text + "\n")
with open(seed_path + ".pub", "w") as f:
    f.write(pub_text + "\n")
PY
    rm -f "$der"
done

# nkeys.conf: public keys only, one variable per identity found in nkeys/.
{
    echo "# Generated by scripts/dev-certs.sh: public nkeys of every identity (no secrets)."
    for pub in "$out"/nkeys/*.nk.pub; do
        n="$(basename "$pub" .nk.pub)"
        var="NKEY_$(echo "$n" | tr 'a-z-' 'A-Z_')"
        echo "$var = \"$(cat "$pub")\""
    done
} >"$out/nkeys.conf"
chmod 0644 "$out/nkeys.conf" "$tls"/*.pem "$out"/nkeys/*.pub
chmod 0600 "$tls"/*-key.pem "$out"/nkeys/*.nk "$out"/route*.conf
if [ "$rotate" = 1 ]; then
    chmod 0700 "$previous"
    for leaf in server route agent coordinator operator; do
        openssl verify -CAfile "$tls/$( [ "$leaf" = server ] || [ "$leaf" = route ] && echo ca || echo client-ca).pem" \
            "$tls/$leaf.pem" >/dev/null || { echo "dev-certs.sh: the new $leaf certificate does not verify" >&2; exit 1; }
    done
fi
echo "dev-certs.sh: secrets in $out (CA $tls/ca.pem; nkeys for: $(ls "$out/nkeys" | grep -v '\.pub$' | sed 's/\.nk$//' | tr '\n' ' '))" >&2
