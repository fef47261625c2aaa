# Shared by the bench scripts (sourced): the release binary, a scratch directory removed on
# exit with the processes started, free loopback ports and scratch redis-servers.
BIN=${RDBVAULT:-$ROOT/target/release/rdbvault}
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first (or set RDBVAULT)" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() { # dir port: a redis-server, in the background, until it answers PING
  mkdir -p "$1"
  redis-server --port "$2" --bind 127.0.0.1 --dir "$1" --dbfilename dump.rdb --save '' --appendonly no \
    --daemonize no --logfile "$1/redis.log" &
  PIDS+=($!)
  for _ in $(seq 1 1200); do
    [ "$(redis-cli -p "$2" ping 2>/dev/null || true)" = PONG ] && return
    sleep 0.1
  done
  echo "redis-server on port $2 did not start" >&2
  exit 1
}
