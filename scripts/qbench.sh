#!/usr/bin/env bash
# qbench.sh: one queue's throughput and end-to-end latency, memory vs Redis vs Redis
# Cluster (BENCHMARKS.md, "One queue: memory vs Redis vs Redis Cluster").
#
#   go build -o /tmp/pbq . && scripts/qbench.sh
#   BINS="/tmp/pb-before /tmp/pb-after" scripts/qbench.sh     # before/after, alternated
#
# Starts its own Redis servers (one on $REDIS_PORT, a 3-master cluster on
# $CLUSTER_PORTS, no persistence, under $DIR) and stops them at the end; never touches
# the shared Redis. Every run gets a fresh queue ($EXCHANGE, qbench_<run>) and Redis
# prefix, and deletes its queue afterwards. The setups alternate, back to back:
# for each round, for each kind, for each mode, for each binary, one run.
#
#   KINDS   tput: 1 instance, -rate $TPUT_RATE (above what one queue takes): deliveries/s
#                 is what the queue sustains
#           drain: 1 instance, $DRAIN messages queued while it cannot reach RabbitMQ
#                 (its AMQP_URL is the bench's -gate, opened once they are queued):
#                 deliveries/s is what it drains a full queue at, with no publisher
#                 taking the same cores
#           lat:  $LAT_INSTANCES instances (default 2; 1 in memory, which cannot
#                 share), clients on the first, -rate $LAT_RATE: p50/p99
#                 publish-to-read
#   MODES   mem redis cluster
#   ROUNDS  runs of each setup (default 3)
#   BINS    the pushbridge binaries to compare (default /tmp/pbq), each named in the
#           results by its file name; every setup runs with each, one after the other
#   PREFETCH  BRIDGE_PREFETCH for the servers (default: the server's default)
#   DELAY   with mode redis, the servers reach Redis through app/bench/delayproxy
#           (built into $DIR), which delivers every chunk DELAY later each way (e.g.
#           250us: a 0.5 ms round trip, Redis in another zone); the bench's
#           -redis-stats still reads Redis directly
#   PROFILE=1 the first instance serves pprof (BRIDGE_PPROF): 2 s into publishing (or
#           draining), an
#           8 s CPU profile ($DIR/<run>.cpu.pprof), then RabbitMQ's channel and queue
#           figures and Redis's INFO commandstats ($DIR/<run>.stats)
#
# Results: one line per run appended to $DIR/results.tsv, each run's bench output,
# server logs and final /metrics in $DIR/<run>.*.
set -u

BINS=${BINS:-/tmp/pbq}
BIN= LABEL=
DIR=${DIR:-/tmp/qbench}
AMQP=${AMQP:-amqp://guest:guest@127.0.0.1:5672/}
EXCHANGE=${EXCHANGE:-qbench_x}
REDIS_PORT=${REDIS_PORT:-26451}
CLUSTER_PORTS=${CLUSTER_PORTS:-"27451 27452 27453"}
KINDS=${KINDS:-"tput lat"}
MODES=${MODES:-"mem redis cluster"}
ROUNDS=${ROUNDS:-3}
TPUT_RATE=${TPUT_RATE:-15000}
LAT_RATE=${LAT_RATE:-5000}
LAT_INSTANCES=${LAT_INSTANCES:-2}
DRAIN=${DRAIN:-200000}
GATE_PORT=${GATE_PORT:-26471}
CONNS=${CONNS:-1000}
DURATION=${DURATION:-10s}
PREFETCH=${PREFETCH:-}
PROFILE=${PROFILE:-}
DELAY=${DELAY:-}
PROXY_PORT=${PROXY_PORT:-26461}
KEEP_REDIS=${KEEP_REDIS:-}

mkdir -p "$DIR"
PIDS=()

die() { echo "qbench: $*" >&2; exit 1; }

start_redis() {
	local port=$1; shift
	if redis-cli -p "$port" ping >/dev/null 2>&1; then
		return 0 # ours from an earlier call (KEEP_REDIS)
	fi
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
		--dir "$DIR" --pidfile "$DIR/redis-$port.pid" --logfile "$DIR/redis-$port.log" "$@" ||
		die "redis-server on $port did not start"
	await_ping "$port" "redis-server"
}

# await_ping waits up to 5 s for a PING on port to be answered (what: who should).
await_ping() {
	for _ in $(seq 50); do
		redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "$2 on $1 does not answer"
}

start_redises() {
	start_redis "$REDIS_PORT"
	local addrs=() p
	for p in $CLUSTER_PORTS; do
		# A node that is not running starts empty: its old nodes file would name a
		# cluster of an earlier call.
		redis-cli -p "$p" ping >/dev/null 2>&1 || rm -f "$DIR/nodes-$p.conf"
		start_redis "$p" --cluster-enabled yes --cluster-config-file "$DIR/nodes-$p.conf"
		addrs+=("127.0.0.1:$p")
	done
	set -- $CLUSTER_PORTS
	if ! redis-cli -p "$1" cluster info | grep -q 'cluster_state:ok'; then
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$DIR/cluster-create.log" 2>&1 ||
			die "cluster create failed: $DIR/cluster-create.log"
		for _ in $(seq 100); do
			redis-cli -p "$1" cluster info | grep -q 'cluster_state:ok' && return 0
			sleep 0.1
		done
		die "cluster not ok"
	fi
}

stop_redises() {
	[ -n "$KEEP_REDIS" ] && return 0
	local p
	for p in $REDIS_PORT $CLUSTER_PORTS; do
		redis-cli -p "$p" shutdown nosave >/dev/null 2>&1
	done
}

# server_redis_url is redis_url, through the delay proxy when DELAY is set.
server_redis_url() {
	if [ "$1" = redis ] && [ -n "$DELAY" ]; then
		echo "redis://127.0.0.1:$PROXY_PORT/0"
	else
		redis_url "$1"
	fi
}

start_proxy() {
	[ -n "$DELAY" ] || return 0
	go build -o "$DIR/delayproxy" ./app/bench/delayproxy || die "building app/bench/delayproxy (run from the repository)"
	"$DIR/delayproxy" -listen "127.0.0.1:$PROXY_PORT" -target "127.0.0.1:$REDIS_PORT" -delay "$DELAY" >"$DIR/delayproxy.log" 2>&1 &
	PROXY_PID=$!
	await_ping "$PROXY_PORT" "delay proxy"
}

redis_url() {
	case $1 in
	redis) echo "redis://127.0.0.1:$REDIS_PORT/0" ;;
	cluster) echo "redis+cluster://$(echo $CLUSTER_PORTS | sed 's/\([0-9]*\)/127.0.0.1:\1/g; s/ /,/g')" ;;
	esac
}

