#!/bin/bash
# pollcost.sh BINARY [LABEL] — CPU of the server and of Redis per answered /poll?cursor=0
# (BENCHMARKS.md, "One user hammering /poll?cursor=0"). It starts a private redis-server on a
# unix socket and BINARY (`pushbridge`) in dev mode with the in-process queue, publishes 500
# broadcasts of 256 bytes, then times 3 rounds of 200 polls made one after another with curl,
# reading the server's CPU from /proc/<pid>/stat and Redis's from INFO cpu. Needs curl,
# redis-server and redis-cli.
set -euo pipefail
BIN=$1
LABEL=${2:-$(basename "$BIN")}
N=200
DIR=$(mktemp -d)
SOCK=$DIR/redis.sock
redis-server --port 0 --unixsocket "$SOCK" --save '' --appendonly no --daemonize yes \
  --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
env -i PATH="$PATH" HOME="$HOME" PORT=0 BRIDGE_DEV=1 BRIDGE_API_KEY=k BRIDGE_BINDINGS=queue_contract=contract \
  REDIS_URL="unix://$SOCK" BRIDGE_USER_RATE=1000000 BRIDGE_USER_BURST=1000000 \
  "$BIN" serve >"$DIR/out" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; kill "$(cat "$DIR/redis.pid")" 2>/dev/null; rm -rf "$DIR"' EXIT
PORT=
for _ in $(seq 100); do
  PORT=$(grep -o 'listening on :[0-9]*' "$DIR/out" | grep -o '[0-9]*$' || true)
  [ -n "$PORT" ] && break
  sleep 0.1
done
U=http://127.0.0.1:$PORT
PAD=$(printf 'x%.0s' $(seq 256))
for i in $(seq 500); do
  curl -sf -o /dev/null -H 'Authorization: Bearer k' -H 'Content-Type: application/json' \
    -d "{\"routingKey\":\"contract\",\"data\":{\"n\":$i,\"pad\":\"$PAD\"}}" "$U/api/publish"
done
# Until the window is in the history (a poll answers a full page, or a full half page).
for _ in $(seq 100); do
  n=$(curl -s "$U/poll?user=h&cursor=0&wait=0" | grep -o '"type"' | wc -l)
  [ "$n" -ge 250 ] && break
  sleep 0.2
done
srv() { awk '{print $14+$15}' "/proc/$PID/stat"; }  # clock ticks, USER_HZ=100
rds() { redis-cli -s "$SOCK" info cpu | grep -E '^used_cpu_(user|sys):' | cut -d: -f2 | tr -d '\r' | paste -sd+ | bc; }
for round in 1 2 3; do
  s0=$(srv); r0=$(rds)
  for _ in $(seq $N); do curl -s -o /dev/null "$U/poll?user=h&cursor=0&wait=0"; done
  s1=$(srv); r1=$(rds)
  echo "$LABEL round $round: server $(( (s1 - s0) * 10000 / N )) µs/poll, redis $(echo "($r1 - $r0) * 1000000 / $N" | bc) µs/poll, answer $(curl -s "$U/poll?user=h&cursor=0&wait=0" | wc -c) bytes"
done
