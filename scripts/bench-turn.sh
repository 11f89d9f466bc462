#!/bin/sh
# Compares huddle's bundled TURN server with coturn's turnserver under the
# same turnutils_uclient load, each server its own process on core 0
# (huddle with GOMAXPROCS=1, coturn with --relay-threads=1), the load
# (turnutils_uclient, and turnutils_peer echoing) on core 1.
#
# Usage: scripts/bench-turn.sh [huddle|coturn ...]   (default: both)
# Environment:
#   RUNS=3         runs per server and rate; medians are reported
#   RATES="46 23"  uclient clients (-m) per rate; each sends one message per
#                  INTERVAL ms, echoed back by the peer, so the offered rate
#                  is 2 * clients * 1000 / INTERVAL relayed packets/s
#                  (46 clients: 92k pkt/s; 23: 46k pkt/s)
#   INTERVAL=1     uclient -z, ms between a client's messages
#   DURATION=20    seconds each client sends (uclient -n = DURATION*1000/INTERVAL)
#   SIZE=200       uclient -l, payload bytes
#   PROFILE=FILE   save a 10 s CPU profile of huddle, in an extra run at the
#                  first rate that is not counted
#   HUDDLE_BIN=F   measure this huddle binary instead of building one
#   Other HUDDLE_* variables reach huddle, e.g. HUDDLE_TURN_UDP_SOCKETS=2.
#
# Rate: uclient starts its clients 1 to 6 s after connecting and prints its
# totals once a second; "pkt/s" is twice the median per-second count of
# echoes received from second 8 to second DURATION, when every client sends.
# "loss" is 1 - received/sent over the whole run. "us/pkt" is the server's
# CPU time (utime+stime of /proc/PID/stat, every thread) over the run divided
# by the packets relayed (sent + received: each message crosses the relay
# twice). Each run also prints, on stderr, where datagrams were dropped for
# want of receive buffer. Every run holds /tmp/bench.lock.
set -eu
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
RATES="${RATES:-46 23}"
INTERVAL="${INTERVAL:-1}"
DURATION="${DURATION:-20}"
SIZE="${SIZE:-200}"
SECRET="bench-turn-secret-0123456789"
# Below the ephemeral range (32768-60999), like the relay range above it.
HUDDLE_PORT=23478
COTURN_PORT=23479
PEER_PORT=23480
SIGNAL_ADDR=127.0.0.1:23481
METRICS_ADDR=127.0.0.1:23482
SERVERS="${*:-huddle coturn}"

work="$(mktemp -d)"
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ -n "${HUDDLE_BIN:-}" ]; then
	cp "$HUDDLE_BIN" "$work/huddle"
else
	scripts/build.sh "$work/huddle"
fi

