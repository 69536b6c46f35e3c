#!/usr/bin/env bash
# tests/fuzz/run.sh — runs one libFuzzer target for a bounded time over its seed corpus; prints "<name>: 1 passed, 0 failed" on no crash.
set -uo pipefail
bin=$1; secs=${2:-30}
name=$(basename "$bin")
seeds="tests/fuzz/corpus/${name#fuzz_}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null
# a failing input is kept as build/fuzz/crash-<hash> (not in the source tree): rerun it with "$bin FILE"
"$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$(dirname "$bin")/" "$work" 2>&1 | tail -n 15
rc=${PIPESTATUS[0]}
if [ "$rc" = 0 ]; then echo "$name: 1 passed, 0 failed"; else echo "$name: 0 passed, 1 failed"; fi
exit "$rc"
