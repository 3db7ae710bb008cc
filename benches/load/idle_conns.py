#!/usr/bin/env python3
"""Opens COUNT keep-alive connections to 127.0.0.1:PORT, sends one GET /health/live on each,
reads its response, then holds them all idle.

Prints "ready" on stdout once every connection has had its response, then waits until its
standard input is closed (the caller measures the server's memory meanwhile) and exits,
closing the connections. Used by run.sh to measure memory per idle keep-alive connection.
"""

import argparse
import socket
import sys
import time

REQUEST = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_response(sock: socket.socket) -> None:
    """Reads one response with a Content-Length body; raises if the server closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError("unexpected status: %r" % head.split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--deadline-s", type=float, default=120.0)
    args = parser.parse_args()

    deadline = time.monotonic() + args.deadline_s
    conns = []
    for _ in range(args.count):
        if time.monotonic() > deadline:
            print("deadline passed after %d connections" % len(conns), file=sys.stderr)
            return 1
        sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        sock.sendall(REQUEST)
        read_response(sock)
        conns.append(sock)
    print("ready", flush=True)
    sys.stdin.read()  # until the caller closes our stdin
    for sock in conns:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
