#!/bin/sh
# Follow under write load: commit lag, follower RSS and CPU, log bytes vs the AOF redis-server writes.
# Usage: benches/follow.sh [SECONDS] [CLIENTS]   (needs redis-server, redis-benchmark, a release build)
set -eu
SECS=${1:-60}
CLIENTS=${2:-50}
BIN=${RDBVAULT:-target/release/rdbvault}
FOLLOW_ARGS=${FOLLOW_ARGS:-}
WORK=$(mktemp -d)
trap 'kill $FOLLOW $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((20000 + $$ % 10000))
redis-server --port "$PORT" --dir "$WORK" --save '' --appendonly yes --auto-aof-rewrite-percentage 0 --daemonize no --logfile "$WORK/redis.log" &
SERVER=$!
sleep 1
export RDBVAULT_PASSWORD=bench
"$BIN" -r "$WORK/repo" init --kdf-memory-kib 8192 >/dev/null
"$BIN" -r "$WORK/repo" follow "redis://127.0.0.1:$PORT" $FOLLOW_ARGS >"$WORK/follow.log" 2>&1 &
FOLLOW=$!
sleep 7
redis-benchmark -p "$PORT" -P 16 -c "$CLIENTS" -t set,lpush,hset -r 100000 -n 100000000 -q >/dev/null 2>&1 &
LOAD=$!
: >"$WORK/samples"
CMDS0=$(redis-cli -p "$PORT" info stats | tr -d '\r' | awk -F: '/^total_commands_processed/{print $2}')
i=0
while [ "$i" -lt "$SECS" ]; do
    # lag: master offset minus the offset the follower acknowledged (= committed)
    # (bytes behind, master offset): seconds behind = bytes behind / the stream's rate
    redis-cli -p "$PORT" info replication | tr -d '\r' | awk -F'[:,=]' '/^master_repl_offset/{m=$2} /^slave0/{for(k=1;k<=NF;k++) if($k=="offset") o=$(k+1)} END{print m-o, m}' >>"$WORK/lag"
    ps -o rss=,time= -p "$FOLLOW" >>"$WORK/samples"
    sleep 1
    i=$((i + 1))
done
CMDS1=$(redis-cli -p "$PORT" info stats | tr -d '\r' | awk -F: '/^total_commands_processed/{print $2}')
kill "$LOAD"
sleep 2
AT=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1
kill -TERM "$FOLLOW"; wait "$FOLLOW" || true
echo "writes/s: $(( (CMDS1 - CMDS0) / SECS ))"
RATE=$(awk 'NR==2{a=$2} {b=$2; n=NR} END{print (b-a)/(n-2)}' "$WORK/lag")
echo "stream bytes/s: $RATE"
echo "commit lag (bytes behind, p99): $(awk 'NR>2{print $1}' "$WORK/lag" | sort -n | awk '{a[NR]=$1} END{print a[int(NR*0.99)]}')"
echo "commit lag (s, p99): $(awk -v r="$RATE" 'NR>2{print $1/r}' "$WORK/lag" | sort -g | awk '{a[NR]=$1} END{print a[int(NR*0.99)]}')"
echo "follower peak RSS (KiB): $(awk '{print $1}' "$WORK/samples" | sort -n | tail -1)"
# Flat or growing: RSS (KiB) every 30 s of the load.
echo "follower RSS (KiB) every 30 s: $(awk 'NR%30==0{printf "%s ", $1}' "$WORK/samples")"
echo "follower CPU time: $(tail -1 "$WORK/samples" | awk '{print $2}') over ${SECS}s"
echo "AOF bytes: $(du -sb "$WORK/appendonlydir" | cut -f1)"
echo "repository bytes: $(du -sb "$WORK/repo" | cut -f1)"
echo "repository files: $(find "$WORK/repo" -type f | wc -l)"
"$BIN" -r "$WORK/repo" timeline
grep -c merged "$WORK/follow.log" | sed 's/^/compactions: /'
START=$(date +%s.%N)
"$BIN" -r "$WORK/repo" restore --at "$AT" --target "$WORK/restored/appendonlydir" >/dev/null
END=$(date +%s.%N)
echo "restore --at (base + whole log) to an AOF dir: $(echo "$END - $START" | bc) s"
# The same state loaded by redis-server from the AOF it wrote itself, and from our restore.
load_time() {
    P=$((PORT + 1))
    START=$(date +%s.%N)
    redis-server --port "$P" --dir "$1" --appendonly yes --appenddirname appendonlydir --save '' --daemonize no --logfile "$1/load.log" &
    L=$!
    until redis-cli -p "$P" ping 2>/dev/null | grep -q PONG; do sleep 0.05; done
    END=$(date +%s.%N)
    echo "$(echo "$END - $START" | bc) s, $(redis-cli -p "$P" dbsize) keys"
    kill "$L"; wait "$L" 2>/dev/null || true
}
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
echo "redis-server loading its own AOF dir: $(load_time "$WORK")"
echo "redis-server loading the restored AOF dir: $(load_time "$WORK/restored")"
