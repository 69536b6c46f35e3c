#!/usr/bin/env bash
# scripts/django-tests.sh — Django's own cache test suite for the installed python3-django, from Debian's source package, into build/django-src/ (once); prints the tests directory.
# tests/python/test_django_suite.py runs it against memkit.django.MemkitCache and Django's PyMemcacheCache.
# The system's apt sources are not touched: a private deb-src list (made from them) and a private lists dir.
set -euo pipefail
dest=${1:-build/django-src}
ver=$(dpkg-query -W -f='${Version}' python3-django)
up=${ver#*:}
up=${up%%-*}
dir="$dest/Django-$up/tests"
if [ -f "$dir/cache/tests.py" ]; then echo "$dir"; exit 0; fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/archives/partial"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" > "$tmp/parts/$(basename "$f")"
done
if [ -f /etc/apt/sources.list ]; then
  sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$tmp/parts/main.list"
fi
opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$tmp/parts" -o Dir::State::Lists="$tmp/lists"
      -o Dir::Cache::Archives="$tmp/archives" -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update -qq >"$tmp/log" 2>&1 || true
# only the upstream tarball is needed: a missing .dsc or Debian tarball of a security update is not fatal
(cd "$tmp" && apt-get "${opts[@]}" source --download-only -qq python-django) >>"$tmp/log" 2>&1 || true
tarball="$tmp/python-django_${up}.orig.tar.gz"
if [ ! -f "$tarball" ]; then
  cat "$tmp/log" >&2
  echo "django-tests.sh: could not download Django $up's source (python-django_${up}.orig.tar.gz) from Debian" >&2
  exit 1
fi
tar xzf "$tarball" -C "$dest" "Django-$up/tests/cache"
echo "$dir"
