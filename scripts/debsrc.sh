#!/usr/bin/env bash
# scripts/debsrc.sh — download the upstream tarball of a Debian source package (SRC UPSTREAM_VERSION DIR); prints its path.
# Used by django-tests.sh and memcached-tests.sh to run those projects' own tests against memkit. The system's
# apt sources are not touched: a private deb-src list (made from them) and private lists and archive dirs.
set -euo pipefail
src=$1 up=$2 dest=$3
mkdir -p "$dest"
for t in "$dest/${src}_${up}.orig.tar.gz" "$dest/${src}_${up}.orig.tar.xz"; do
  if [ -f "$t" ]; then echo "$t"; exit 0; fi
done
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
(cd "$tmp" && apt-get "${opts[@]}" source --download-only -qq "$src") >>"$tmp/log" 2>&1 || true
for t in "$tmp/${src}_${up}.orig.tar.gz" "$tmp/${src}_${up}.orig.tar.xz"; do
  if [ -f "$t" ]; then
    mv "$t" "$dest/"
    echo "$dest/$(basename "$t")"
    exit 0
  fi
done
cat "$tmp/log" >&2
echo "debsrc.sh: could not download $src $up's upstream source from Debian" >&2
exit 1
