#!/usr/bin/env python3
"""Minimal reproduction: does QEMU load a snapshot in a replay (savevm, run on, loadvm, run on)?

Plain QEMU and QMP, no vmstate: the fixture guest (eng/fixture.sh) is recorded for RECORD_SECONDS with
`-icount shift=auto,rr=record` and an orphan qcow2 for snapshots, either without NICs (`-net none`) or with the
fixture's two NICs behind `filter-replay`; the replay (`rr=replay`, `-S`) is paused at A (replay-break), saves a
snapshot (HMP savevm), runs on to B, loads the snapshot (HMP loadvm), then runs on to C between A and B. Every wait is
bounded (TIMEOUT seconds); a timeout is reported, QEMU is killed.

Usage: benchmarks/rr-snapshot-repro.py none|nics [WORKDIR]
Environment RECORD_SAVE=1: the snapshot is saved while recording (at about half of it), not in the replay; A is then
where it was saved, and B, C must be after it.
Environment RRSNAPSHOT=1: record and replay with rrsnapshot=init as well (QEMU's initial snapshot; then the snapshot
loaded is SNAPSHOT, "ck" or "init").
Environment: RECORD_SECONDS=20 A=1000000000 B=1600000000 C=1300000000 TIMEOUT=60
Prints one line per step and the verdict: "loadvm OK ..." or "loadvm FAILED: ...".
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

mode = sys.argv[1] if len(sys.argv) > 1 else "none"
work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="vmstate-rrsnap-")
os.makedirs(work, exist_ok=True)
TIMEOUT = float(os.environ.get("TIMEOUT", "60"))
A, B, C = (int(os.environ.get(k, d)) for k, d in (("A", "1000000000"), ("B", "1600000000"), ("C", "1300000000")))
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
env = dict(line.split("=", 1) for line in subprocess.run(["bash", f"{root}/eng/fixture.sh"], capture_output=True, text=True, check=True).stdout.split() if "=" in line)


class Qmp:
    def __init__(self, path):
        deadline = time.time() + TIMEOUT
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.f = self.s.makefile("rwb")
        self.events = []
        self._read()
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("QEMU closed the QMP socket (it exited)")
        return json.loads(line)

    def cmd(self, name, timeout=None, **args):
        self.s.settimeout(timeout or TIMEOUT)
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r["event"])
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']['desc']}")
            return r["return"]

    def hmp(self, line, timeout=None):
        out = self.cmd("human-monitor-command", timeout, **{"command-line": line})
        if out.strip():
            raise RuntimeError(f"{line}: {out.strip()}")

    def icount(self):
        return self.cmd("query-replay")["icount"]

    def run_to(self, icount):
        self.cmd("replay-break", icount=icount)
        self.cmd("cont")
        deadline = time.time() + TIMEOUT
        while self.cmd("query-status")["status"] == "running":
            if time.time() > deadline:
                raise TimeoutError(f"no stop at {icount} within {TIMEOUT:.0f} s (at {self.icount()})")
            time.sleep(0.05)
        return self.icount()


def qemu(rr, sock, serial):
    args = ["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-m", "256", "-cpu", "qemu64", "-display", "none", "-vga", "std",
            "-no-reboot", "-kernel", env["KERNEL"], "-initrd", env["INITRD"], "-append", "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check",
            "-serial", f"file:{serial}", "-icount", f"shift=auto,rr={rr},rrfile={work}/rr.bin" + (",rrsnapshot=init" if os.environ.get("RRSNAPSHOT") == "1" else "")
            + (f",rrsnapshot={os.environ['RRSNAPSHOT_NAME']}" if rr == "replay" and os.environ.get("RRSNAPSHOT_NAME") else ""),
            "-drive", f"file={work}/snapshots.qcow2,if=none,id=rr-snapshots,format=qcow2", "-qmp", f"unix:{sock},server=on,wait=off", "-no-shutdown"]
    if mode == "nics":
        args += ["-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0", "-object", "filter-replay,id=f0,netdev=n0",
                 "-netdev", "user,id=n1,restrict=on", "-device", "e1000,netdev=n1", "-object", "filter-replay,id=f1,netdev=n1"]
    else:
        args += ["-net", "none"]
    return subprocess.Popen(args + (["-S"] if rr == "replay" else []), stdout=subprocess.DEVNULL, stderr=open(f"{work}/qemu-{rr}.err", "w"))


def step(text):
    print(f"[{mode}] {text}", flush=True)


subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{work}/snapshots.qcow2", "1G"], check=True)
rec = qemu("record", f"{work}/rec.sock", f"{work}/rec.log")
q = Qmp(f"{work}/rec.sock")
if os.environ.get("RECORD_SAVE") == "1":
    # The snapshot is saved while recording (paused for it), at about half of the recording.
    time.sleep(float(os.environ.get("RECORD_SECONDS", "20")) / 2)
    q.cmd("stop")
    saved_at = q.icount()
    t = time.time()
    q.hmp("savevm ck", TIMEOUT)
    step(f"savevm while recording at {saved_at} ({time.time() - t:.2f} s)")
    q.cmd("cont")
    A, B, C = saved_at, saved_at + 600_000_000, saved_at + 300_000_000
time.sleep(float(os.environ.get("RECORD_SECONDS", "20")) / (2 if os.environ.get("RECORD_SAVE") == "1" else 1))
q.cmd("stop")
end = q.icount()
q.cmd("quit")
rec.wait(TIMEOUT)
step(f"recorded {end} instructions")
if end <= B:
    sys.exit(f"the recording is too short ({end} <= B {B}); raise RECORD_SECONDS")

if os.environ.get("RRSNAPSHOT") != "1" and os.environ.get("RECORD_SAVE") != "1":
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{work}/snapshots.qcow2", "1G"], check=True)
rep = qemu("replay", f"{work}/rep.sock", f"{work}/rep.log")
verdict = None
try:
    q = Qmp(f"{work}/rep.sock")
    t = time.time()
    step(f"replay paused at {q.run_to(A)} ({time.time() - t:.1f} s)")
    if os.environ.get("RECORD_SAVE") != "1":
        t = time.time()
        q.hmp("savevm ck", TIMEOUT)
        step(f"savevm at {q.icount()} ({time.time() - t:.2f} s, {os.path.getsize(f'{work}/snapshots.qcow2') >> 20} MiB image)")
    step(f"ran on to {q.run_to(B)}")
    t = time.time()
    if os.environ.get("STARTLOAD") == "1":
        # A new replay QEMU that loads the snapshot when it starts (rrsnapshot=ck, as QEMU does for its initial one).
        q.cmd("quit")
        rep.wait(TIMEOUT)
        os.environ["RRSNAPSHOT_NAME"] = "ck"
        rep = qemu("replay", f"{work}/rep2.sock", f"{work}/rep2.log")
        q = Qmp(f"{work}/rep2.sock")
        step(f"a new replay loaded ck when it started: at {q.icount()} ({time.time() - t:.2f} s)")
        t = time.time()
        at = q.run_to(C)
        if os.environ.get("RELOAD") == "1":
            # Then loadvm of that same snapshot while the replay runs (what reverse execution does).
            step(f"ran on from the snapshot to {at} ({time.time() - t:.1f} s)")
            t = time.time()
            q.hmp("loadvm ck", TIMEOUT)
            step(f"loadvm ck again: now at {q.icount()} ({time.time() - t:.2f} s)")
            t = time.time()
            C = (A + C) // 2
            at = q.run_to(C)
    elif os.environ.get("SEEK") == "1":
        # QMP replay-seek: QEMU loads the nearest snapshot before C itself and runs to C.
        q.cmd("replay-seek", icount=C)
        deadline = time.time() + TIMEOUT
        while q.cmd("query-status")["status"] == "running" or q.icount() != C:
            if time.time() > deadline:
                raise TimeoutError(f"replay-seek {C}: not there within {TIMEOUT:.0f} s (at {q.icount()})")
            time.sleep(0.05)
        at = q.icount()
    else:
        q.hmp("loadvm " + os.environ.get("SNAPSHOT", "ck"), TIMEOUT)
        step(f"loadvm: now at {q.icount()} ({time.time() - t:.2f} s)")
        t = time.time()
        at = q.run_to(C)
    step(f"ran on from the snapshot to {at} ({time.time() - t:.1f} s)")
    verdict = f"loadvm OK: savevm at {A}, loadvm {os.environ.get('SNAPSHOT', 'ck')} from {B}, ran on to {at}" if at == C else f"loadvm FAILED: stopped at {at}, not {C}"
except (TimeoutError, socket.timeout, RuntimeError, EOFError, OSError) as e:
    verdict = f"loadvm FAILED: {type(e).__name__}: {e}; QEMU {'exited with ' + str(rep.poll()) if rep.poll() is not None else 'still running (killed)'}"
finally:
    if rep.poll() is None:
        rep.kill()
    rep.wait()
err = open(f"{work}/qemu-replay.err").read().strip()
print(f"[{mode}] {verdict}" + (f"; QEMU stderr: {err}" if err else ""))
sys.exit(0 if verdict.startswith("loadvm OK") else 1)
