"""A memcached-text server that answers every get after a delay (for the gevent tests).

    slow_server.py PORT DELAY_SECONDS
Every "get"/"gets" gets a VALUE (the key as its text value) after DELAY; "stats" answers at once with
total_connections, curr_connections and max_connections (most open at once); "set" is stored-and-ignored.
"""
import asyncio
import sys

stats = {"total": 0, "curr": 0, "max": 0}


async def handle(reader, writer):
    stats["total"] += 1
    stats["curr"] += 1
    stats["max"] = max(stats["max"], stats["curr"])
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            parts = line.split()
            if not parts:
                continue
            if parts[0] in (b"get", b"gets"):
                await asyncio.sleep(DELAY)
                out = b"".join(b"VALUE %s 16 %d\r\n%s\r\n" % (k, len(k), k) for k in parts[1:])
                writer.write(out + b"END\r\n")
            elif parts[0] == b"stats":
                writer.write(b"STAT total_connections %d\r\nSTAT curr_connections %d\r\n"
                             b"STAT max_connections %d\r\nEND\r\n" % (stats["total"], stats["curr"], stats["max"]))
            elif parts[0] == b"set":
                await reader.readexactly(int(parts[4]) + 2)
                writer.write(b"STORED\r\n")
            else:
                writer.write(b"ERROR\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        stats["curr"] -= 1
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    DELAY = float(sys.argv[2])
    asyncio.run(main(int(sys.argv[1])))
