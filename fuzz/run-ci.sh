#!/usr/bin/env bash
# CI: build every fuzz target and run each for a bounded time on its committed corpus;
# fails on any crash, panic, time-out or over-large allocation. Cold (no cargo-fuzz, no
# fuzz/target) it costs about 7 CPU-minutes: ~1 min to install cargo-fuzz, ~3 min to build on
# 2 idle cores, 80 s of fuzzing. FUZZ_SECONDS sets the time per target (default 20).
# `run-ci.sh build` only builds (so .ci/run can build while packages install), `run-ci.sh run`
# only runs what is built, no argument does both.
set -euo pipefail
cd "$(dirname "$0")"
version=0.13.2
seconds=${FUZZ_SECONDS:-20}
phase=${1:-all}
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $version" ]; then
  cargo install cargo-fuzz --version "$version" --locked
fi
# Stable Rust: no sanitizer (AddressSanitizer needs -Zsanitizer, a nightly flag). Coverage
# instrumentation, debug assertions and overflow checks stay on; src/lib.rs caps allocations.
if [ "$phase" != run ]; then
  cargo fuzz build --sanitizer none
fi
[ "$phase" = build ] && exit 0
bin=target/x86_64-unknown-linux-gnu/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
  local t=$1
  mkdir -p "$work/$t"
  # New inputs go to $work; the committed corpus is only read.
  if "$bin/$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/$t-" "$work/$t" "corpus/$t" >"$work/$t.log" 2>&1; then
    echo "fuzz $t: ok ($(grep -c . <(ls "$work/$t")) new inputs in ${seconds}s)"
  else
    echo "fuzz $t: FAILED"
    tail -n 40 "$work/$t.log"
    for a in "$work/$t"-*; do
      [ -e "$a" ] && echo "input ($a): $(base64 -w0 "$a")"
    done
    return 1
  fi
}
targets=$(cargo fuzz list)
failed=0
# Two targets at a time (two cores).
set -- $targets
while [ $# -gt 0 ]; do
  run "$1" & a=$!
  b=
  if [ $# -gt 1 ]; then run "$2" & b=$!; fi
  wait "$a" || failed=1
  if [ -n "$b" ]; then wait "$b" || failed=1; fi
  shift $(( $# > 1 ? 2 : 1 ))
done
exit "$failed"
