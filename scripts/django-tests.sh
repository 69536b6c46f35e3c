#!/usr/bin/env bash
# scripts/django-tests.sh — Django's own cache test suite for the installed python3-django, from Debian's source package, into build/django-src/ (once); prints the tests directory.
# tests/python/test_django_suite.py runs it against memkit.django.MemkitCache and Django's PyMemcacheCache.
# The download is scripts/debsrc.sh's (the system's apt sources are not touched).
set -euo pipefail
dest=${1:-build/django-src}
ver=$(dpkg-query -W -f='${Version}' python3-django)
up=${ver#*:}
up=${up%%-*}
dir="$dest/Django-$up/tests"
if [ -f "$dir/cache/tests.py" ]; then echo "$dir"; exit 0; fi
tarball=$("$(dirname "$0")/debsrc.sh" python-django "$up" "$dest")
tar xzf "$tarball" -C "$dest" "Django-$up/tests/cache"
echo "$dir"
