#!/usr/bin/env python3
"""A slow HTTP tool server for chat.sh's tool concurrency run (asyncio, standard library only).

Answers every `GET` or `POST` (keep-alive, HTTP/1.1, bodies by Content-Length) with `200`
`{"ok":true}` after DELAY_MS milliseconds, so that many tool calls are in flight at once;
`GET /stats` answers at once with `{"requests", "peak_inflight"}` since the last `/stats`
(then resets both): the peak of requests waiting at the same time shows that the calls
overlapped. Prints "listening on 127.0.0.1:PORT" once ready; runs until killed.

nginx-light has no delay directive (no echo module), and the testkit's tool server is a
library with a thread per connection: this one is a single thread whatever the count.
"""

import argparse
import asyncio
import json
import sys

ANSWER = b'{"ok":true}'


class Stats:
    def __init__(self):
        self.requests = 0
        self.inflight = 0
        self.peak = 0


def reply(body, keep_alive):
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n")
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


async def serve(reader, writer, delay, stats):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1] if " " in lines[0] else "/"
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            if target == "/stats":
                body = json.dumps({"requests": stats.requests,
                                   "peak_inflight": stats.peak}).encode()
                stats.requests = stats.peak = 0
            else:
                stats.requests += 1
                stats.inflight += 1
                stats.peak = max(stats.peak, stats.inflight)
                try:
                    await asyncio.sleep(delay)
                finally:
                    stats.inflight -= 1
                body = ANSWER
            writer.write(reply(body, not close))
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=500)
    args = ap.parse_args()
    stats = Stats()
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, args.delay_ms / 1000, stats),
        "127.0.0.1", args.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
