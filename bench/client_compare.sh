#!/usr/bin/env bash
# bench/client_compare.sh — libmemkit vs libmemcached side by side on 4 servers (memcached or memkitd); prints the median table.
#
#   bench/client_compare.sh [-r REPS] [-s SECONDS] [-v VALUE_BYTES] [-k KEYS] [-S memcached|memkitd]
#
# Builds build/bench/bench_clients (make bench-client), starts 4 servers
# (Debian's memcached by default, or build/memkitd with -S memkitd; both as
# SERVER -u root -l 127.0.0.1 -U 0 -p PORT -t 1) on free loopback ports,
# prepopulates KEYS keys (checking that libmemcached's ketama finds every key
# where libmemkit's ketama put it), then for every test runs libmemkit and
# libmemcached alternately (A B A B ..., REPS times each) and prints the medians
# and the memkit/libmemcached ratio: of the medians, and the median of the
# per-repetition ratios (each pair ran back to back, so it cancels most of the
# load that other processes put on the machine meanwhile). Tests: single get and set from 1 and 8
# threads, and a 100-key multi-get over the 4 servers from 1 and 8 threads.
# Each repetition also runs the floor (bench_clients --lib=floor: request bytes made in
# advance, each key's ketama placement computed per call as every client of these
# servers must, the same sends, polls and receives, no parsing); its column
# floor/libmemcached is the most any client could gain over libmemcached on this machine
# with one connection per thread; libmemkit pipelined (mk_options.pipeline: concurrent calls share
# connections, issue 17) is not bound by that floor.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=5 SECS=2 VSIZE=100 NKEYS=10000 SERVER=memcached
while getopts "r:s:v:k:S:" o; do
    case $o in
    r) REPS=$OPTARG ;; s) SECS=$OPTARG ;; v) VSIZE=$OPTARG ;; k) NKEYS=$OPTARG ;; S) SERVER=$OPTARG ;;
    *) echo "usage: $0 [-r REPS] [-s SECONDS] [-v VALUE_BYTES] [-k KEYS] [-S memcached|memkitd]" >&2; exit 2 ;;
    esac
done
case $SERVER in
memcached) SERVER_BIN=memcached ;;
memkitd) make --no-print-directory -s build/memkitd >&2; SERVER_BIN=build/memkitd ;;
*) echo "$0: -S takes memcached or memkitd" >&2; exit 2 ;;
esac

make --no-print-directory -s bench-client >&2
BIN=build/bench/bench_clients
[ "$SERVER" != memcached ] || command -v memcached >/dev/null || { echo "memcached not installed (apt-get install memcached)" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

SERVERS=""
for _ in 1 2 3 4; do
    for _try in 1 2 3 4 5; do
        port=$(free_port)
        "$SERVER_BIN" -u root -l 127.0.0.1 -U 0 -p "$port" -t 1 -m 256 &
        pid=$!
        ok=0
        for _w in $(seq 50); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if [ $ok = 1 ]; then PIDS+=("$pid"); break; fi
        kill "$pid" 2>/dev/null || true
    done
    SERVERS="${SERVERS:+$SERVERS,}127.0.0.1:$port"
done
echo "servers: $SERVERS ($SERVER $("$SERVER_BIN" -V | awk '{print $2}'), -t 1)" >&2

COMMON=(--servers="$SERVERS" --seconds="$SECS" --keys="$NKEYS" --value-size="$VSIZE")
"$BIN" "${COMMON[@]}" --test=populate >&2

RAW=$(mktemp)
trap 'cleanup; rm -f "$RAW"' EXIT
TESTS=("get 1" "set 1" "get 8" "set 8" "get 32" "mget 1" "mget 8")
for t in "${TESTS[@]}"; do
    read -r test threads <<<"$t"
    for r in $(seq "$REPS"); do
        for lib in memkit memkit-pipe libmemcached floor; do
            line=$("$BIN" "${COMMON[@]}" --lib=$lib --test="$test" --threads="$threads" | grep '^RESULT')
            echo "$line" >>"$RAW"
            echo "  rep $r: $line" >&2
        done
    done
done

echo
echo "libmemkit vs libmemcached $(pkg-config --modversion libmemcached): 4 x $SERVER $("$SERVER_BIN" -V | awk '{print $2}') on loopback," \
     "$NKEYS keys of $VSIZE bytes, ketama; $(nproc) CPUs; medians of $REPS alternating runs of ${SECS}s"
echo "(ops/s = calls per second: one get, one set, or one 100-key multi-get; latency per call in µs;"
echo " client CPU = the benchmark process's user+system time per call; load: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
python3 - "$RAW" <<'EOF'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    _, lib, test, thr, ops, p50, p99, n, err, miss, cpu = line.split()
    rows.setdefault((test, int(thr)), {}).setdefault(lib, []).append(
        (float(ops), float(p50), float(p99), int(err), int(miss), float(cpu)))
med = lambda xs: statistics.median(xs)
name = {"get": "get", "set": "set", "mget": "mget 100 keys"}
print("| operation | threads | metric | libmemkit | libmemcached | ratio of medians | median of paired ratios"
      " | floor | floor/libmemcached (paired) | libmemkit pipelined | pipelined/libmemcached (paired) |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (test, thr), libs in rows.items():
    mk, lm, fl, mp = libs["memkit"], libs["libmemcached"], libs["floor"], libs["memkit-pipe"]
    for i, metric, fmt in ((0, "ops/s", "{:.0f}"), (1, "p50 µs", "{:.1f}"), (2, "p99 µs", "{:.1f}"),
                           (5, "client CPU µs/op", "{:.2f}")):
        a, b, c = med([x[i] for x in mk]), med([x[i] for x in lm]), med([x[i] for x in fl])
        # each libmemkit run and the libmemcached and floor runs right after it saw the same machine load
        paired = med([x[i] / y[i] for x, y in zip(mk, lm) if y[i]])
        fpaired = med([z[i] / y[i] for z, y in zip(fl, lm) if y[i]])
        d = med([x[i] for x in mp])
        ppaired = med([z[i] / y[i] for z, y in zip(mp, lm) if y[i]])
        print(f"| {name[test]} | {thr} | {metric} | {fmt.format(a)} | {fmt.format(b)} | {a / b:.2f} | {paired:.2f}"
              f" | {fmt.format(c)} | {fpaired:.2f} | {fmt.format(d)} | {ppaired:.2f} |")
bad = [(k, lib) for k, libs in rows.items() for lib, xs in libs.items() if any(x[3] or x[4] for x in xs)]
if bad:
    print("\nWARNING: errors or misses in", bad)
EOF
