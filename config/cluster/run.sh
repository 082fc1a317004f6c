#!/usr/bin/env bash
# Three Switchyard instances on one machine, coordinated through a three-member etcd,
# in front of two demo proxies (blue on 9081, green on 9082). Ctrl-C stops everything.
#
#   cargo build --release && config/cluster/run.sh
#
# Needs etcd (Debian: apt-get install etcd-server) and curl. Everything it writes goes
# to a temporary directory, removed on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${SWITCHYARD:-$here/../../target/release/switchyard}"
if [ ! -x "$bin" ]; then
  echo "no switchyard binary at $bin: run cargo build --release first (or set SWITCHYARD)" >&2
  exit 1
fi
command -v etcd >/dev/null || { echo "etcd not found (apt-get install etcd-server)" >&2; exit 1; }
for port in 2379 22379 32379 8081 8082 8083 9901 9902 9903 9081 9082; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use (a system etcd? systemctl stop etcd); this example needs it" >&2
    exit 1
  fi
done

run="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-fleet.XXXXXX")"
cleanup() {
  trap - EXIT INT TERM
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT INT TERM

cluster="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
for n in 1 2 3; do
  port=$(( n == 1 ? 2379 : n * 10000 + 2379 ))
  etcd --name "m$n" --data-dir "$run/etcd-m$n" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "$cluster" --initial-cluster-token switchyard-example --initial-cluster-state new \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    --logger zap --log-level error >"$run/etcd-m$n.log" 2>&1 &
done
for port in 2379 22379 32379; do
  until curl -sf "http://127.0.0.1:$port/health" | grep -q '"true"'; do sleep 0.2; done
done
echo "etcd: members on 127.0.0.1:2379, 22379, 32379"

"$bin" demo --listen 127.0.0.1:9081 --admin 127.0.0.1:9971 --no-access-log >"$run/blue.log" 2>&1 &
"$bin" demo --listen 127.0.0.1:9082 --admin 127.0.0.1:9972 --no-access-log >"$run/green.log" 2>&1 &

cp "$here"/edge-*.toml "$run/"
for n in 1 2 3; do
  "$bin" --config "$run/edge-$n.toml" --no-access-log >"$run/edge-$n.log" 2>&1 &
done
for n in 1 2 3; do
  until curl -sf "http://127.0.0.1:990$n/health/ready" >/dev/null; do sleep 0.2; done
done

cat <<USAGE
switchyard: edge-1, edge-2, edge-3 serve http://127.0.0.1:8081/, :8082/, :8083/
            admin and dashboards on http://127.0.0.1:9901/, :9902/, :9903/
            logs in $run

Try:
  curl -s http://127.0.0.1:9901/cluster                      # the fleet as edge-1 sees it
  curl -s -X POST -H 'content-type: application/json' \\
       http://127.0.0.1:9902/routes/web/switch -d '{"pool": "green"}'
  curl -s http://127.0.0.1:8083/                             # edge-3 follows at once
  $bin ctl --admin 127.0.0.1:9903 rollout web --to blue --steps 25,100 --interval 10s
  $bin cluster push $here/shared.toml
  $bin cluster status --config $run/edge-1.toml

Ctrl-C stops everything.
USAGE
wait
