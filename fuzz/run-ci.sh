#!/usr/bin/env bash
# CI: build every fuzz target and run each for a bounded time on its committed corpus;
# fails on any crash, panic, time-out or over-large allocation. Cold (no fuzz/target) it
# costs ~5.3 min to build on 2 idle cores and 80 s of fuzzing. FUZZ_SECONDS sets the time per
# target (default 20).
# `run-ci.sh build` only builds (so .ci/run can build while packages install), `run-ci.sh run`
# only runs what is built, no argument does both.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-20}
phase=${1:-all}
# The build `cargo fuzz build --sanitizer none` (cargo-fuzz 0.13.2) runs, with its flags
# spelled out: CI then need not compile cargo-fuzz itself first (a minute on 2 cores). One
# change: cargo-fuzz's -Ccodegen-units=1 is left out, so the library compiles on both cores
# (cold build 7m08s -> 5m18s here; the targets link, load their counters and fuzz at ~85% of
# the speed, fuzz/README.md).
# Stable Rust: no sanitizer (AddressSanitizer needs -Zsanitizer, a nightly flag). Coverage
# instrumentation, debug assertions and overflow checks stay on; src/lib.rs caps allocations.
if [ "$phase" != run ]; then
  RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions" \
    cargo build --manifest-path Cargo.toml --target x86_64-unknown-linux-gnu --release \
      --config 'profile.release.debug="line-tables-only"' --bins
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
# The targets: the [[bin]] names of Cargo.toml.
targets=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml | grep -vx rdbvault-fuzz)
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
