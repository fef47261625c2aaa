#!/bin/sh
# Follow under write load: commit lag, follower RSS and CPU, log bytes vs the AOF redis-server writes.
# Usage: benches/follow.sh [SECONDS] [CLIENTS]   (needs redis-server, redis-benchmark, a release build)
set -eu
SECS=${1:-60}
CLIENTS=${2:-50}
BIN=${RDBVAULT:-target/release/rdbvault}
WORK=$(mktemp -d)
trap 'kill $FOLLOW $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + $$ % 10000))
redis-server --port "$PORT" --dir "$WORK" --save '' --appendonly yes --daemonize no --logfile "$WORK/redis.log" &
SERVER=$!
sleep 1
export RDBVAULT_PASSWORD=bench
"$BIN" -r "$WORK/repo" init --kdf-memory-kib 8192 >/dev/null
"$BIN" -r "$WORK/repo" follow "redis://127.0.0.1:$PORT" >"$WORK/follow.log" 2>&1 &
FOLLOW=$!
sleep 7
redis-benchmark -p "$PORT" -P 16 -c "$CLIENTS" -t set,lpush,hset -r 100000 -n 100000000 -q >/dev/null 2>&1 &
LOAD=$!
: >"$WORK/samples"
i=0
while [ "$i" -lt "$SECS" ]; do
    # lag: master offset minus the offset the follower acknowledged (= committed)
    redis-cli -p "$PORT" info replication | tr -d '\r' | awk -F'[:,=]' '/^master_repl_offset/{m=$2} /^slave0/{for(k=1;k<=NF;k++) if($k=="offset") o=$(k+1)} END{print m-o}' >>"$WORK/lag"
    ps -o rss=,time= -p "$FOLLOW" >>"$WORK/samples"
    sleep 1
    i=$((i + 1))
done
kill "$LOAD"
sleep 2
kill -TERM "$FOLLOW"; wait "$FOLLOW" || true
echo "commit lag (bytes behind, p99): $(sort -n "$WORK/lag" | awk '{a[NR]=$1} END{print a[int(NR*0.99)]}')"
echo "follower peak RSS (KiB): $(awk '{print $1}' "$WORK/samples" | sort -n | tail -1)"
echo "follower CPU time: $(tail -1 "$WORK/samples" | awk '{print $2}') over ${SECS}s"
echo "AOF bytes: $(du -sb "$WORK/appendonlydir" | cut -f1)"
echo "repository bytes: $(du -sb "$WORK/repo" | cut -f1)"
"$BIN" -r "$WORK/repo" timeline
