#!/usr/bin/env python3
"""SSE load client for Halyard's chat streams (asyncio, standard library only).

hold: opens COUNT concurrent SSE streams and keeps them open, recording the arrival time of
  every `: heartbeat` line on each. `--mode resume`: one `POST /api/v1/chat/agent/stream`
  turn (slow: the server runs with a large --echo-token-delay-ms) and COUNT-1
  `GET /api/v1/chat/stream/:streamId` resumes of it, which follow the live stream; `--mode
  turns`: COUNT stream turns (each a running turn: a task on the server's loop). Prints
  "ready N FAILED" on stdout once every stream has its response head, holds them HOLD
  seconds, then prints one JSON line:
  opened, failed, heartbeat intervals measured, lateness (interval - INTERVAL) p50/p99/max in
  ms over the intervals that ended after everything was open, and the client's own event-loop
  lag (p99, ms: how late a 10 ms sleep wakes up) as an upper bound of the measurement error.

ttft: CONCURRENCY clients, each in a loop for DURATION seconds over a keep-alive connection:
  a streamed echo turn (`POST /api/v1/chat/agent/stream`), timing the first `event: token`
  (time to first token) and `event: done` from the moment the request is written. Prints
  one JSON line: turns, turns/s, TTFT and turn time p50/p99/max in ms, errors.
"""

import argparse
import asyncio
import json
import sys
import time


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def request(method, path, key, body=None, extra=""):
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Accept: text/event-stream\r\n{extra}")
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body).encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower().decode()] = value.strip().decode()
    return status, headers


class Stream:
    __slots__ = ("beats",)

    def __init__(self):
        self.beats = []


async def follow(reader, stream):
    """Reads SSE lines until the connection ends, stamping heartbeats."""
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b": heartbeat"):
                stream.beats.append(time.monotonic())
    except (ConnectionError, asyncio.IncompleteReadError):
        return


async def open_stream(args, req, streams, tasks, writers, failures):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port, limit=1 << 16)
        writer.write(req)
        await writer.drain()
        status, headers = await asyncio.wait_for(read_head(reader), 30)
        if not status.startswith(b"HTTP/1.1 200"):
            failures.append(status.decode(errors="replace"))
            writer.close()
            return None
        s = Stream()
        streams.append(s)
        writers.append(writer)
        tasks.append(asyncio.create_task(follow(reader, s)))
        return headers
    except Exception as e:  # noqa: BLE001 (counted and reported)
        failures.append(type(e).__name__ + ": " + str(e)[:80])
        return None


async def loop_lag(samples, stop):
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.01)
        samples.append((time.monotonic() - t - 0.01) * 1000)


async def hold(args):
    streams, tasks, writers, failures, lag = [], [], [], [], []
    stop = asyncio.Event()
    lag_task = asyncio.create_task(loop_lag(lag, stop))
    body = {"projectId": args.project, "message": "hello there"}
    sem = asyncio.Semaphore(args.open_concurrency)

    async def one(req):
        async with sem:
            return await open_stream(args, req, streams, tasks, writers, failures)

    first = await one(request("POST", "/api/v1/chat/agent/stream", args.key, body))
    if first is None:
        print("first stream failed: %s" % failures, file=sys.stderr)
        print("ready 0 %d" % len(failures), flush=True)
        return 1
    if args.mode == "resume":
        req = request("GET", "/api/v1/chat/stream/" + first["x-stream-id"], args.key)
    else:
        req = request("POST", "/api/v1/chat/agent/stream", args.key, body)
    await asyncio.gather(*(one(req) for _ in range(args.count - 1)))
    all_open = time.monotonic()
    print("ready %d %d" % (len(streams), len(failures)), flush=True)
    if failures:
        print("failures (first 5): %s" % failures[:5], file=sys.stderr)
    lag.clear()
    await asyncio.sleep(args.hold)
    stop.set()
    await lag_task
    interval = args.interval
    late = []
    alive = 0
    for s in streams:
        if s.beats and s.beats[-1] > all_open + interval / 1000:
            alive += 1
        for a, b in zip(s.beats, s.beats[1:]):
            if b > all_open + interval / 1000:
                late.append((b - a) * 1000 - interval)
    for w in writers:
        w.close()
    for t in tasks:
        t.cancel()
    print(json.dumps({
        "opened": len(streams), "failed": len(failures), "still_beating": alive,
        "intervals": len(late), "lateness_ms_p50": pct(late, 50), "lateness_ms_p99": pct(late, 99),
        "lateness_ms_max": max(late) if late else None,
        "client_loop_lag_ms_p99": pct(lag, 99),
    }), flush=True)
    return 0


async def ttft_client(args, deadline, ttft, turn, errors):
    body = {"projectId": args.project, "message": "hello there"}
    req = request("POST", "/api/v1/chat/agent/stream", args.key, body)
    reader = writer = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
            t0 = time.monotonic()
            writer.write(req)
            await writer.drain()
            status, _ = await read_head(reader)
            if not status.startswith(b"HTTP/1.1 200"):
                errors.append(status.decode(errors="replace"))
                writer.close()
                writer = None
                await asyncio.sleep(0.1)
                continue
            first = None
            done = False
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError("closed mid-stream")
                if first is None and line.startswith(b"event: token"):
                    first = time.monotonic()
                elif line.startswith(b"event: done") or line.startswith(b"event: error"):
                    done = line.startswith(b"event: done")
                    t_done = time.monotonic()
                elif line.rstrip(b"\r\n") == b"0":  # last chunk of the chunked body
                    await reader.readline()
                    break
            if done and first is not None:
                ttft.append((first - t0) * 1000)
                turn.append((t_done - t0) * 1000)
            else:
                errors.append("no done/token")
        except Exception as e:  # noqa: BLE001
            errors.append(type(e).__name__)
            if writer is not None:
                writer.close()
            writer = None


async def ttft(args):
    ttfts, turns, errors = [], [], []
    start = time.monotonic()
    deadline = start + args.duration
    await asyncio.gather(*(ttft_client(args, deadline, ttfts, turns, errors)
                           for _ in range(args.concurrency)))
    elapsed = time.monotonic() - start
    print(json.dumps({
        "concurrency": args.concurrency, "turns": len(ttfts), "turns_per_s": len(ttfts) / elapsed,
        "ttft_ms_p50": pct(ttfts, 50), "ttft_ms_p99": pct(ttfts, 99), "ttft_ms_max": max(ttfts, default=None),
        "turn_ms_p50": pct(turns, 50), "turn_ms_p99": pct(turns, 99),
        "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
    }), flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["hold", "ttft"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--mode", choices=["resume", "turns"], default="resume")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--open-concurrency", type=int, default=256)
    p.add_argument("--hold", type=float, default=20.0)
    p.add_argument("--interval", type=float, default=1000.0, help="heartbeat interval, ms")
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args()
    return asyncio.run(hold(args) if args.command == "hold" else ttft(args))


if __name__ == "__main__":
    sys.exit(main())
