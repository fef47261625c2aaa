#!/usr/bin/env bash
# `export --format jsonl` against `inspect` (the summary) of the same snapshot, time and peak memory.
#
#   benches/export.sh [BYTES]        default: 1 GiB of benches/redisgen.py's mixed data set
#
# Fills a scratch redis-server with ~BYTES of payload, SAVEs, backs the dump up into a scratch
# repository, then runs `inspect SNAP` and `export SNAP --format jsonl > /dev/null` one after the
# other (twice, alternating, so both see the same load) and prints the wall time and peak RSS of
# each and their ratio. Uses target/release/rdbvault (or $RDBVAULT); everything in a temp dir.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BYTES=${1:-1073741824}
BIN=${RDBVAULT:-$ROOT/target/release/rdbvault}
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first (or set RDBVAULT)" >&2; exit 1; }
WORK=$(mktemp -d)
PID=
cleanup() {
  [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly no --daemonize no --logfile "$WORK/redis.log" &
PID=$!
for _ in $(seq 1 100); do [ "$(redis-cli -p "$PORT" ping 2>/dev/null || true)" = PONG ] && break; sleep 0.1; done
python3 "$ROOT/benches/redisgen.py" fill --seed 1 --start 0 --target-bytes "$BYTES" 2>/dev/null | redis-cli -p "$PORT" --pipe >/dev/null
[ "$(redis-cli -p "$PORT" save)" = OK ]
KEYS=$(redis-cli -p "$PORT" dbsize)
redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
wait "$PID" 2>/dev/null || true
PID=

export RDBVAULT_PASSWORD=bench
"$BIN" -r "$WORK/repo" init --kdf-memory-kib 8192 >/dev/null
"$BIN" -q -r "$WORK/repo" backup "$WORK/dump.rdb" >/dev/null
rm "$WORK/dump.rdb"

run() { # label, then the command: prints "label seconds max-rss-kib"
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null
  echo "$label $(cat "$WORK/time")"
}
echo "data set: $KEYS keys (benches/redisgen.py fill, ~$BYTES payload bytes); load average $(cut -d' ' -f1-3 /proc/loadavg)"
{
  for _ in 1 2; do
    run inspect "$BIN" -r "$WORK/repo" inspect latest
    run export "$BIN" -r "$WORK/repo" export latest --format jsonl
  done
} | python3 -c '
import sys
runs = {}
for line in sys.stdin:
    label, secs, rss = line.split()
    runs.setdefault(label, []).append((float(secs), int(rss)))
best = {k: min(v) for k, v in runs.items()}
for k, (s, rss) in best.items():
    each = " ".join("%.2f" % x for x, _ in runs[k])
    print("%-8s %7.2f s  peak RSS %6.0f MiB  (runs: %s)" % (k, s, rss / 1024, each))
print("export / inspect: %.2fx" % (best["export"][0] / best["inspect"][0]))
'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
