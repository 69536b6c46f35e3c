#!/usr/bin/env bash
# scripts/deps.sh — installs the Debian packages memkit needs: `deps.sh build` or `deps.sh test`.
# Checks with dpkg first, so a machine that has them pays nothing; installs with apt-get as root.
set -euo pipefail

build_pkgs=(gcc make libc6-dev pkg-config zlib1g-dev nettle-dev libsasl2-dev libssl-dev python3-dev python3-setuptools)
test_pkgs=(clang libclang-rt-14-dev memcached libmemcached-tools libmemcached-dev
           python3-pytest python3-pymemcache python3-memcache python3-pylibmc
           python3-gevent python3-greenlet python3-django gunicorn nutcracker procps perl xz-utils
           ruby ruby-dalli php-cli php-memcached libsasl2-modules sasl2-bin iproute2 openssl
           libio-socket-ssl-perl)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test)  want+=("${test_pkgs[@]}") ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
