#!/usr/bin/env bash
# `restore --to --all` throughput against redis-server loading the same RDB at start-up.
#
#   benches/restore_to.sh [KEYS] [CONNECTIONS...]     defaults: 600000 keys; 1 and 4 connections
#
# Generates KEYS keys of benches/redisgen.py's mixed data set into a scratch redis-server,
# SAVEs, starts a second redis-server on that dump.rdb (its log gives the load time), backs
# the dump up into a scratch repository and restores it into an empty redis-server once per
# CONNECTIONS value. Prints keys/s of each and the ratio to redis-server's own load.
# Uses target/release/rdbvault (or $RDBVAULT). Everything runs on 127.0.0.1 in a temp dir.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${1:-600000}
shift || true
CONNS=("$@")
[ ${#CONNS[@]} -gt 0 ] || CONNS=(1 4)
# shellcheck source=support/scratch.sh
. "$ROOT/benches/support/scratch.sh"

SRC_PORT=$(free_port)
start "$WORK/src" "$SRC_PORT"
python3 "$ROOT/benches/redisgen.py" append --seed 1 --start 0 --keys "$KEYS" | redis-cli -p "$SRC_PORT" --pipe >/dev/null
[ "$(redis-cli -p "$SRC_PORT" save)" = OK ]
TOTAL=$(redis-cli -p "$SRC_PORT" dbsize)
RDB_BYTES=$(stat -c %s "$WORK/src/dump.rdb")

# redis-server's own load of the dump at start-up.
mkdir -p "$WORK/load"
cp "$WORK/src/dump.rdb" "$WORK/load/dump.rdb"
LOAD_PORT=$(free_port)
start "$WORK/load" "$LOAD_PORT"
LOAD_SECS=$(sed -n 's/.*DB loaded from disk: \([0-9.]*\) seconds.*/\1/p' "$WORK/load/redis.log" | tail -1)
[ -n "$LOAD_SECS" ] || { echo "no load time in the redis-server log" >&2; exit 1; }
SERVER_RATE=$(python3 -c "print(round($TOTAL / max($LOAD_SECS, 1e-6)))")

export RDBVAULT_PASSWORD=bench
"$BIN" -r "$WORK/repo" init --kdf-memory-kib 8192 >/dev/null
"$BIN" -q -r "$WORK/repo" backup "$WORK/src/dump.rdb" >/dev/null

echo "data set: $TOTAL keys (benches/redisgen.py mix), RDB $RDB_BYTES bytes; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "redis-server start-up load: $LOAD_SECS s, $SERVER_RATE keys/s"
for n in "${CONNS[@]}"; do
  PORT=$(free_port)
  start "$WORK/dst-$n" "$PORT"
  T0=$(date +%s.%N)
  OUT=$("$BIN" --json -r "$WORK/repo" restore latest --to "redis://127.0.0.1:$PORT" --all --connections "$n")
  T1=$(date +%s.%N)
  python3 - "$OUT" "$T0" "$T1" "$SERVER_RATE" "$n" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
wall = float(sys.argv[3]) - float(sys.argv[2])
server, n = float(sys.argv[4]), sys.argv[5]
load = r["duration_ms"] / 1000
rate, wall_rate = r["restored"] / load, r["restored"] / wall
print(f"restore --to --connections {n}: {r['restored']} keys in {load:.2f} s (load step), {rate:.0f} keys/s = {rate / server:.2f}x; "
      f"whole command {wall:.2f} s, {wall_rate:.0f} keys/s = {wall_rate / server:.2f}x")
EOF
  [ "$(redis-cli -p "$PORT" dbsize)" = "$TOTAL" ] || { echo "the target holds $(redis-cli -p "$PORT" dbsize) keys, not $TOTAL" >&2; exit 1; }
done