# start_server NAME QUEUE MODE PREFIX [AMQP_URL]: starts one instance, waits until
# /readyz answers 200 (not with its own AMQP_URL: the drain's gate is closed), sets
# PORT_OF to its port.
start_server() {
	local name=$1 q=$2 mode=$3 prefix=$4 amqp=${5:-$AMQP}
	local env=(PORT=0 BRIDGE_DEV=1 BRIDGE_SEND_QUEUE=4096 AMQP_URL="$amqp" BRIDGE_EXCHANGE="$EXCHANGE"
		BRIDGE_BINDINGS="$q=contract")
	[ -n "$PREFETCH" ] && env+=(BRIDGE_PREFETCH="$PREFETCH")
	[ -n "$PROFILE" ] && [ "${name##*.}" = a ] && env+=(BRIDGE_PPROF=127.0.0.1:0)
	if [ "$mode" != mem ]; then
		env+=(REDIS_URL="$(server_redis_url "$mode")" BRIDGE_REDIS_PREFIX="$prefix")
	fi
	env "${env[@]}" "$BIN" >"$DIR/$name.out" 2>"$DIR/$name.log" &
	PIDS+=($!)
	local port=""
	for _ in $(seq 100); do
		port=$(sed -n 's/^pushbridge listening on :\([0-9]*\)$/\1/p' "$DIR/$name.out")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { echo "qbench: $name did not start: $DIR/$name.log" >&2; return 1; }
	PORT_OF=$port
	[ "$amqp" = "$AMQP" ] || return 0
	for _ in $(seq 100); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && break
		sleep 0.1
	done
}

stop_servers() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	PIDS=()
}

metric() { # metric PORT NAME
	curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}

# profile RUN MODE QUEUE: while RUN publishes, a CPU profile of its first instance,
# then what RabbitMQ and Redis say.
profile() {
	local id=$1 mode=$2 q=$3 addr
	addr=$(sed -n 's/.*pprof listening.*addr=\([0-9.:]*\).*/\1/p' "$DIR/$id.a.log")
	for _ in $(seq 6000); do # queueing a drain can take minutes
		grep -Eq '^(publishing|gate open)' "$DIR/$id.bench" 2>/dev/null && break
		sleep 0.1
	done
	sleep 2
	local r0
	[ "$mode" = redis ] && r0=$(redis-cli -p "$REDIS_PORT" info commandstats)
	curl -s -o "$DIR/$id.cpu.pprof" "http://$addr/debug/pprof/profile?seconds=8"
	{
		echo "# rabbitmqctl list_channels (during the run)"
		rabbitmqctl -q list_channels connection name consumer_count messages_unacknowledged prefetch_count acks_uncommitted 2>&1 | grep -v bench
		echo "# rabbitmqctl list_queues"
		rabbitmqctl -q list_queues name messages_ready messages_unacknowledged consumers consumer_utilisation 2>&1 | grep "$q"
		if [ "$mode" = redis ]; then
			echo "# INFO commandstats before the profile"
			echo "$r0"
			echo "# INFO commandstats after"
			redis-cli -p "$REDIS_PORT" info commandstats
		fi
	} >"$DIR/$id.stats"
}

