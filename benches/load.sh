#!/usr/bin/env bash
# Load benchmark: Switchyard against HAProxy on this machine, loopback only.
#
# Two nginx backends, one HAProxy and one Switchyard in front of them (same
# number of worker threads each), wrk as the load generator. Runs alternate
# between the proxies so machine drift hits both; the report gives per-run
# requests/s and p99 latency, the median per proxy, and the ratios
# Switchyard / HAProxy. See benches/README.md.
#
# Environment (defaults in brackets):
#   DURATION [10]          seconds per measured wrk run
#   ROUNDS [3]             measured runs per proxy and connection count
#   CONNECTIONS ["64 16"]  wrk connection counts to test, in this order
#   WRK_THREADS [2]        wrk threads
#   WARMUP [2]             seconds of unmeasured load per proxy before each level (0: none)
#   PROXY_THREADS [1]      worker threads for each proxy (HAProxy nbthread,
#                          Switchyard TOKIO_WORKER_THREADS and --workers if it has it)
#   PIN [0]                1: pin the proxies to CPU 0, wrk and nginx to CPU 1 (taskset)
#   BODY_BYTES [64]        size of the backends' response body
#   CONTENDERS ["haproxy switchyard"]  what to run, the first is the reference for
#                          ratios. Also known: "haproxy-b" (a second, identical HAProxy,
#                          for an A/A check of the noise) and "direct" (wrk straight at
#                          the first backend, no proxy)
#   SWITCHYARD_BIN         use this binary instead of building one
#   SWITCHYARD_BIN_B       the binary of the contender "switchyard-b": the same config
#                          run by another build (e.g. another crypto provider), to
#                          compare two builds in one run
#   SWITCHYARD_LOG [warn]  Switchyard's log filter (--log-level, and RUST_LOG)
#   ACCESS_LOG [0]         1: leave Switchyard's per-request access log on (HAProxy
#                          logs nothing in either case)
#   SWITCHYARD_CONFIG_EXTRA  TOML text appended to every Switchyard config
#   NATIVE_BALANCE [round-robin]  balance of the "switchyard" contender (e.g.
#                          least-request, to compare a routing plugin with the native
#                          policy it stands in for)
#   POLICY                 a plugin name: adds the contender "switchyard-policy", whose
#                          pool uses balance = "plugin:$POLICY", reported as a ratio
#                          to the native balancer
#   POLICY_WASM            path to the plugin's .wasm; writes [plugin.$POLICY] path = ...
#                          (otherwise supply the [plugin.$POLICY] table yourself in
#                          POLICY_CONFIG)
#   POLICY_CONFIG          TOML text appended to the switchyard-policy config only
#   TLS [0]                1: the proxies terminate TLS (an ECDSA P-256 certificate made
#                          here with openssl; HAProxy "bind ... ssl crt", Switchyard
#                          "tls = { cert, key }"); wrk speaks https to them. The
#                          backends stay plain HTTP, and "direct" stays plain
#                          HTTP (it is only a ceiling for the plain runs)
#   HANDSHAKES [0]         1: every request on a new connection ("Connection: close"),
#                          so with TLS=1 requests/s is TCP+TLS handshakes/s
#   RESULTS_DIR [benches/results]
#   KEEP_TMP [0]           1: keep the temp dir with configs and logs
#   NO_INSTALL [0]         1: never call apt-get, fail if a tool is missing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64 16}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-2}
PROXY_THREADS=${PROXY_THREADS:-1}
PIN=${PIN:-0}
BODY_BYTES=${BODY_BYTES:-64}
CONTENDERS=${CONTENDERS:-haproxy switchyard}
SWITCHYARD_LOG=${SWITCHYARD_LOG:-warn}
SWITCHYARD_CONFIG_EXTRA=${SWITCHYARD_CONFIG_EXTRA:-}
POLICY=${POLICY:-}
NATIVE_BALANCE=${NATIVE_BALANCE:-round-robin}
POLICY_WASM=${POLICY_WASM:-}
POLICY_CONFIG=${POLICY_CONFIG:-}
RESULTS_DIR=${RESULTS_DIR:-$repo/benches/results}
KEEP_TMP=${KEEP_TMP:-0}
NO_INSTALL=${NO_INSTALL:-0}
ACCESS_LOG=${ACCESS_LOG:-0}
TLS=${TLS:-0}
HANDSHAKES=${HANDSHAKES:-0}

