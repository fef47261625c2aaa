#!/usr/bin/env bash
# CI: build every fuzz target and run each for a bounded time on its committed corpus;
# fails on any crash, panic, time-out or over-large allocation. FUZZ_SECONDS sets the time per
# target (default 12: CI stays under 20 minutes on two cores).
# `run-ci.sh build` only builds (so .ci/run can build while packages install), `run-ci.sh run`
# only runs what is built, no argument does both.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-12}
phase=${1:-all}
# The build: fuzz/ is a member of the main workspace, built in the dev profile, so every
# dependency is the artifact `cargo test` builds (or built) anyway; cargo-fuzz's coverage flags
# reach only our own crates, through sancov-rustc. Those are optimised as cargo-fuzz's release
# build would (opt-level 3, 16 codegen units). Stable Rust: no sanitizer (AddressSanitizer
# needs -Zsanitizer, a nightly flag); debug assertions and overflow checks stay on, and
# src/lib.rs caps allocations. fuzz/README.md has the measurements.
if [ "$phase" != run ]; then
  RUSTC_WORKSPACE_WRAPPER="$PWD/sancov-rustc" cargo build --locked -p rdbvault-fuzz --bins \
    --config 'profile.dev.package.rdbvault.opt-level=3' --config 'profile.dev.package.rdbvault.codegen-units=16' \
    --config 'profile.dev.package.rdbvault-fuzz.opt-level=3'
fi
[ "$phase" = build ] && exit 0
bin=${CARGO_TARGET_DIR:-../target}/debug
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
