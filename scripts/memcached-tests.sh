#!/usr/bin/env bash
# scripts/memcached-tests.sh — memcached 1.6.18's own test scripts (t/*.t, from Debian's source package) against memkitd.
#
#   scripts/memcached-tests.sh [MEMKITD] [TEST.t ...]     (default: build/memkitd and the scripts below)
#
# memcached's harness (t/lib/MemcachedTest.pm) starts "$builddir/memcached-debug" with memcached's options;
# here that is a wrapper that starts memkitd instead. Prints "memcached-t: N passed, N failed" (one per script;
# $MK_T_SUITE names the line instead). SSL_TEST=1 makes the harness speak TLS to every server (its ssl_*.t).
set -uo pipefail
cd "$(dirname "$0")/.."
memkitd=$(realpath "${1:-build/memkitd}")
shift || true
# the scripts memkitd passes in full today; issue-by-issue more join (docs/testing.md)
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(metaget.t cas.t incrdecr.t noreply.t flags.t getandtouch.t touch.t bogus-commands.t
                                 malicious-commands.t multiversioning.t issue_104.t issue_108.t issue_152.t
                                 issue_192.t issue_29.t issue_3.t issue_41.t issue_68.t issue_70.t quit.t
                                 item_size_max.t dash-M.t evictions.t getset.t daemonize.t unixsocket.t maxconns.t
                                 binary.t binary-get.t binary-sasl.t udp.t idle-timeout.t stats-conns.t ascii-auth.t shutdown.t issue_61.t
                                 00-startup.t chunked-items.t issue_50.t stats-detail.t issue_183.t)
up=1.6.18
dest=build/memcached-src
root="$dest/memcached-$up"
if [ ! -f "$root/t/lib/MemcachedTest.pm" ]; then
  tarball=$(scripts/debsrc.sh memcached "$up" "$dest") || exit 1
  tar xf "$tarball" -C "$dest" "memcached-$up/t" || exit 1
fi
# memcached-debug: memkitd, minus the options memcached's harness adds that only concern memcached's sandbox,
# and minus the UDP port it adds beside -Z (SSL_TEST=1): memkitd refuses -Z with -U (docs/security.md)
cat > "$root/memcached-debug" <<WRAP
#!/usr/bin/env bash
args=()
tls=0
for a in "\$@"; do [ "\$a" = "-Z" ] && tls=1; done
while [ \$# -gt 0 ]; do
  if [ "\$1" = "-o" ] && [ "\$2" = "relaxed_privileges" ]; then shift 2; continue; fi
  if [ "\$tls" = 1 ] && [ "\$1" = "-U" ]; then shift 2; continue; fi
  args+=("\$1"); shift
done
exec "$memkitd" "\${args[@]}"
WRAP
printf '#!/bin/sh\n# timedrun SECONDS CMD...: the harness'"'"'s watchdog; the caller'"'"'s timeout bounds the run\nshift\nexec "$@"\n' > "$root/timedrun"
chmod +x "$root/memcached-debug" "$root/timedrun"
export RUN_SASL_TESTS=1 # binary-sasl.t: a sasldb made with saslpasswd2 (sasl2-bin), t/sasl/memcached.conf
passed=0 failed=0
for t in "${tests[@]}"; do
  out=$(cd "$root" && timeout 300 perl -It/lib "t/$t" 2>&1)
  rc=$?
  ok=$(grep -c '^ok' <<<"$out")
  bad=$(grep -c '^not ok' <<<"$out")
  plan=$(grep -m1 -o '^1\.\.[0-9]*' <<<"$out" | cut -c4-)
  if [ "$rc" = 0 ] && [ "$bad" = 0 ] && [ -n "$plan" ] && [ "$ok" = "$plan" ]; then
    echo "t/$t: $ok/$plan ok"
    passed=$((passed + 1))
  else
    grep -v '^ok' <<<"$out" | tail -20
    echo "t/$t: FAILED (exit $rc, $ok ok, $bad not ok, plan ${plan:-none})"
    failed=$((failed + 1))
  fi
done
echo "${MK_T_SUITE:-memcached-t}: $passed passed, $failed failed"
[ "$failed" = 0 ]