if [[ -n $POLICY && " $CONTENDERS " != *" switchyard-policy "* ]]; then
    CONTENDERS="$CONTENDERS switchyard-policy"
fi

log() { printf '[load] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup ---

tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-load.XXXXXX")
pids=()

stop_pid() {
    # TERM, then KILL after a bounded wait. Children (nginx workers) are
    # collected first so they cannot outlive a killed master.
    local pid=$1 kids i
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on TERM, killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    # keep the processes' logs (and configs) with the results, for anomalies
    if [[ -n ${raw:-} && -d $raw ]]; then
        cp "$tmp"/*.log "$tmp"/*.cfg "$tmp"/*.toml "$raw"/ 2>/dev/null || true
    fi
    if [[ $KEEP_TMP == 1 ]]; then
        log "kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ tools ---

ensure_tools() {
    local missing=() cmd pkg
    for pair in haproxy:haproxy wrk:wrk nginx:nginx awk:mawk curl:curl openssl:openssl; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("$pkg")
    done
    if [[ $PIN == 1 ]] && ! command -v taskset >/dev/null 2>&1; then missing+=(util-linux); fi
    ((${#missing[@]} == 0)) && return 0
    [[ $NO_INSTALL == 1 ]] && die "missing: ${missing[*]} (NO_INSTALL=1)"
    command -v apt-get >/dev/null 2>&1 || die "missing: ${missing[*]}, and no apt-get to install them"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing: ${missing[*]}; run as root or install them"
        sudo=(sudo)
    fi
    log "installing with apt-get: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
}

ensure_tools
export PATH="$PATH:/usr/sbin:/sbin"

need_switchyard=0
for c in $CONTENDERS; do
    case $c in
        haproxy | haproxy-b | direct) ;;
        switchyard | switchyard-policy) need_switchyard=1 ;;
        switchyard-b)
            need_switchyard=1
            [[ -x ${SWITCHYARD_BIN_B:-} ]] || die "switchyard-b needs SWITCHYARD_BIN_B=path/to/switchyard"
            ;;
        *) die "unknown contender '$c' (known: haproxy haproxy-b direct switchyard switchyard-b switchyard-policy)" ;;
    esac
done

switchyard_bin=${SWITCHYARD_BIN:-}
if ((need_switchyard)); then
    if [[ -z $switchyard_bin ]]; then
        log "building: cargo build --release -p switchyard"
        (cd "$repo" && cargo build --release -p switchyard) >&2
        switchyard_bin=$repo/target/release/switchyard
    fi
    [[ -x $switchyard_bin ]] || die "no switchyard binary at $switchyard_bin"
fi

# ------------------------------------------------------------------ ports ---

used_ports=" "
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    # A port below the usual ephemeral range (32768+) so that wrk's and the
    # proxies' own outgoing connections cannot have taken it.
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        [[ $used_ports == *" $p "* ]] && continue
        port_open "$p" && continue
        used_ports+="$p "
        echo "$p"
        return 0
    done
    die "no free port found"
}

wait_listening() {
    # wait_listening NAME PID PORT: bounded (10 s) wait until PORT accepts.
    local name=$1 pid=$2 port=$3 i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before listening on $port; last lines of its log:"
            tail -n 20 "$tmp/$name.log" >&2 2>/dev/null || true
            die "$name did not start"
        fi
        port_open "$port" && return 0
        sleep 0.1
    done
    die "$name not listening on 127.0.0.1:$port after 10 s"
}

http_get() {
    # One HTTP/1.1 request on a fresh connection, prints the response.
    local port=$1
    if [[ $TLS == 1 && $port != "$be1" && $port != "$be2" ]]; then
        curl -sk -i --max-time 5 -H 'Host: bench.local' "https://127.0.0.1:$port/" 2>/dev/null || true
        return 0
    fi
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf 'GET / HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n' >&3
        timeout 5 cat <&3
    ) 2>/dev/null || true
}

check_serves() {
    # check_serves NAME PORT: two requests must both answer 200 with the backend body.
    local name=$1 port=$2 resp i
    for i in 1 2; do
        resp=$(http_get "$port")
        if [[ ${resp%%$'\r'*} != "HTTP/1.1 200"* || $resp != *"$body_marker"* ]]; then
            die "$name on port $port did not answer 200 with the backend body; got: $(printf '%s' "$resp" | head -c 300)"
        fi
    done
}

pin_to() {
    # pin_to CPU: prefix for a command when PIN=1.
    if [[ $PIN == 1 ]]; then printf 'taskset\n-c\n%s\n' "$1"; fi
}

last_pid=
start_bg() {
    # start_bg NAME CMD...: start in the background, log to $tmp/NAME.log,
    # remember the pid for cleanup and in $last_pid.
    local name=$1
    shift
    "$@" >"$tmp/$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

# --------------------------------------------------------------- backends ---

be1=$(free_port)
be2=$(free_port)
body_marker="switchyard-load-backend"
# The body is BODY_BYTES long including the " N\n" that tells the backends apart.
body=$body_marker
while ((${#body} < BODY_BYTES - 3)); do body+=x; done
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:$be1 reuseport;
        location / { return 200 "$body 1\n"; }
    }
    server {
        listen 127.0.0.1:$be2 reuseport;
        location / { return 200 "$body 2\n"; }
    }
}
EOF
mapfile -t pin_be < <(pin_to 1)
start_bg nginx "${pin_be[@]}" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf"
pid_nginx=$last_pid
wait_listening nginx "$pid_nginx" "$be1"
wait_listening nginx "$pid_nginx" "$be2"
check_serves nginx-1 "$be1"
check_serves nginx-2 "$be2"

# ---------------------------------------------------------------- proxies ---

tls_cert=$tmp/bench-cert.pem tls_key=$tmp/bench-key.pem
if [[ $TLS == 1 ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tls_key" -out "$tls_cert" -days 30 -subj /CN=bench.local \
        -addext subjectAltName=DNS:bench.local >/dev/null 2>&1 || die "openssl could not make a certificate"
    cat "$tls_cert" "$tls_key" >"$tmp/bench-combined.pem"
fi

declare -A port_of pid_of
mapfile -t pin_px < <(pin_to 0)

start_haproxy() {
    local name=$1 port
    port=$(free_port)
    cat >"$tmp/$name.cfg" <<EOF
global
    nbthread $PROXY_THREADS
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind 127.0.0.1:$port$( [[ $TLS == 1 ]] && printf ' ssl crt %s alpn http/1.1' "$tmp/bench-combined.pem")
    default_backend app

backend app
    balance roundrobin
    server b1 127.0.0.1:$be1
    server b2 127.0.0.1:$be2
EOF
    haproxy -c -q -f "$tmp/$name.cfg" >&2 || die "haproxy rejected $tmp/$name.cfg"
    start_bg "$name" "${pin_px[@]}" haproxy -db -f "$tmp/$name.cfg"
    wait_listening "$name" "$last_pid" "$port"
    port_of[$name]=$port pid_of[$name]=$last_pid
}

switchyard_flags=()
start_switchyard() {
    local name=$1 balance=$2 extra=$3 bin=${4:-$switchyard_bin} port admin
    port=$(free_port)
    admin=$(free_port)
    cat >"$tmp/$name.toml" <<EOF
[admin]
listen = "127.0.0.1:$admin"

[[listener]]
name = "web"
listen = "127.0.0.1:$port"
$( [[ $TLS == 1 ]] && printf 'tls = { cert = "%s", key = "%s", alpn = ["http/1.1"] }' "$tls_cert" "$tls_key")

[[route]]
name = "all"
listener = "web"
pool = "app"

[pool.app]
balance = "$balance"
backends = [
  { address = "127.0.0.1:$be1", weight = 1 },
  { address = "127.0.0.1:$be2", weight = 1 },
]
EOF
    if [[ -n $SWITCHYARD_CONFIG_EXTRA ]]; then printf '\n%s\n' "$SWITCHYARD_CONFIG_EXTRA" >>"$tmp/$name.toml"; fi
    if [[ -n $extra ]]; then printf '\n%s\n' "$extra" >>"$tmp/$name.toml"; fi
    if ((switchyard_has_check)) &&
        ! "$switchyard_bin" check --config "$tmp/$name.toml" >"$tmp/$name.check" 2>&1; then
        cat "$tmp/$name.check" >&2
        die "switchyard rejected $tmp/$name.toml (written for contender $name)"
    fi
    start_bg "$name" env RUST_LOG="$SWITCHYARD_LOG" TOKIO_WORKER_THREADS="$PROXY_THREADS" \
        "${pin_px[@]}" "$bin" "${switchyard_flags[@]}" --config "$tmp/$name.toml"
    wait_listening "$name" "$last_pid" "$port"
    port_of[$name]=$port pid_of[$name]=$last_pid
}

# Use the flags this build has: the thread count (TOKIO_WORKER_THREADS is set
# as well, for builds without --workers), the log level, and no access log
# unless ACCESS_LOG=1 (the HAProxy config logs nothing either).
switchyard_has_check=0
if ((need_switchyard)); then
    sy_help=$("$switchyard_bin" --help 2>&1 || true)
    if [[ $sy_help == *--workers* ]]; then switchyard_flags+=(--workers "$PROXY_THREADS"); fi
    if [[ $sy_help == *--log-level* ]]; then switchyard_flags+=(--log-level "$SWITCHYARD_LOG"); fi
    if [[ $ACCESS_LOG != 1 && $sy_help == *--no-access-log* ]]; then switchyard_flags+=(--no-access-log); fi
    if [[ $sy_help =~ [[:space:]]check[[:space:]] ]]; then switchyard_has_check=1; fi
fi

for c in $CONTENDERS; do
    case $c in
        haproxy | haproxy-b) start_haproxy "$c" ;;
        direct) port_of[$c]=$be1 pid_of[$c]=$pid_nginx ;;
        switchyard) start_switchyard "$c" "$NATIVE_BALANCE" "" ;;
        switchyard-b) start_switchyard "$c" "$NATIVE_BALANCE" "" "$SWITCHYARD_BIN_B" ;;
        switchyard-policy)
            [[ -n $POLICY ]] || die "switchyard-policy needs POLICY=NAME"
            pcfg=$POLICY_CONFIG
            if [[ -n $POLICY_WASM ]]; then
                pcfg=$(printf '[plugin.%s]\nkind = "routing"\npath = "%s"\n%s' "$POLICY" "$POLICY_WASM" "$POLICY_CONFIG")
            fi
            start_switchyard "$c" "plugin:$POLICY" "$pcfg"
            ;;
    esac
    check_serves "$c" "${port_of[$c]}"
done

# ------------------------------------------------------------------- runs ---

stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RESULTS_DIR/load-$stamp"
summary=$RESULTS_DIR/load-$stamp.txt
raw=$RESULTS_DIR/load-$stamp
mapfile -t pin_lg < <(pin_to 1)

{
    echo "# switchyard load benchmark $stamp"
    echo "meta date=$(date -Is) host_cpus=$(nproc) rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "meta duration_s=$DURATION rounds=$ROUNDS connections=\"$CONNECTIONS\" wrk_threads=$WRK_THREADS warmup_s=$WARMUP"
    echo "meta proxy_threads=$PROXY_THREADS pin=$PIN body_bytes=$BODY_BYTES contenders=\"$CONTENDERS\" policy=${POLICY:-none}"
    echo "meta tls=$TLS handshakes=$HANDSHAKES"
    echo "meta haproxy=\"$(haproxy -v 2>/dev/null | head -n 1)\""
    echo "meta nginx=\"$(nginx -v 2>&1 | head -n 1)\" wrk=\"$(wrk -v 2>&1 | head -n 1 | cut -c1-40)\""
    if ((need_switchyard)); then echo "meta switchyard_bin=$switchyard_bin switchyard_flags=\"${switchyard_flags[*]}\""; fi
} >"$summary"

if [[ $PIN == 1 ]]; then
    log "cores: proxies pinned to CPU 0; wrk and nginx pinned to CPU 1"
else
    log "cores: nothing pinned; wrk ($WRK_THREADS threads), nginx (1 worker) and the proxy ($PROXY_THREADS worker threads) share all $(nproc) cores"
fi
log "contenders: $CONTENDERS; connections: $CONNECTIONS; $ROUNDS rounds of ${DURATION}s; results in $summary"

declare -A dead
run_wrk() {
    # run_wrk OUTFILE CONNS SECONDS PORT (wrk in the background so a signal
    # reaches the trap at once)
    local out=$1 conns=$2 secs=$3 port=$4 threads=$WRK_THREADS scheme=http extra=()
    ((threads > conns)) && threads=$conns
    if [[ $TLS == 1 && $port != "$be1" ]]; then scheme=https; fi
    if [[ $HANDSHAKES == 1 ]]; then extra=(-H "Connection: close"); fi
    "${pin_lg[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 5s --latency "${extra[@]}" \
        "$scheme://127.0.0.1:$port/" >"$out" 2>&1 &
    local wpid=$!
    pids+=("$wpid")
    wait "$wpid" || log "wrk exited non-zero, see $out"
}

alive() {
    local c=$1
    [[ -z ${dead[$c]:-} ]] || return 1
    if ! kill -0 "${pid_of[$c]}" 2>/dev/null; then
        dead[$c]=1
        log "$c (pid ${pid_of[$c]}) has exited; last lines of its log:"
        tail -n 20 "$tmp/$c.log" >&2 || true
        echo "crash contender=$c" >>"$summary"
        return 1
    fi
}

for conns in $CONNECTIONS; do
    if ((WARMUP > 0)); then
        for c in $CONTENDERS; do
            alive "$c" || continue
            run_wrk "$raw/warmup-$c-c$conns.txt" "$conns" "$WARMUP" "${port_of[$c]}"
        done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for c in $CONTENDERS; do
            alive "$c" || continue
            out=$raw/$c-c$conns-r$r.txt
            load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo NA)
            run_wrk "$out" "$conns" "$DURATION" "${port_of[$c]}"
            res=$(awk -f "$here/load/wrk.awk" "$out")
            echo "run contender=$c conns=$conns round=$r $res loadavg=$load" >>"$summary"
            alive "$c" || true
            declare -A f=()
            for kv in $res; do f[${kv%%=*}]=${kv#*=}; done
            printf '[load] c=%-3s round %d  %-18s %10s req/s  p99 %8s ms  errors %s  non-2xx %s\n' \
                "$conns" "$r" "$c" "${f[rps]}" "${f[p99_ms]}" "${f[socket_errors]}" "${f[non2xx]}" >&2
            if [[ ${f[socket_errors]} != 0 || ${f[non2xx]} != 0 || ${f[rps]} == NA ]]; then
                log "anomaly: $c at $conns connections, round $r:"
                grep -E 'requests in|Socket errors|Non-2xx' "$out" | sed 's/^/    /' >&2
            fi
        done
    done
done

# ---------------------------------------------------------------- summary ---

# Medians and ratios are computed from the run lines of the summary file.
awk -v contenders="$CONTENDERS" -v connections="$CONNECTIONS" -f "$here/load/summary.awk" "$summary" >"$tmp/report.txt"
grep -E '^(median|ratio)' "$tmp/report.txt" >>"$summary" || true
echo
sed -n 's/^# //p' "$tmp/report.txt"
echo
log "summary: $summary"
log "raw wrk output: $raw/"
