#!/usr/bin/env bash
# Full TLS handshakes per second: Switchyard against HAProxy, loopback only.
#
# Each proxy terminates TLS with the same ECDSA P-256 certificate (made here with
# openssl) and the same number of worker threads. `openssl s_time -new` clients
# (several in parallel) open a connection, complete a full handshake (never a
# resumed one) and close, for DURATION seconds; the proxies take turns, round
# after round. No HTTP request is sent: this measures the handshake alone. For
# requests over TLS (keep-alive, or a connection per request), use
# `TLS=1 benches/load.sh` and `TLS=1 HANDSHAKES=1 benches/load.sh`.
#
# Environment (defaults in brackets):
#   DURATION [5]          seconds per run
#   ROUNDS [3]            runs per proxy
#   CLIENTS [3]           parallel s_time processes
#   PROXY_THREADS [1]     worker threads of each proxy
#   CONTENDERS ["haproxy switchyard"]  also known: "switchyard-b" (SWITCHYARD_BIN_B)
#   SWITCHYARD_BIN        use this binary instead of building one
#   SWITCHYARD_BIN_B      the binary of "switchyard-b", e.g. another crypto provider
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-3}
PROXY_THREADS=${PROXY_THREADS:-1}
CONTENDERS=${CONTENDERS:-haproxy switchyard}

BENCH=handshakes
NO_INSTALL=1
# shellcheck source=benches/lib.sh
source "$here/lib.sh"

ensure_tools haproxy:haproxy openssl:openssl
export PATH="$PATH:/usr/sbin:/sbin"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-handshakes.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

switchyard_bin=${SWITCHYARD_BIN:-}
if [[ -z $switchyard_bin ]]; then
    log "building: cargo build --release -p switchyard"
    (cd "$repo" && cargo build --release -p switchyard) >&2
    switchyard_bin=${CARGO_TARGET_DIR:-$repo/target}/release/switchyard
fi

wait_listening() {
    for _ in $(seq 100); do
        port_open "$1" && return 0
        sleep 0.1
    done
    die "nothing listens on $1"
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 30 -subj /CN=bench.local \
    -addext subjectAltName=DNS:bench.local >/dev/null 2>&1
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/combined.pem"
backend=$(free_port)

declare -A port_of
for c in $CONTENDERS; do
    port=$(free_port)
    port_of[$c]=$port
    case $c in
        haproxy)
            cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread $PROXY_THREADS
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:$port ssl crt $tmp/combined.pem alpn http/1.1
    default_backend app
backend app
    server b1 127.0.0.1:$backend
EOF
            haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
            ;;
        switchyard | switchyard-b)
            bin=$switchyard_bin
            if [[ $c == switchyard-b ]]; then bin=${SWITCHYARD_BIN_B:?switchyard-b needs SWITCHYARD_BIN_B}; fi
            cat >"$tmp/$c.toml" <<EOF
[admin]
listen = "127.0.0.1:$(free_port)"
[[listener]]
name = "web"
listen = "127.0.0.1:$port"
tls = { cert = "$tmp/cert.pem", key = "$tmp/key.pem", alpn = ["http/1.1"] }
[[route]]
name = "all"
listener = "web"
pool = "app"
[pool.app]
backends = [{ address = "127.0.0.1:$backend" }]
EOF
            TOKIO_WORKER_THREADS=$PROXY_THREADS "$bin" --workers "$PROXY_THREADS" --log-level warn \
                --no-access-log --config "$tmp/$c.toml" >"$tmp/$c.log" 2>&1 &
            ;;
        *) die "unknown contender $c" ;;
    esac
    pids+=("$!")
    wait_listening "$port"
done

declare -A runs
for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CONTENDERS; do
        clients=()
        for ((i = 1; i <= CLIENTS; i++)); do
            openssl s_time -connect "127.0.0.1:${port_of[$c]}" -new -time "$DURATION" \
                >"$tmp/$c-$r-$i.txt" 2>&1 &
            clients+=("$!")
        done
        for pid in "${clients[@]}"; do wait "$pid" || true; done
        total=$(cat "$tmp/$c-$r"-*.txt | awk '/connections in [0-9]+ real seconds/ { n += $1 } END { print n + 0 }')
        rate=$(awk -v n="$total" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')
        runs[$c]="${runs[$c]:-} $rate"
        log "round $r  $(printf '%-14s' "$c") $rate handshakes/s"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ref=${CONTENDERS%% *}
ref_median=$(echo "${runs[$ref]}" | median)
echo
for c in $CONTENDERS; do
    m=$(echo "${runs[$c]}" | median)
    printf '%-14s handshakes/s:%s   median %s   ratio to %s %.3f\n' "$c" "${runs[$c]}" "$m" "$ref" \
        "$(awk -v a="$m" -v b="$ref_median" 'BEGIN { print (b > 0) ? a / b : 0 }')"
done
