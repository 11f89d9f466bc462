#!/usr/bin/env bash
# Measures the signaling hub as docs/benchmarks.md reports it: the server
# alone on core 0 (GOMAXPROCS=1), huddle-peer load on core 1, on loopback.
#
#   scripts/bench-signal.sh [SCENARIO ...]     (default: all; RUNS=3)
#
# Scenarios: idle (15,000 idle peers: RSS per peer), joins (1,000 joins/s
# for 10 s: join latency), relay10k (10k msgs/s with 10,000 idle peers
# held), relay50k, relay100k (100 peers in 50 rooms). Each prints the load
# tool's report lines; take the median of the runs. Needs 20,000 open
# files per process (ulimit -n) and two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
out="${BENCH_DIR:-$(mktemp -d)}"
addr=127.0.0.1:18090
metrics=127.0.0.1:19090
scripts/build.sh "$out/huddle"
scripts/build.sh "$out/huddle-peer" ./cmd/huddle-peer
ulimit -n 20000

server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

start_server() {
  HUDDLE_ADDR=$addr HUDDLE_METRICS_ADDR=$metrics HUDDLE_TURN_ENABLED=false \
    HUDDLE_MAX_CONNS_PER_IP=0 HUDDLE_HANDSHAKE_RATE=0 \
    HUDDLE_RATE_LIMIT=100000 HUDDLE_RATE_BURST=100000 HUDDLE_LOG_LEVEL=warn \
    GOMAXPROCS=1 taskset -c 0 "$out/huddle" >"$out/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://$addr/healthz" >/dev/null && return 0
    sleep 0.1
  done
  echo "the server did not start:" >&2
  cat "$out/server.log" >&2
  exit 1
}

load() {
  taskset -c 1 "$out/huddle-peer" load --url "ws://$addr/ws" \
    --metrics "http://$metrics/metrics" --progress 0 "$@" |
    grep -E '^(OK|FAIL)|messages|join |relay |errors|server '
}

scenario() {
  case "$1" in
  idle) load --idle 15000 --rooms 0 --ramp 10s --duration 1s ;;
  joins) load --idle 10000 --rooms 0 --ramp 10s --duration 1s ;;
  relay10k) load --idle 10000 --rooms 50 --rate 100 --ramp 8s --duration 10s ;;
  relay50k) load --rooms 50 --rate 500 --ramp 1s --duration 10s ;;
  relay100k) load --rooms 50 --rate 1000 --ramp 1s --duration 10s ;;
  *)
    echo "unknown scenario $1" >&2
    exit 2
    ;;
  esac
}

scenarios=("$@")
if ((${#scenarios[@]} == 0)); then
  scenarios=(idle joins relay10k relay50k relay100k)
fi
for s in "${scenarios[@]}"; do
  for run in $(seq "$runs"); do
    echo "== $s, run $run of $runs ($(date -u +%FT%TZ))"
    start_server
    scenario "$s"
    stop_server
  done
done
