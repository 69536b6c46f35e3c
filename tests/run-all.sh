#!/usr/bin/env bash
# tests/run-all.sh — runs every suite against build/ and the sanitized build/san/, then prints one total line.
#
# Each suite prints a line "<suite>: N passed, N failed"; this script sums them.
# Environment knobs (defaults suit CI on 2 cores):
#   DIFF_SEQUENCES   differential sequences against memcached per build (2000)
#   FUZZ_SECONDS     seconds per libFuzzer target (30)
#   SUITES           space-separated subset of: unit blackbox diff fuzz client bench python (all)
#   MK_THREAD_OPS    operations per thread in the client's 32-thread test (10000)
set -uo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
DIFF_SEQUENCES=${DIFF_SEQUENCES:-2000}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
SUITES=${SUITES:-unit blackbox diff fuzz client bench python}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

run() {   # run a suite, echo its output, keep its summary lines
    local name=$1; shift
    echo "=== $name"
    "$@" 2>&1 | tee -a "$log" | grep -v '^$' || true
    local rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then
        echo "!!! $name exited $rc"
        status=1
        grep -q "^$name: " "$log" || echo "$name: 0 passed, 1 failed" >> "$log"
    fi
}

pytest_run() {   # pytest_run NAME "TEST_PATH..." [VAR=VALUE ...] -> pytest over those paths with those variables set
    local name=$1 dir=$2 xml
    shift 2
    xml=$(mktemp)
    # shellcheck disable=SC2086  # several paths, none with spaces
    env "$@" $PY -m pytest -q -p no:cacheprovider $dir --junitxml="$xml"
    local rc=$?
    $PY - "$xml" "$name" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
t, f, e, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(f"{sys.argv[2]}: {t - f - e - sk} passed, {f + e} failed" + (f", {sk} skipped" if sk else ""))
PYEOF
    rm -f "$xml"
    return $rc
}

unit_suite() {   # unit_suite BUILD_DIR
    local rc=0
    for t in "$1"/tests/test_*; do
        [ -x "$t" ] || continue
        "$t" || rc=1
    done
    return $rc
}

client_c() {   # client_c NAME BUILD_DIR SERVER_PATH -> libmemkit against live servers (tests/client/*.c)
    MK_SUITE=$1 MK_SERVER=$3 "$2/client-tests/test_client"
}

for s in $SUITES; do
  case $s in
    unit)
      run unit unit_suite build
      run unit-san unit_suite build/san
      [ -x build/tsan/tests/test_cache ] &&   # built by: make cache-tsan
        run unit-tsan env TSAN_OPTIONS=halt_on_error=1 build/tsan/tests/test_cache ;;
    blackbox)
      run blackbox pytest_run blackbox tests/blackbox MEMKITD=build/memkitd
      run memcached-t scripts/memcached-tests.sh build/memkitd
      # memcached's own TLS scripts: its harness speaks TLS to every server it starts (IO::Socket::SSL)
      run memcached-t-tls env SSL_TEST=1 MK_T_SUITE=memcached-t-tls scripts/memcached-tests.sh build/memkitd ssl_settings.t ssl_ports.t \
          ssl_proto_version.t ssl_session_resumption.t ssl_verify_modes.t ssl_cert_refresh.t
      run blackbox-san pytest_run blackbox-san tests/blackbox MEMKITD=build/san/memkitd
      [ -x build/tsan/memkitd ] &&   # built by: make cache-tsan; a data race stops the server, failing the test
        run blackbox-tsan pytest_run blackbox-tsan "tests/blackbox/test_memory_engine.py tests/blackbox/test_concurrency.py tests/blackbox/test_udp.py tests/blackbox/test_auth.py tests/blackbox/test_limits.py tests/blackbox/test_tls.py tests/blackbox/test_operator_tools.py" \
            MEMKITD=build/tsan/memkitd TSAN_OPTIONS=halt_on_error=1 ;;
    diff)
      run diff $PY tests/diff/difftest.py --memkitd build/memkitd --sequences "$DIFF_SEQUENCES" --name diff
      run diff-san $PY tests/diff/difftest.py --memkitd build/san/memkitd \
          --sequences $((DIFF_SEQUENCES / 4)) --name diff-san
      run bindiff $PY tests/diff/bindiff.py --memkitd build/memkitd --sequences "$DIFF_SEQUENCES" --name bindiff
      run bindiff-san $PY tests/diff/bindiff.py --memkitd build/san/memkitd \
          --sequences $((DIFF_SEQUENCES / 4)) --name bindiff-san ;;
    fuzz)
      for f in build/fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        n=$(basename "$f")
        run "$n" tests/fuzz/run.sh "$f" "$FUZZ_SECONDS"
      done ;;
    client)
      run client client_c client build /usr/bin/memcached
      run client-san client_c client-san build/san /usr/bin/memcached
      [ -x build/memkitd ] && run client-memkitd client_c client-memkitd build build/memkitd
      [ -x build/tsan/client-tests/test_client ] &&   # built by: make client-tsan
        run client-tsan client_c client-tsan build/tsan /usr/bin/memcached
      run client-cli pytest_run client-cli tests/client MK_SERVER=/usr/bin/memcached MEMKIT_CLI=build/memkit
      [ -x build/memkitd ] && run client-cli-memkitd pytest_run client-cli-memkitd tests/client \
          MK_SERVER=build/memkitd MEMKIT_CLI=build/memkit ;;
    bench)
      run bench pytest_run bench tests/bench MEMKIT_BENCH=build/memkit-bench MEMKITD=build/memkitd \
          BENCH_CLIENTS=build/bench/bench_clients
      [ -x build/san/memkit-bench ] && run bench-san pytest_run bench-san tests/bench \
          MEMKIT_BENCH=build/san/memkit-bench MEMKITD=build/san/memkitd BENCH_CLIENTS=build/san/bench/bench_clients ;;
    python)
      run python pytest_run python tests/python ;;
  esac
done

echo "=== summary"
grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" | sed 's/^/  /'
grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" |
  awk '{p += $2; f += $4} END {printf "total: %d passed, %d failed\n", p, f; exit (f > 0)}' || status=1
exit $status
