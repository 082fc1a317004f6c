#!/usr/bin/env bash
# Instructions per proxied request: Switchyard against HAProxy, under callgrind.
#
# Requests/s on a shared 2-core machine move with whatever else runs; the number
# of instructions a proxy executes for a request does not. Each proxy runs under
# `valgrind --tool=callgrind` in front of one nginx (two backends, round-robin,
# HTTP health checks every 2 s, Switchyard's access log on and written to a file),
# serves SMALL and then LARGE keep-alive GETs from h2load (16 connections,
# HTTP/1.1; or HTTP/2, see PROTO) in two separate runs, and the difference of the
# two totals divided by LARGE - SMALL is its user-space instructions per request,
# start-up and shutdown cancelled out. Same binary, same inputs: the same figure to
# within a fraction of a percent, so a change of 1 % shows (benches/README.md,
# "Instructions per request").
#
# Environment (defaults in brackets):
#   SWITCHYARD_BIN    the binary to measure [target/release/switchyard, built if missing]
#   SWITCHYARD_BIN_B  a second build, measured the same way beside the first
#   SMALL [2000], LARGE [12000]   requests in the two runs
#   HAPROXY [1]       0: leave HAProxy out
#   PROTO [h1]        h2: the clients speak HTTP/2 (cleartext, prior knowledge),
#                     8 connections x 8 concurrent streams, as load.sh's h2 row
#   NO_INSTALL [0]    1: never call apt-get, fail if a tool is missing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
SMALL=${SMALL:-2000}
LARGE=${LARGE:-12000}
HAPROXY=${HAPROXY:-1}
PROTO=${PROTO:-h1}
case $PROTO in
    h1) clients=(--h1 -c 16) ;;
    h2) clients=(-c 8 -m 8) ;;
    *) echo "PROTO must be h1 or h2, not '$PROTO'" >&2; exit 2 ;;
esac
NO_INSTALL=${NO_INSTALL:-0}

BENCH=instructions
# shellcheck source=benches/lib.sh
source "$here/lib.sh"
ensure_tools valgrind:valgrind h2load:nghttp2-client nginx:nginx haproxy:haproxy curl:curl
export PATH="$PATH:/usr/sbin:/sbin"

if [[ -z ${SWITCHYARD_BIN:-} ]]; then
    SWITCHYARD_BIN=$repo/target/release/switchyard
    [[ -x $SWITCHYARD_BIN ]] || (cd "$repo" && cargo build --release -p switchyard)
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

body=$(printf '%064d' 0)
b1=$(free_port) b2=$(free_port)
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $tmp/nginx-error.log;
pid $tmp/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$b1; location / { return 200 "$body"; } }
    server { listen 127.0.0.1:$b2; location / { return 200 "$body"; } }
}
EOF
nginx -c "$tmp/nginx.conf" -p "$tmp" &
pids+=($!)

wait_answering() {
    local port=$1 i
    for ((i = 0; i < 300; i++)); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && return 0
        sleep 0.2
    done
    die "nothing answers on 127.0.0.1:$port after 60 s"
}
wait_answering "$b1"

# measure NAME PORT N CMD...: the callgrind total of CMD serving N requests on PORT.
measure() {
    local name=$1 port=$2 n=$3 pid out
    shift 3
    out=$tmp/$name.$n.cg
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$tmp/$name.$n.log" 2>&1 &
    pid=$!
    wait_answering "$port"
    h2load "${clients[@]}" -n "$n" "http://127.0.0.1:$port/" >"$tmp/$name.$n.h2load"
    grep -q "$n succeeded" "$tmp/$name.$n.h2load" || die "$name: not every request succeeded (see $tmp/$name.$n.h2load)"
    # A graceful stop (SIGUSR1 is HAProxy's); callgrind writes its totals as the
    # process exits.
    if [[ $name == haproxy ]]; then kill -USR1 "$pid"; else kill -INT "$pid"; fi
    local i=0
    while kill -0 "$pid" 2>/dev/null && ((i++ < 600)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then die "$name did not exit within 60 s of being stopped"; fi
    wait "$pid" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"*
}

per_request() {
    local name=$1 port=$2 small large
    shift 2
    small=$(measure "$name" "$port" "$SMALL" "$@")
    large=$(measure "$name" "$port" "$LARGE" "$@")
    echo $(((large - small) / (LARGE - SMALL)))
}

switchyard() {
    local name=$1 bin=$2 port
    port=$(free_port)
    cat >"$tmp/$name.toml" <<EOF
[admin]
listen = "127.0.0.1:$(free_port)"

[[listener]]
name = "web"
listen = "127.0.0.1:$port"

[[route]]
name = "all"
listener = "web"
pool = "app"

[pool.app]
balance = "round-robin"
backends = [
  { address = "127.0.0.1:$b1" },
  { address = "127.0.0.1:$b2" },
]

[pool.app.health]
type = "http"
path = "/"
interval = "2s"
timeout = "1s"
EOF
    TOKIO_WORKER_THREADS=2 per_request "$name" "$port" "$bin" --workers 2 --log-level info \
        --config "$tmp/$name.toml"
}

haproxy_run() {
    local port
    port=$(free_port)
    cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend web
    bind 127.0.0.1:$port
    default_backend app
backend app
    balance roundrobin
    server b1 127.0.0.1:$b1 check inter 2s
    server b2 127.0.0.1:$b2 check inter 2s
EOF
    per_request haproxy "$port" haproxy -f "$tmp/haproxy.cfg"
}

a=$(switchyard switchyard "$SWITCHYARD_BIN")
echo "switchyard      $a instructions per request ($SWITCHYARD_BIN)"
if [[ -n ${SWITCHYARD_BIN_B:-} ]]; then
    b=$(switchyard switchyard-b "$SWITCHYARD_BIN_B")
    echo "switchyard-b    $b instructions per request ($SWITCHYARD_BIN_B): $(python3 -c "print(f'{$b/$a:.3f}')")x of switchyard"
fi
if ((HAPROXY)); then
    h=$(haproxy_run)
    echo "haproxy         $h instructions per request: switchyard runs $(python3 -c "print(f'{$a/$h:.2f}')")x as many"
fi