# run KIND MODE ROUND
run() {
	local kind=$1 mode=$2 round=$3
	local id="$LABEL-$kind-$mode-$round-$(date +%H%M%S)"
	local q="qbench_$(echo "$id" | tr -c 'a-zA-Z0-9\n' '_')"
	local prefix="bridge:qbench:$(echo "$id" | tr -c 'a-zA-Z0-9\n' '-'):"
	local rate=$TPUT_RATE instances=1
	if [ "$kind" = lat ]; then
		rate=$LAT_RATE
		[ "$mode" != mem ] && instances=$LAT_INSTANCES
	fi
	local load0
	load0=$(cut -d' ' -f1 /proc/loadavg)
	local port port2="" gate=() amqp=$AMQP
	if [ "$kind" = drain ]; then
		# The queue is declared (and bound) by an instance that then stops; the one
		# measured reaches RabbitMQ through the gate the bench opens once it is full.
		start_server "$id.declare" "$q" "$mode" "$prefix" || { stop_servers; return 1; }
		stop_servers
		amqp="amqp://guest:guest@127.0.0.1:$GATE_PORT/"
		gate=(-drain "$DRAIN" -gate "127.0.0.1:$GATE_PORT")
	fi
	start_server "$id.a" "$q" "$mode" "$prefix" "$amqp" || { stop_servers; return 1; }
	port=$PORT_OF
	if [ "$instances" = 2 ]; then
		start_server "$id.b" "$q" "$mode" "$prefix" || { stop_servers; return 1; }
		port2=$PORT_OF
	fi
	local stats=()
	[ "$mode" != mem ] && stats=(-redis-stats -redis-url "$(redis_url "$mode")")
	echo "== $id: $instances instance(s), $rate msg/s, load $load0"
	local prof=""
	if [ -n "$PROFILE" ]; then
		profile "$id" "$mode" "$q" &
		prof=$!
	fi
	"$BIN" bench -url "http://127.0.0.1:$port" -amqp-url "$AMQP" -exchange "$EXCHANGE" \
		-conns "$CONNS" -rate "$rate" -duration "$DURATION" -sources 4 "${stats[@]}" "${gate[@]}" >"$DIR/$id.bench" 2>&1
	[ -n "$prof" ] && wait "$prof"
	local load1
	load1=$(cut -d' ' -f1 /proc/loadavg)
	local batches=0 acked=0 p b a
	for p in $port $port2; do
		curl -s "http://127.0.0.1:$p/metrics" >>"$DIR/$id.metrics"
		b=$(metric "$p" pushbridge_delivery_batches_total)
		a=$(metric "$p" pushbridge_deliveries_acked_total)
		batches=$(awk -v x="$batches" -v y="${b:-0}" 'BEGIN { print x + y }')
		acked=$(awk -v x="$acked" -v y="${a:-0}" 'BEGIN { print x + y }')
	done
	stop_servers
	rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1
	local pub dlv lat cpu
	pub=$(sed -n 's/^published .*(\([0-9]*\) msg\/s)$/\1/p' "$DIR/$id.bench")
	dlv=$(sed -n 's/^deliveries .* expected, \([0-9]*\)\/s, \([0-9.]*\) %.*/\1 \2%/p' "$DIR/$id.bench")
	lat=$(sed -n 's/^latency *p50 \([^ ]*\)  p90 \([^ ]*\)  p99 \([^ ]*\)  max \([^ ]*\)$/\1 \2 \3 \4/p' "$DIR/$id.bench")
	cpu=$(sed -n 's/^redis  *\([0-9.]*\) commands and \([0-9.]*\) µs.*/\1 \2/p' "$DIR/$id.bench")
	local line
	line=$(printf '%s\t%s\t%s\t%s\t%s\tpub=%s\tdlv=%s\tlat=%s\tbatch=%s\tredis_cmds_cpu_us=%s\tload=%s-%s' \
		"$(date -u +%H:%M:%S)" "$LABEL" "$kind" "$mode" "$round" "$pub" "$dlv" "$lat" \
		"$(awk -v a="$acked" -v b="$batches" 'BEGIN { if (b > 0) printf "%.1f", a / b }')" "$cpu" "$load0" "$load1")
	echo "$line" | tee -a "$DIR/results.tsv"
	grep -E '^(lost|duplicates)' "$DIR/$id.bench" | tr '\n' ' '
	echo
}

PROXY_PID=
trap 'stop_servers; [ -n "$PROXY_PID" ] && kill "$PROXY_PID"; stop_redises' EXIT
for BIN in $BINS; do
	[ -x "$BIN" ] || die "$BIN: build it first (go build -o /tmp/pbq .)"
done
start_redises
start_proxy
for round in $(seq "$ROUNDS"); do
	for kind in $KINDS; do
		for mode in $MODES; do
			for BIN in $BINS; do
				LABEL=$(basename "$BIN")
				run "$kind" "$mode" "$round"
			done
		done
	done
done
