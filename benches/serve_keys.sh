#!/usr/bin/env bash
# Key index latency on a large snapshot: `serve`'s key pages and values, exact-key
# `inspect --keys` and `restore --keys --to`, and the cost of unlocking the repository.
#
#   benches/serve_keys.sh [TARGET_BYTES]      default 2200000000 (~1.1 GB RDB, ~1.6 M keys)
#   RDB=path/to/dump.rdb benches/serve_keys.sh  reuse an RDB made before (skips generation)
#
# Generates benches/redisgen.py's mixed data set into a scratch redis-server and SAVEs it
# (or takes $RDB), backs it up into a scratch repository with the default key derivation
# (Argon2id as `init` chooses it), then times, each best of 3:
#   - `cat config` (unlock: key derivation and the config, nothing else),
#   - `snapshots`, exact `inspect --keys NAME` and `restore --keys NAME --to` a redis-server,
#   - through `serve`: the first key page, one key's value, the second page, a pattern page,
#     serve's resident memory once idle, then the same requests again while a second
#     backup (the RDB twice, from stdin) runs, started as soon as that backup holds its lock.
# Uses target/release/rdbvault (or $RDBVAULT); everything runs on 127.0.0.1 in a temp dir.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_BYTES=${1:-2200000000}
# shellcheck source=support/scratch.sh
. "$ROOT/benches/support/scratch.sh"

best_of_3() { # command...: prints the best wall time of three runs in seconds
  python3 - "$@" <<'EOF'
import subprocess, sys, time
best = None
for _ in range(3):
    t = time.perf_counter()
    subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
    best = min(best or 1e9, time.perf_counter() - t)
print("%.3f" % best)
EOF
}

curl_time() { # path: best time_total of three GETs
  local best=999
  for _ in 1 2 3; do
    local t
    t=$(curl -s -o "$WORK/reply" -w '%{http_code} %{time_total}' "http://127.0.0.1:$SERVE_PORT$1")
    [ "${t%% *}" = 200 ] || { echo "GET $1: ${t%% *} $(cat "$WORK/reply")" >&2; exit 1; }
    best=$(python3 -c "print(min($best, ${t##* }))")
  done
  echo "$best"
}

SRC_PORT=$(free_port)
if [ -n "${RDB:-}" ]; then
  mkdir -p "$WORK/src"
  cp "$RDB" "$WORK/src/dump.rdb"
  start "$WORK/src" "$SRC_PORT"
else
  start "$WORK/src" "$SRC_PORT"
  python3 "$ROOT/benches/redisgen.py" fill --seed 1 --start 0 --target-bytes "$TARGET_BYTES" 2>/dev/null | redis-cli -p "$SRC_PORT" --pipe >/dev/null
  [ "$(redis-cli -p "$SRC_PORT" save)" = OK ]
fi
KEYS=$(redis-cli -p "$SRC_PORT" dbsize)
RDB_FILE="$WORK/src/dump.rdb"
RDB_BYTES=$(stat -c %s "$RDB_FILE")
KEY=$(redis-cli -p "$SRC_PORT" randomkey)
echo "data set: $KEYS keys, RDB $RDB_BYTES bytes; exact key $KEY; load: $(uptime | sed 's/.*load average: //')"

export RDBVAULT_PASSWORD=bench
export XDG_CACHE_HOME="$WORK/cache"
R=(-r "$WORK/repo")
"$BIN" "${R[@]}" init >/dev/null
T0=$(date +%s.%N)
"$BIN" "${R[@]}" -q backup "$RDB_FILE" >/dev/null
echo "backup: $(python3 -c "print('%.1f' % ($(date +%s.%N) - $T0))") s"

TARGET_PORT=$(free_port)
start "$WORK/target" "$TARGET_PORT"
echo "unlock only (cat config):        $(best_of_3 "$BIN" "${R[@]}" cat config) s"
echo "snapshots:                       $(best_of_3 "$BIN" "${R[@]}" snapshots) s"
echo "inspect --keys EXACT:            $(best_of_3 "$BIN" "${R[@]}" inspect latest --keys "$KEY") s"
echo "restore --keys EXACT --to:       $(best_of_3 "$BIN" "${R[@]}" -q restore latest --keys "$KEY" --to "redis://127.0.0.1:$TARGET_PORT" --replace) s"
[ "$(redis-cli -p "$TARGET_PORT" exists "$KEY")" = 1 ] || { echo "the restored key is missing" >&2; exit 1; }

SERVE_PORT=$(free_port)
"$BIN" "${R[@]}" serve --listen "127.0.0.1:$SERVE_PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=($SERVE_PID)
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$SERVE_PORT/health" >/dev/null && break; sleep 0.1; done
KEYS_URL="/api/repos/default/snapshots/latest/keys"
QKEY=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$KEY")
measure() { # label
  local first value second pattern
  first=$(curl_time "$KEYS_URL?limit=100")
  NEXT=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["next_cursor"])' "$WORK/reply")
  value=$(curl_time "/api/repos/default/snapshots/latest/key?db=0&key=$QKEY")
  second=$(curl_time "$KEYS_URL?limit=100&cursor=$NEXT")
  pattern=$(curl_time "$KEYS_URL?limit=100&pattern=user:7*")
  echo "serve $1: first page ${first} s, one value ${value} s, second page ${second} s, pattern page ${pattern} s (load: $(uptime | sed 's/.*load average: //'))"
}
measure "idle        "
sleep 1
echo "serve RSS after the requests: $(awk '/VmRSS/ {print $2 " " $3}' "/proc/$SERVE_PID/status")"
# The second backup reads the RDB twice in a row from stdin (--raw keeps what follows the
# first EOF), so it runs long enough on a quiet machine; the requests start as soon as it
# holds its lock.
cat "$RDB_FILE" "$RDB_FILE" | "$BIN" "${R[@]}" -q backup --stdin --stdin-name twice.rdb --raw >/dev/null 2>&1 &
BACKUP_PID=$!
for _ in $(seq 1 200); do [ -n "$(ls -A "$WORK/repo/locks")" ] && break; sleep 0.05; done
measure "during backup"
kill -0 "$BACKUP_PID" 2>/dev/null && echo "(the backup was still running after the requests)" || echo "(the backup ended before the requests did: take a larger data set)"
wait "$BACKUP_PID" || true
sleep 1
echo "serve RSS after the requests during the backup: $(awk '/VmRSS/ {print $2 " " $3}' "/proc/$SERVE_PID/status")"
