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

pytest_suite() {   # pytest_suite NAME MEMKITD_PATH -> runs tests/blackbox with that server
    local name=$1 bin=$2 xml
    xml=$(mktemp)
    MEMKITD="$bin" $PY -m pytest -q -p no:cacheprovider tests/blackbox --junitxml="$xml"
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

client_pytest() {   # client_pytest NAME SERVER_PATH CLI_PATH -> runs tests/client/*.py
    local name=$1 xml
    xml=$(mktemp)
    MK_SERVER="$2" MEMKIT_CLI="$3" $PY -m pytest -q -p no:cacheprovider tests/client --junitxml="$xml"
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

bench_pytest() {   # bench_pytest NAME BUILD_DIR -> tests/bench (memkit-bench against memcached and memkitd)
    local name=$1 xml
    xml=$(mktemp)
    MEMKIT_BENCH="$2/memkit-bench" MEMKITD="$2/memkitd" $PY -m pytest -q -p no:cacheprovider tests/bench --junitxml="$xml"
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

python_pytest() {   # python_pytest NAME -> tests/python (the memkit module in build/python, memkitd + memcached)
    local name=$1 xml
    xml=$(mktemp)
    $PY -m pytest -q -p no:cacheprovider tests/python --junitxml="$xml"
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

client_c() {   # client_c NAME BUILD_DIR SERVER_PATH -> libmemkit against live servers (tests/client/*.c)
    MK_SUITE=$1 MK_SERVER=$3 "$2/client-tests/test_client"
}

for s in $SUITES; do
  case $s in
    unit)
      run unit unit_suite build
      run unit-san unit_suite build/san ;;
    blackbox)
      run blackbox pytest_suite blackbox build/memkitd
      run blackbox-san pytest_suite blackbox-san build/san/memkitd ;;
    diff)
      run diff $PY tests/diff/difftest.py --memkitd build/memkitd --sequences "$DIFF_SEQUENCES" --name diff
      run diff-san $PY tests/diff/difftest.py --memkitd build/san/memkitd \
          --sequences $((DIFF_SEQUENCES / 4)) --name diff-san ;;
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
      run client-cli client_pytest client-cli /usr/bin/memcached build/memkit
      [ -x build/memkitd ] && run client-cli-memkitd client_pytest client-cli-memkitd build/memkitd build/memkit ;;
    bench)
      run bench bench_pytest bench build
      [ -x build/san/memkit-bench ] && run bench-san bench_pytest bench-san build/san ;;
    python)
      run python python_pytest python ;;
  esac
done

echo "=== summary"
grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" | sed 's/^/  /'
grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" |
  awk '{p += $2; f += $4} END {printf "total: %d passed, %d failed\n", p, f; exit (f > 0)}' || status=1
exit $status
