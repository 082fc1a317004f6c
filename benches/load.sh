#!/usr/bin/env bash
# Load benchmark: Switchyard against HAProxy on this machine, loopback only.
#
# Runs the rows of the benchmark table in benches/README.md in one go: nginx
# serves as the backends, HAProxy and Switchyard (same number of worker threads)
# run in front of them with the same pool, and the load generators (wrk, h2load,
# openssl s_time, a Python holder of idle connections) take each proxy in turn,
# round after round, so machine drift hits both. The report gives per-run figures,
# medians, and ratios Switchyard / HAProxy per row; see benches/README.md.
#
# Rows (ROWS, in this order by default):
#   default-c64     wrk, 64 keep-alive connections; Switchyard with its access log
#                   on (info level) and HTTP health checks every 2 s, HAProxy with
#                   `check` every 2 s and no log; one route, round-robin, 2 backends
#   default-c256    the same at 256 connections (default-cN: any N)
#   no-access-log   default-c64 with Switchyard's --no-access-log
#   tls             HTTPS keep-alive, 64 connections (TLS_KEY certificate)
#   tls-new-conn    HTTPS with a new connection per request (Connection: close;
#                   wrk resumes its TLS session): connections/s
#   tls-full-handshakes  parallel `openssl s_time -new`: full handshakes/s, no request
#   h2              HTTP/2 cleartext from h2load, H2_CLIENTS x H2_STREAMS streams
#   idle            IDLE_CONNECTIONS keep-alive connections that made one request
#                   each, held idle: RSS growth per connection, and the p50/p99 of
#                   one fresh client's requests with and without them held
#   backends-N      default-c64 with N backends (N <= 64); with default-c64 (2
#                   backends) this is the scaling table (1, 2, 8, 64 by default)
#   routes-N        default-c64 with N host+path routes, requests matching the last
#   wasm            Switchyard with the routing plugin POLICY against the native
#                   least-request balancer it stands in for (HAProxy: leastconn)
#
# Environment (defaults in brackets):
#   ROWS ["default-c64 default-c256 no-access-log tls tls-new-conn
#         tls-full-handshakes h2 idle backends-1 backends-8 backends-64 routes-200 wasm"]
#   DURATION [5]           seconds per measured run
#   ROUNDS [3]             measured runs per proxy and row
#   WARMUP [2]             seconds of unmeasured load per proxy before each row (0: none)
#   PROXY_THREADS [2]      worker threads for each proxy (HAProxy nbthread,
#                          Switchyard --workers and TOKIO_WORKER_THREADS)
#   WRK_THREADS [2]        wrk threads
#   PIN [0]                1: pin the proxies to CPU 0, the load generators and
#                          nginx to CPU 1 (taskset)
#   BODY_BYTES [64]        size of the backends' response body
#   EXTRA_CONTENDERS [""]  added to every wrk row: "haproxy-b" (a second, identical
#                          HAProxy: an A/A check of the noise), "direct" (wrk straight
#                          at the first backend: the ceiling), "switchyard-b" (the
#                          same config run by SWITCHYARD_BIN_B)
#   SWITCHYARD_BIN         use this binary instead of building one
#   SWITCHYARD_BIN_B       the binary of the contender "switchyard-b"
#   SWITCHYARD_LOG [info]  Switchyard's log filter (--log-level)
#   SWITCHYARD_CONFIG_EXTRA  TOML text appended to every Switchyard config
#   TLS_KEY [rsa2048]      certificate key of the TLS rows: rsa2048 or ec (P-256)
#   H2_CLIENTS [8], H2_STREAMS [8]  h2load connections and streams per connection
#   IDLE_CONNECTIONS [10000]  (HAProxy holds at most what its maxconn allows under
#                          the descriptor limit: (ulimit -Hn - 100) / 2 - 16)
#   HANDSHAKE_CLIENTS [3]  parallel s_time processes
#   POLICY [latency]       the routing plugin of the wasm row
#   POLICY_WASM            its .wasm [the shipped build under the target dir]
#   RESULTS_DIR [benches/results]
#   KEEP_TMP [0]           1: keep the temp dir with configs and logs
#   NO_INSTALL [0]         1: never call apt-get, fail if a tool is missing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

