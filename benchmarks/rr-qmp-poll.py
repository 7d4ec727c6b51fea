#!/usr/bin/env python3
"""rr-qmp-poll.py QMP-SOCKET LOG: used by rr-bench.sh while gdb drives a replay.

Every 0.5 s: seconds since start, run state, instruction count (query-status, query-replay); "no-answer" for each
10 s in which QEMU did not answer (its main loop is blocked). Ends when QEMU closes the socket or on SIGTERM.
"""
import json
import socket
import sys
import time

s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(10)
buf = b""
n = 0


def line():
    global buf
    while b"\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise EOFError("QEMU closed the socket")
        buf += data
    first, buf = buf.split(b"\n", 1)
    return json.loads(first)


def wait(id):
    # An id per command: the late answer to a command that timed out is skipped, not taken for the next one's.
    while True:
        m = line()
        if m.get("id") == id:
            return m.get("return", {})


def send(name):
    global n
    n += 1
    s.sendall(json.dumps({"execute": name, "id": n}).encode() + b"\n")
    return n


line()
wait(send("qmp_capabilities"))
t0 = time.time()
with open(sys.argv[2], "w") as log:
    while True:
        a = time.time()
        try:
            status = wait(send("query-status")).get("status")
            log.write("%.1f %s %s\n" % (a - t0, status, wait(send("query-replay")).get("icount")))
        except socket.timeout:
            log.write("%.1f no-answer\n" % (a - t0))
        except (OSError, ValueError, EOFError):
            break
        log.flush()
        time.sleep(0.5)