# wait_udp PORT: until something listens on 127.0.0.1:PORT/udp.
wait_udp() {
	i=0
	until ss -Huln "sport = :$1" | grep -q .; do
		i=$((i + 1))
		[ "$i" -lt 100 ] || { echo "nothing listens on udp $1" >&2; exit 1; }
		sleep 0.1
	done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# port_drops PORT: datagrams dropped by the sockets bound to PORT (full
# receive buffers), from /proc/net/udp.
port_drops() {
	awk -v port="$(printf '%04X' "$1")" 'NR > 1 { split($2, a, ":"); if (a[2] == port) d += $NF } END { print d + 0 }' /proc/net/udp
}

# all_drops: receive-buffer drops of every UDP socket of the host.
all_drops() { awk '/^Udp:/ && ++n == 2 { print $6 }' /proc/net/snmp; }

taskset -c 1 turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >"$work/peer.log" 2>&1 &
pids="$pids $!"
wait_udp "$PEER_PORT"

start_huddle() {
	env GOMAXPROCS=1 HUDDLE_ADDR="$SIGNAL_ADDR" \
		HUDDLE_METRICS_ADDR="$METRICS_ADDR" HUDDLE_PPROF=true \
		HUDDLE_TURN_ADDR="127.0.0.1:$HUDDLE_PORT" HUDDLE_TURN_PUBLIC_IP=127.0.0.1 \
		HUDDLE_TURN_RELAY_PORTS=61000-65535 HUDDLE_TURN_ALLOW_PEERS=127.0.0.0/8 \
		HUDDLE_TURN_SECRET="$SECRET" HUDDLE_TURN_MAX_ALLOCATIONS=100000 \
		HUDDLE_LOG_LEVEL=warn \
		taskset -c 0 "$work/huddle" >"$work/huddle.log" 2>&1 &
	server_pid=$!
	port=$HUDDLE_PORT
}

start_coturn() {
	taskset -c 0 turnserver -n --listening-ip=127.0.0.1 --listening-port="$COTURN_PORT" \
		--relay-ip=127.0.0.1 --min-port=61000 --max-port=65535 \
		--use-auth-secret --static-auth-secret="$SECRET" --realm=huddle \
		--no-tls --no-dtls --no-cli --allow-loopback-peers --no-multicast-peers \
		--relay-threads=1 --log-file=stdout --simple-log --no-stdout-log \
		--pidfile="$work/turnserver.pid" >"$work/coturn.log" 2>&1 &
	server_pid=$!
	port=$COTURN_PORT
}

# uclient CLIENTS: the load, under the lock; with a PROFILE argument, a CPU
# profile of huddle is taken from second 8 to 18 of the run, in the lock.
uclient() {
	flock /tmp/bench.lock sh -c '
		if [ -n "$2" ]; then
			(sleep 8 && curl -fsS -o "$2" "http://$3/debug/pprof/profile?seconds=10") &
		fi
		taskset -c 1 turnutils_uclient -W "$4" -e 127.0.0.1 -r "$5" -p "$6" \
			-m "$1" -n "$7" -l "$8" -z "$9" -c 127.0.0.1
		status=$?
		wait
		exit $status' sh "$1" "${2:-}" "$METRICS_ADDR" "$SECRET" "$PEER_PORT" "$port" \
		"$((DURATION * 1000 / INTERVAL))" "$SIZE" "$INTERVAL" >"$work/uclient.log" 2>&1
}

# run NAME CLIENTS: one measuring run; appends "name clients pkt/s loss us/pkt".
run() {
	before=$(cpu_ticks "$server_pid")
	ld0=$(port_drops "$port") pd0=$(port_drops "$PEER_PORT") ad0=$(all_drops)
	if ! uclient "$2"; then
		echo "  $1 $2: turnutils_uclient failed; its last lines:" >&2
		tail -5 "$work/uclient.log" >&2
		return 0
	fi
	after=$(cpu_ticks "$server_pid")
	ld=$(($(port_drops "$port") - ld0)) pd=$(($(port_drops "$PEER_PORT") - pd0)) ad=$(($(all_drops) - ad0))
	echo "  $1 $2: receive-buffer drops: server listener $ld, echo peer $pd, others (relays, clients) $((ad - ld - pd))" >&2
	awk -v name="$1" -v clients="$2" -v dur="$DURATION" -v ticks="$((after - before))" \
		-v hz="$(getconf CLK_TCK)" '
		/start_mclient: msz=/ {
			t = $1 + 0
			match($0, /tot_recv_msgs=[0-9]+/); r = substr($0, RSTART + 14, RLENGTH - 14) + 0
			if (t >= 8 && t <= dur && seen) d[++k] = r - prev
			prev = r; seen = 1
		}
		/start_mclient: tot_send_msgs=/ {
			match($0, /tot_send_msgs=[0-9]+/); sent = substr($0, RSTART + 14, RLENGTH - 14) + 0
			match($0, /tot_recv_msgs=[0-9]+/); recv = substr($0, RSTART + 14, RLENGTH - 14) + 0
		}
		END {
			if (sent == 0 || k == 0) { print "no totals in uclient output" > "/dev/stderr"; exit 1 }
			# median of the per-second deltas (insertion sort: few values)
			for (i = 2; i <= k; i++) { v = d[i]; for (j = i - 1; j > 0 && d[j] > v; j--) d[j + 1] = d[j]; d[j + 1] = v }
			med = (k % 2) ? d[(k + 1) / 2] : (d[k / 2] + d[k / 2 + 1]) / 2
			printf "%s %d %.0f %.3f %.2f\n", name, clients, 2 * med, 100 * (sent - recv) / sent,
				ticks * 1e6 / hz / (sent + recv)
		}' "$work/uclient.log" | tee -a "$work/results"
}

echo "server clients pkt/s loss% us/pkt"
for s in $SERVERS; do
	"start_$s"
	pids="$pids $server_pid"
	wait_udp "$port"
	if [ -n "${PROFILE:-}" ] && [ "$s" = huddle ]; then
		# An extra run, not counted: the profiler costs CPU.
		uclient "${RATES%% *}" "$PROFILE"
		echo "  CPU profile of huddle at ${RATES%% *} clients: $PROFILE" >&2
	fi
	for m in $RATES; do
		i=0
		while [ "$i" -lt "$RUNS" ]; do
			run "$s" "$m"
			i=$((i + 1))
		done
	done
	kill "$server_pid"
	wait "$server_pid" 2>/dev/null || true
done

echo
echo "medians over $RUNS runs (offered: 2 * clients * 1000 / $INTERVAL pkt/s, $SIZE-byte payloads)"
echo "server clients offered pkt/s loss% us/pkt"
sort -k1,1 -k2,2n "$work/results" | awk -v iv="$INTERVAL" '
	function med(a, n,   i, j, v) {
		for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j > 0 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function flush() {
		if (n == 0) return
		printf "%s %d %d %.0f %.3f %.2f\n", key1, key2, 2 * key2 * 1000 / iv, med(r, n), med(l, n), med(u, n)
		us[key1 " " key2] = med(u, n)
		delete r; delete l; delete u; n = 0
	}
	{ if ($1 != key1 || $2 != key2) flush(); key1 = $1; key2 = $2; n++; r[n] = $3; l[n] = $4; u[n] = $5; m[$2] = 1 }
	END {
		flush()
		for (c in m) if (("huddle " c) in us && ("coturn " c) in us && us["coturn " c] > 0)
			printf "ratio huddle/coturn us/pkt at %d clients: %.2f\n", c, us["huddle " c] / us["coturn " c]
	}'