ROWS=${ROWS:-default-c64 default-c256 no-access-log tls tls-new-conn tls-full-handshakes h2 idle backends-1 backends-8 backends-64 routes-200 wasm}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
PROXY_THREADS=${PROXY_THREADS:-2}
WRK_THREADS=${WRK_THREADS:-2}
PIN=${PIN:-0}
BODY_BYTES=${BODY_BYTES:-64}
EXTRA_CONTENDERS=${EXTRA_CONTENDERS:-}
SWITCHYARD_LOG=${SWITCHYARD_LOG:-info}
SWITCHYARD_CONFIG_EXTRA=${SWITCHYARD_CONFIG_EXTRA:-}
TLS_KEY=${TLS_KEY:-rsa2048}
H2_CLIENTS=${H2_CLIENTS:-8}
H2_STREAMS=${H2_STREAMS:-8}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
HANDSHAKE_CLIENTS=${HANDSHAKE_CLIENTS:-3}
POLICY=${POLICY:-latency}
POLICY_WASM=${POLICY_WASM:-}
RESULTS_DIR=${RESULTS_DIR:-$repo/benches/results}
KEEP_TMP=${KEEP_TMP:-0}
NO_INSTALL=${NO_INSTALL:-0}

BENCH=load
# shellcheck source=benches/lib.sh
source "$here/lib.sh"

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
    if [[ -n ${raw:-} && -d $raw ]]; then
        cp "$tmp"/*.cfg "$tmp"/*.toml "$raw"/ 2>/dev/null || true
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

tools=(haproxy:haproxy wrk:wrk nginx:nginx awk:mawk curl:curl openssl:openssl
    h2load:nghttp2-client python3:python3)
if [[ $PIN == 1 ]]; then tools+=(taskset:util-linux); fi
ensure_tools "${tools[@]}"
export PATH="$PATH:/usr/sbin:/sbin"
# The idle row holds IDLE_CONNECTIONS sockets in the holder and in each proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# HAProxy refuses to start unless the descriptor limit covers two per connection.
fd_limit=$(ulimit -n)
[[ $fd_limit == unlimited ]] && fd_limit=1048576
haproxy_maxconn=$(((fd_limit - 100) / 2))
((haproxy_maxconn > 30000)) && haproxy_maxconn=30000

for row in $ROWS; do
    case $row in
        default-c[0-9]* | no-access-log | tls | tls-new-conn | tls-full-handshakes | h2 | idle | wasm) ;;
        backends-[0-9]*) ((${row#backends-} >= 1 && ${row#backends-} <= 64)) || die "$row: 1 to 64 backends" ;;
        routes-[0-9]*) ((${row#routes-} >= 1)) || die "$row: at least one route" ;;
        *) die "unknown row '$row' (see the header of $0)" ;;
    esac
done
for c in $EXTRA_CONTENDERS; do
    case $c in
        haproxy-b | direct) ;;
        switchyard-b) [[ -x ${SWITCHYARD_BIN_B:-} ]] || die "switchyard-b needs SWITCHYARD_BIN_B=path/to/switchyard" ;;
        *) die "unknown contender '$c' (known: haproxy-b direct switchyard-b)" ;;
    esac
done

switchyard_bin=${SWITCHYARD_BIN:-}
if [[ -z $switchyard_bin ]]; then
    log "building: cargo build --release -p switchyard"
    (cd "$repo" && cargo build --release -p switchyard) >&2
    switchyard_bin=${CARGO_TARGET_DIR:-$repo/target}/release/switchyard
fi
[[ -x $switchyard_bin ]] || die "no switchyard binary at $switchyard_bin"

if [[ " $ROWS " == *" wasm "* && -z $POLICY_WASM ]]; then
    POLICY_WASM=${CARGO_TARGET_DIR:-$repo/target}/wasm-plugins/dist/$POLICY.wasm
    if [[ ! -f $POLICY_WASM ]]; then
        log "building the shipped plugins (for the wasm row)"
        (cd "$repo" && cargo build -p switchyard) >&2
    fi
    [[ -f $POLICY_WASM ]] || die "no $POLICY_WASM: set POLICY_WASM, or drop the wasm row"
fi

# ------------------------------------------------------------------ ports ---

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
    # One request on a fresh connection (to the row's path), prints the response.
    local port=$1 tls=$2
    if [[ $tls == 1 ]]; then
        curl -sk -i --max-time 5 -H "Host: $row_host" "https://127.0.0.1:$port$row_path" 2>/dev/null || true
        return 0
    fi
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$row_path" "$row_host" >&3
        timeout 5 cat <&3
    ) 2>/dev/null || true
}

check_serves() {
    # check_serves NAME PORT TLS: two requests must both answer 200 with the backend body.
    local name=$1 port=$2 tls=$3 resp i
    for i in 1 2; do
        resp=$(http_get "$port" "$tls")
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
    # start_bg NAME CMD...: start in the background, log to $tmp/NAME.log
    # (appending, so the log can be cut between runs), remember the pid.
    local name=$1
    shift
    : >"$tmp/$name.log"
    "$@" >>"$tmp/$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
}

forget_pid() {
    local pid=$1 kept=() p
    for p in "${pids[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
    pids=("${kept[@]}")
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# --------------------------------------------------------------- backends ---

backend_ports=()
# free_port runs in a subshell here, so it cannot see the ports it picked before:
# the loop keeps the list free of duplicates itself.
while ((${#backend_ports[@]} < 64)); do
    p=$(free_port)
    [[ " ${backend_ports[*]} " == *" $p "* ]] || backend_ports+=("$p")
done
body_marker="switchyard-load-backend"
# The body is BODY_BYTES long including the " PORT\n" that tells the backends apart.
body=$body_marker
while ((${#body} < BODY_BYTES - 7)); do body+=x; done
mkdir -p "$tmp/nginx"
{
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 8192; }
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
EOF
    for p in "${backend_ports[@]}"; do printf '        listen 127.0.0.1:%s reuseport;\n' "$p"; done
    cat <<EOF
        location / { return 200 "$body \$server_port\n"; }
    }
}
EOF
} >"$tmp/nginx/nginx.conf"
mapfile -t pin_be < <(pin_to 1)
start_bg nginx "${pin_be[@]}" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf"
pid_nginx=$last_pid
row_path=/ row_host=bench.local
for p in "${backend_ports[@]}"; do wait_listening nginx "$pid_nginx" "$p"; done
check_serves nginx "${backend_ports[0]}" 0

# -------------------------------------------------------- certificates ---

tls_cert=$tmp/bench-cert.pem tls_key=$tmp/bench-key.pem
case $TLS_KEY in
    rsa2048) key_args=(-newkey rsa:2048) ;;
    ec) key_args=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    *) die "TLS_KEY must be rsa2048 or ec" ;;
esac
openssl req -x509 "${key_args[@]}" -nodes -keyout "$tls_key" -out "$tls_cert" -days 30 \
    -subj /CN=bench.local -addext subjectAltName=DNS:bench.local >/dev/null 2>&1 ||
    die "openssl could not make a certificate"
cat "$tls_cert" "$tls_key" >"$tmp/bench-combined.pem"

# ---------------------------------------------------------------- proxies ---

# What the current row asks of the proxies (set by set_row).
row_tls=0 row_backends=2 row_routes=1 row_access_log=1 row_conns=64 row_idle=0
row_balance=round-robin row_haproxy_balance=roundrobin

set_row() {
    local row=$1
    row_tls=0 row_backends=2 row_routes=1 row_access_log=1 row_conns=64 row_idle=0
    row_balance=round-robin row_haproxy_balance=roundrobin
    case $row in
        default-c*) row_conns=${row#default-c} ;;
        no-access-log) row_access_log=0 ;;
        tls | tls-new-conn | tls-full-handshakes) row_tls=1 ;;
        idle) row_idle=1 ;;
        backends-*) row_backends=${row#backends-} ;;
        routes-*) row_routes=${row#routes-} ;;
        wasm) row_balance=least-request row_haproxy_balance=leastconn ;;
    esac
    if ((row_routes > 1)); then
        row_path=/r$row_routes/item row_host=h$row_routes.bench
    else
        row_path=/ row_host=bench.local
    fi
}

declare -A port_of pid_of
mapfile -t pin_px < <(pin_to 0)

start_haproxy() {
    local name=$1 port i bind
    port=$(free_port)
    bind="bind 127.0.0.1:$port"
    if ((row_tls)); then bind+=" ssl crt $tmp/bench-combined.pem alpn http/1.1"; fi
    {
        cat <<EOF
global
    nbthread $PROXY_THREADS
    maxconn $haproxy_maxconn

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 120s
    timeout server 30s
    timeout http-keep-alive 120s

frontend web
    $bind
EOF
        if ((row_routes > 1)); then
            for ((i = 1; i <= row_routes; i++)); do
                printf '    use_backend app if { hdr(host) -i h%d.bench } { path_beg /r%d/ }\n' "$i" "$i"
            done
        fi
        cat <<EOF
    default_backend app

backend app
    balance $row_haproxy_balance
    option httpchk GET /
EOF
        for ((i = 0; i < row_backends; i++)); do
            printf '    server b%d 127.0.0.1:%s check inter 2s\n' "$i" "${backend_ports[i]}"
        done
    } >"$tmp/$name.cfg"
    haproxy -c -q -f "$tmp/$name.cfg" >&2 || die "haproxy rejected $tmp/$name.cfg"
    start_bg "$name" "${pin_px[@]}" haproxy -db -f "$tmp/$name.cfg"
    wait_listening "$name" "$last_pid" "$port"
    port_of[$name]=$port pid_of[$name]=$last_pid
}

start_switchyard() {
    # start_switchyard NAME BALANCE EXTRA_TOML BIN
    local name=$1 balance=$2 extra=$3 bin=$4 port admin i flags
    port=$(free_port)
    admin=$(free_port)
    {
        cat <<EOF
[admin]
listen = "127.0.0.1:$admin"

[limits]
max_connections = 30000
idle_timeout = "120s"

[[listener]]
name = "web"
listen = "127.0.0.1:$port"
EOF
        if ((row_tls)); then
            printf 'tls = { cert = "%s", key = "%s", alpn = ["http/1.1"] }\n' "$tls_cert" "$tls_key"
        fi
        if ((row_routes > 1)); then
            for ((i = 1; i <= row_routes; i++)); do
                printf '\n[[route]]\nname = "r%d"\nlistener = "web"\nhost = "h%d.bench"\npath_prefix = "/r%d/"\npool = "app"\n' "$i" "$i" "$i"
            done
        else
            printf '\n[[route]]\nname = "all"\nlistener = "web"\npool = "app"\n'
        fi
        printf '\n[pool.app]\nbalance = "%s"\nbackends = [\n' "$balance"
        for ((i = 0; i < row_backends; i++)); do
            printf '  { address = "127.0.0.1:%s", weight = 1 },\n' "${backend_ports[i]}"
        done
        printf ']\n\n[pool.app.health]\ntype = "http"\npath = "/"\ninterval = "2s"\ntimeout = "1s"\n'
        if [[ -n $SWITCHYARD_CONFIG_EXTRA ]]; then printf '\n%s\n' "$SWITCHYARD_CONFIG_EXTRA"; fi
        if [[ -n $extra ]]; then printf '\n%s\n' "$extra"; fi
    } >"$tmp/$name.toml"
    if ! "$bin" check --config "$tmp/$name.toml" >"$tmp/$name.check" 2>&1; then
        cat "$tmp/$name.check" >&2
        die "switchyard rejected $tmp/$name.toml (written for contender $name)"
    fi
    flags=(--workers "$PROXY_THREADS" --log-level "$SWITCHYARD_LOG")
    if ((!row_access_log)); then flags+=(--no-access-log); fi
    start_bg "$name" env TOKIO_WORKER_THREADS="$PROXY_THREADS" \
        "${pin_px[@]}" "$bin" "${flags[@]}" --config "$tmp/$name.toml"
    wait_listening "$name" "$last_pid" "$port"
    port_of[$name]=$port pid_of[$name]=$last_pid
}

start_contender() {
    local c=$1
    case $c in
        haproxy | haproxy-b) start_haproxy "$c" ;;
        direct) port_of[$c]=${backend_ports[0]} pid_of[$c]=$pid_nginx ;;
        switchyard) start_switchyard "$c" "$row_balance" "" "$switchyard_bin" ;;
        switchyard-b) start_switchyard "$c" "$row_balance" "" "$SWITCHYARD_BIN_B" ;;
        switchyard-policy)
            start_switchyard "$c" "plugin:$POLICY" \
                "$(printf '[plugin.%s]\nkind = "routing"\npath = "%s"\n' "$POLICY" "$POLICY_WASM")" \
                "$switchyard_bin"
            ;;
    esac
    local tls=$row_tls
    [[ $c == direct ]] && tls=0
    if [[ $c == direct ]]; then
        (row_path=/ row_host=bench.local check_serves "$c" "${port_of[$c]}" 0)
    else
        check_serves "$c" "${port_of[$c]}" "$tls"
    fi
}

stop_contender() {
    local c=$1
    [[ $c == direct ]] && return 0
    stop_pid "${pid_of[$c]}"
    forget_pid "${pid_of[$c]}"
    cp "$tmp/$c.log" "$raw/$row-$c.log" 2>/dev/null || true
}

declare -A dead
alive() {
    local c=$1
    [[ -z ${dead[$row,$c]:-} ]] || return 1
    if ! kill -0 "${pid_of[$c]}" 2>/dev/null; then
        dead[$row,$c]=1
        log "$c (pid ${pid_of[$c]}) has exited; last lines of its log:"
        tail -n 20 "$tmp/$c.log" >&2 || true
        echo "crash row=$row contender=$c" >>"$summary"
        return 1
    fi
}

trim_log() {
    # The access log at full speed writes megabytes per run: keep the tail only.
    local c=$1
    [[ -f $tmp/$c.log ]] || return 0
    tail -n 50 "$tmp/$c.log" >"$tmp/$c.tail" 2>/dev/null || true
    : >"$tmp/$c.log"
    cat "$tmp/$c.tail" >>"$tmp/$c.log"
}

# ------------------------------------------------------------ load tools ---

stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$RESULTS_DIR/load-$stamp"
summary=$RESULTS_DIR/load-$stamp.txt
raw=$RESULTS_DIR/load-$stamp
mapfile -t pin_lg < <(pin_to 1)

wait_bg() {
    # wait_bg PID: wait for a load generator started in the background (so a
    # signal reaches the trap at once).
    local pid=$1
    pids+=("$pid")
    wait "$pid" || log "load generator exited non-zero"
    forget_pid "$pid"
}

run_wrk() {
    # run_wrk OUTFILE CONNS SECONDS PORT TLS [CLOSE]
    local out=$1 conns=$2 secs=$3 port=$4 tls=$5 close=${6:-0} threads=$WRK_THREADS scheme=http extra=()
    ((threads > conns)) && threads=$conns
    ((tls)) && scheme=https
    ((close)) && extra+=(-H "Connection: close")
    extra+=(-H "Host: $row_host")
    "${pin_lg[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 5s --latency "${extra[@]}" \
        "$scheme://127.0.0.1:$port$row_path" >"$out" 2>&1 &
    wait_bg $!
}

run_h2load() {
    # run_h2load OUTFILE SECONDS PORT: prints rps=... like wrk.awk
    local out=$1 secs=$2 port=$3
    "${pin_lg[@]}" h2load -t 2 -c "$H2_CLIENTS" -m "$H2_STREAMS" -D "$secs" \
        -H "Host: $row_host" "http://127.0.0.1:$port$row_path" >"$out" 2>&1 &
    wait_bg $!
}

run_handshakes() {
    # run_handshakes OUTFILE SECONDS PORT: HANDSHAKE_CLIENTS parallel s_time -new
    local out=$1 secs=$2 port=$3 i clients=()
    for ((i = 1; i <= HANDSHAKE_CLIENTS; i++)); do
        "${pin_lg[@]}" openssl s_time -connect "127.0.0.1:$port" -new -time "$secs" \
            >"$out.$i" 2>&1 &
        clients+=("$!")
    done
    for i in "${clients[@]}"; do wait_bg "$i"; done
    cat "$out".* >"$out"
    rm -f "$out".*
}

measure() {
    # measure ROW CONTENDER OUTFILE SECONDS: runs the row's load, prints key=value.
    local row=$1 c=$2 out=$3 secs=$4 port=${port_of[$2]} tls=$row_tls
    [[ $c == direct ]] && tls=0
    case $row in
        h2)
            run_h2load "$out" "$secs" "$port"
            awk -f "$here/load/h2load.awk" "$out"
            ;;
        tls-full-handshakes)
            run_handshakes "$out" "$secs" "$port"
            awk -v secs="$secs" '/connections in [0-9.]+ real seconds/ { n += $1 }
                END { printf "rps=%.0f p50_ms=NA p99_ms=NA requests=%d socket_errors=0 non2xx=0\n", n / secs, n }' "$out"
            ;;
        tls-new-conn)
            run_wrk "$out" "$row_conns" "$secs" "$port" "$tls" 1
            awk -f "$here/load/wrk.awk" "$out"
            ;;
        *)
            run_wrk "$out" "$row_conns" "$secs" "$port" "$tls"
            awk -f "$here/load/wrk.awk" "$out"
            ;;
    esac
}

run_row() {
    local row=$1 contenders=$2 c r out res load
    for c in $contenders; do start_contender "$c"; done
    if ((WARMUP > 0)); then
        for c in $contenders; do
            alive "$c" || continue
            measure "$row" "$c" "$raw/warmup-$row-$c.txt" "$WARMUP" >/dev/null
            trim_log "$c"
        done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for c in $contenders; do
            alive "$c" || continue
            out=$raw/$row-$c-r$r.txt
            load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo NA)
            res=$(measure "$row" "$c" "$out" "$DURATION")
            echo "run row=$row contender=$c round=$r $res loadavg=$load" >>"$summary"
            alive "$c" || true
            trim_log "$c"
            declare -A f=()
            for kv in $res; do f[${kv%%=*}]=${kv#*=}; done
            printf '[load] %-20s round %d  %-18s %10s req/s  p99 %8s ms  errors %s  non-2xx %s\n' \
                "$row" "$r" "$c" "${f[rps]}" "${f[p99_ms]}" "${f[socket_errors]}" "${f[non2xx]}" >&2
            if [[ ${f[socket_errors]} != 0 || ${f[non2xx]} != 0 || ${f[rps]} == NA ]]; then
                log "anomaly: $c in row $row, round $r (see $out)"
            fi
        done
    done
    for c in $contenders; do stop_contender "$c"; done
}

run_idle_row() {
    # Per proxy: warm up, RSS, a lone client's latency; then IDLE_CONNECTIONS held
    # idle: RSS again and the lone client's latency again.
    local contenders=$1 c holder held want before after lat_free lat_held per_conn
    for c in $contenders; do
        [[ $c == direct ]] && continue
        start_contender "$c"
        run_wrk "$raw/idle-$c-warmup.txt" 64 "$((WARMUP > 0 ? WARMUP : 1))" "${port_of[$c]}" 0
        trim_log "$c"
        sleep 1
        before=$(rss_kb "${pid_of[$c]}")
        run_wrk "$raw/idle-$c-free.txt" 1 "$DURATION" "${port_of[$c]}" 0
        lat_free=$(awk -f "$here/load/wrk.awk" "$raw/idle-$c-free.txt")
        want=$IDLE_CONNECTIONS
        # HAProxy cannot take more than its maxconn (see the descriptor limit).
        [[ $c == haproxy* ]] && ((want > haproxy_maxconn - 16)) && want=$((haproxy_maxconn - 16))
        "${pin_lg[@]}" python3 "$here/load/hold.py" 127.0.0.1 "${port_of[$c]}" "$want" \
            >"$raw/idle-$c-hold.txt" 2>&1 &
        holder=$!
        pids+=("$holder")
        for ((i = 0; i < 1500; i++)); do
            grep -q '^held' "$raw/idle-$c-hold.txt" 2>/dev/null && break
            kill -0 "$holder" 2>/dev/null || break
            sleep 0.1
        done
        held=$(awk '/^held/ { print $2 }' "$raw/idle-$c-hold.txt")
        held=${held:-0}
        # Switchyard parks a connection idle for 1 s; give every one time to settle.
        sleep 3
        after=$(rss_kb "${pid_of[$c]}")
        run_wrk "$raw/idle-$c-held.txt" 1 "$DURATION" "${port_of[$c]}" 0
        lat_held=$(awk -f "$here/load/wrk.awk" "$raw/idle-$c-held.txt")
        stop_pid "$holder"
        forget_pid "$holder"
        per_conn=NA
        ((held > 0)) && per_conn=$(((after - before) * 1024 / held))
        declare -A free=() hold=()
        for kv in $lat_free; do free[${kv%%=*}]=${kv#*=}; done
        for kv in $lat_held; do hold[${kv%%=*}]=${kv#*=}; done
        echo "idle contender=$c held=$held rss_before_kb=$before rss_after_kb=$after per_conn_bytes=$per_conn p50_free_ms=${free[p50_ms]} p99_free_ms=${free[p99_ms]} p50_held_ms=${hold[p50_ms]} p99_held_ms=${hold[p99_ms]}" >>"$summary"
        log "idle: $c held $held connections: RSS $before -> $after KiB ($per_conn bytes each); lone client p50/p99 ${free[p50_ms]}/${free[p99_ms]} ms free, ${hold[p50_ms]}/${hold[p99_ms]} ms held"
        ((held == want)) || log "anomaly: $c held only $held of $want (see $raw/idle-$c-hold.txt)"
        stop_contender "$c"
    done
}

{
    echo "# switchyard load benchmark $stamp"
    echo "meta date=$(date -Is) host_cpus=$(nproc) rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "meta cpu=\"$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)\" kernel=$(uname -r)"
    echo "meta rows=\"$ROWS\" duration_s=$DURATION rounds=$ROUNDS warmup_s=$WARMUP wrk_threads=$WRK_THREADS"
    echo "meta proxy_threads=$PROXY_THREADS pin=$PIN body_bytes=$BODY_BYTES extra_contenders=\"$EXTRA_CONTENDERS\""
    echo "meta tls_key=$TLS_KEY h2=${H2_CLIENTS}x$H2_STREAMS idle_connections=$IDLE_CONNECTIONS policy=$POLICY"
    echo "meta haproxy=\"$(haproxy -v 2>/dev/null | head -n 1)\""
    echo "meta nginx=\"$(nginx -v 2>&1 | head -n 1)\" wrk=\"$(wrk -v 2>&1 | head -n 1 | cut -c1-40)\" h2load=\"$(h2load --version 2>&1 | head -n 1)\""
    echo "meta switchyard_bin=$switchyard_bin switchyard_log=$SWITCHYARD_LOG"
} >"$summary"

if [[ $PIN == 1 ]]; then
    log "cores: proxies pinned to CPU 0; load generators and nginx pinned to CPU 1"
else
    log "cores: nothing pinned; the load generator, nginx (1 worker) and the proxy ($PROXY_THREADS worker threads) share all $(nproc) cores"
fi
log "rows: $ROWS; $ROUNDS rounds of ${DURATION}s; results in $summary"

for row in $ROWS; do
    set_row "$row"
    contenders="haproxy switchyard"
    case $row in
        wasm) contenders="haproxy switchyard switchyard-policy" ;;
        idle) ;;
        # wrk straight at a backend is no ceiling for these
        h2 | tls-full-handshakes) contenders+=" ${EXTRA_CONTENDERS//direct/}" ;;
        *) contenders+=" $EXTRA_CONTENDERS" ;;
    esac
    log "row $row: $contenders"
    if [[ $row == idle ]]; then
        run_idle_row "$contenders"
    else
        run_row "$row" "$contenders"
    fi
done

# ---------------------------------------------------------------- summary ---

awk -v rows="$ROWS" -f "$here/load/summary.awk" "$summary" >"$tmp/report.txt"
grep -E '^(median|ratio|scaling)' "$tmp/report.txt" >>"$summary" || true
echo
sed -n 's/^# //p' "$tmp/report.txt"
echo
log "summary: $summary"
log "raw output: $raw/"
