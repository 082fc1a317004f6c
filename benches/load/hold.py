#!/usr/bin/env python3
"""Holds idle keep-alive connections to a proxy, for the idle-memory row of load.sh.

Usage: hold.py HOST PORT COUNT [PATH]

Opens COUNT connections (a few hundred connecting at a time); each sends one
HTTP/1.1 request and reads its whole answer, then stays open and silent. Prints
"held N failed M" on stdout once every connection is idle (or gave up), then
waits until it is killed; the connections close with it.
"""

import resource
import selectors
import socket
import sys
import time

PARALLEL = 256
DEADLINE_S = 120


def answer_complete(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    # No length: a chunked answer ends with the last chunk.
    return body.endswith(b"0\r\n\r\n")


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET {path} HTTP/1.1\r\nHost: bench.local\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    held, failed, started, active = [], 0, 0, 0
    deadline = time.monotonic() + DEADLINE_S
    while (started < count or active) and time.monotonic() < deadline:
        while started < count and active < PARALLEL:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            sel.register(s, selectors.EVENT_WRITE, [b"", False])
            started += 1
            active += 1
        for key, events in sel.select(timeout=1.0):
            s, state = key.fileobj, key.data
            try:
                if not state[1]:
                    s.send(request)
                    state[1] = True
                    sel.modify(s, selectors.EVENT_READ, state)
                    continue
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                state[0] += chunk
                if answer_complete(state[0]):
                    sel.unregister(s)
                    held.append(s)
                    active -= 1
            except OSError:
                sel.unregister(s)
                s.close()
                failed += 1
                active -= 1
    failed += active
    print(f"held {len(held)} failed {failed}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
