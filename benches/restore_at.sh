#!/bin/sh
# restore --at of a large base plus its log, against redis-server loading the equivalent
# AOF directory it wrote itself (base RDB preamble + incr AOF, no rewrite during the run).
# Usage: benches/restore_at.sh [KEYS] [LOG_SECONDS]
#   KEYS keys of 100-byte values (DEBUG POPULATE; 8000000 give a base RDB of about 1 GiB),
#   then LOG_SECONDS of redis-benchmark -P 16 writes while following.
# Needs redis-server, redis-cli, redis-benchmark and a release build (RDBVAULT=path to override).
set -eu
KEYS=${1:-8000000}
LOG_SECS=${2:-30}
BIN=${RDBVAULT:-target/release/rdbvault}
WORK=$(mktemp -d)
PORT=$((20000 + $$ % 10000))
trap 'kill $FOLLOW $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
FOLLOW=
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
mkdir "$WORK/src"
redis-server --port "$PORT" --enable-debug-command yes --dir "$WORK/src" --save '' --appendonly yes --aof-use-rdb-preamble yes \
    --auto-aof-rewrite-percentage 0 --daemonize no --logfile "$WORK/src/redis.log" &
SERVER=$!
until redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; do sleep 0.1; done
redis-cli -p "$PORT" debug populate "$KEYS" key 100 | grep -qx OK || { echo "DEBUG POPULATE failed" >&2; exit 1; }
# The base of the server's own AOF directory: an RDB preamble of the populated keys.
redis-cli -p "$PORT" bgrewriteaof >/dev/null
until redis-cli -p "$PORT" info persistence | grep -q '^aof_rewrite_in_progress:0'; do sleep 0.2; done
sleep 1
export RDBVAULT_PASSWORD=bench
"$BIN" -r "$WORK/repo" init --kdf-memory-kib 8192 >/dev/null
START=$(now)
"$BIN" -r "$WORK/repo" follow "redis://127.0.0.1:$PORT" >"$WORK/follow.log" 2>&1 &
FOLLOW=$!
until redis-cli -p "$PORT" info replication | grep -q 'state=online'; do sleep 0.2; done
echo "base taken by follow (full sync of $KEYS keys): $(since "$START") s"
redis-benchmark -p "$PORT" -P 16 -c 50 -t set,lpush,hset -r 1000000 -n 1000000000 -q >/dev/null 2>&1 &
LOAD=$!
sleep "$LOG_SECS"
kill "$LOAD"; wait "$LOAD" 2>/dev/null || true
redis-cli -p "$PORT" wait 1 60000 >/dev/null
AT=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
DIGEST=$(redis-cli -p "$PORT" debug digest)
sleep 1
kill -TERM "$FOLLOW"; wait "$FOLLOW" || true
FOLLOW=
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
echo "server's AOF dir: $(du -sb "$WORK/src/appendonlydir" | cut -f1) bytes ($(ls "$WORK/src/appendonlydir" | tr '\n' ' '))"
echo "repository: $(du -sb "$WORK/repo" | cut -f1) bytes"
START=$(now)
"$BIN" -r "$WORK/repo" restore --at "$AT" --target "$WORK/ours/appendonlydir"
WRITE=$(since "$START")
echo "restore --at to an AOF dir: $WRITE s"
# Seconds until a redis-server on the AOF dir in $1 answers PING (loaded); checks the digest.
load_time() {
    P=$((PORT + 1))
    START=$(now)
    redis-server --port "$P" --enable-debug-command yes --dir "$1" --appendonly yes --appenddirname appendonlydir --save '' --daemonize no --logfile "$1/load.log" &
    L=$!
    until redis-cli -p "$P" ping 2>/dev/null | grep -q PONG; do sleep 0.05; done
    T=$(since "$START")
    D=$(redis-cli -p "$P" debug digest)
    kill "$L"; wait "$L" 2>/dev/null || true
    [ "$D" = "$DIGEST" ] || echo "DIGEST MISMATCH in $1: $D, expected $DIGEST" >&2
    echo "$T"
}
THEIRS=$(load_time "$WORK/src")
OURS=$(load_time "$WORK/ours")
echo "redis-server loading its own AOF dir: $THEIRS s"
echo "redis-server loading the restored AOF dir: $OURS s"
echo "ratio (restore --at + load) / (redis loading its own): $(echo "scale=2; ($WRITE + $OURS) / $THEIRS" | bc)"
P=$((PORT + 2))
redis-server --port "$P" --enable-debug-command yes --save '' --daemonize no --logfile "$WORK/to.log" &
L=$!
until redis-cli -p "$P" ping 2>/dev/null | grep -q PONG; do sleep 0.05; done
START=$(now)
"$BIN" -r "$WORK/repo" restore --at "$AT" --to "redis://127.0.0.1:$P" >/dev/null
TO=$(since "$START")
[ "$(redis-cli -p "$P" debug digest)" = "$DIGEST" ] || echo "DIGEST MISMATCH after restore --to" >&2
kill "$L"; wait "$L" 2>/dev/null || true
echo "restore --at --to a live server: $TO s (ratio to redis loading its own: $(echo "scale=2; $TO / $THEIRS" | bc))"
echo "load: $(uptime)"
