#!/usr/bin/python3
"""tests/tools/vectors_to_tsv.py — turn ../shared/vectors/distribution.json into the line format test_dist reads.

Usage: /usr/bin/python3 tests/tools/vectors_to_tsv.py [distribution.json] > dist.tsv
The JSON is found, in order: the argument, $MEMKIT_VECTORS, then
<repo root>/../shared/vectors/distribution.json.

Output (tab-separated, one record per line; keys as hex of their UTF-8 bytes):
    # comment
    case   <id> <library> <mode> <method> <nservers>
    server <host> <port> <weight>          (nservers lines, in order: index = position)
    key    <hexkey> <index | ->            ('-' = the library refused the key)
    end
Nothing here computes a placement: every index is copied from the vectors.
"""
import json
import os
import sys


def default_path():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "..", "shared", "vectors", "distribution.json")


def main(argv):
    path = argv[1] if len(argv) > 1 else os.environ.get("MEMKIT_VECTORS") or default_path()
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except OSError as e:
        print(f"vectors_to_tsv: cannot read {path}: {e} (set MEMKIT_VECTORS)", file=sys.stderr)
        return 2
    hexkey = {k["key"]: k["utf8_hex"] for k in d["keys"]}
    out = sys.stdout
    out.write(f"# generated from {os.path.normpath(path)} ({d.get('schema')}) by tests/tools/vectors_to_tsv.py\n")
    for c in d["cases"]:
        for field in (c["id"], c["library"], c["mode"]):
            if any(ch in field for ch in "\t\n"):
                raise SystemExit(f"vectors_to_tsv: tab/newline in {field!r}")
        out.write(f"case\t{c['id']}\t{c['library']}\t{c['mode']}\t{c.get('method', '')}\t{len(c['servers'])}\n")
        for s in c["servers"]:
            out.write(f"server\t{s['host']}\t{s['port']}\t{s.get('weight', 1)}\n")
        for k in d["keys"]:  # the vectors' key order
            key = k["key"]
            if key not in c["assignments"]:
                continue
            want = c["assignments"][key]
            out.write(f"key\t{hexkey[key]}\t{'-' if want is None else want}\n")
        out.write("end\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
