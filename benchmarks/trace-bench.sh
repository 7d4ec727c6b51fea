#!/usr/bin/env bash
# Breakpoint events per second on a running guest: `vmstate trace break` against gdb on the same breakpoint
# (gdb: `commands` / `silent` / counter / `continue`, on a stub started over QMP) and against gdb's Python API doing
# the same (a gdb.Breakpoint whose stop() counts and returns False), same guest, same run.
#
# Usage: benchmarks/trace-bench.sh QMP_SOCKET [SYMBOL] [HITS] [ROUNDS]
#   SYMBOL  a kernel function the guest calls often (default _raw_spin_lock; __x64_sys_getppid with GUEST_DIR)
#   HITS    hits per timed run (default 500); ROUNDS timed runs per tool, alternating (default 3)
#   GUEST_DIR  the directory of a fixture guest started by eng/run-guest.sh: its marker then calls getppid in a tight
#              loop during each round (request 4), so the breakpoint is hit as fast as the tracer lets the guest
#              run; the script also measures the guest's slowdown under an idle trace (a breakpoint never hit), as
#              the marker's own work rate (request 5: iterations of a CPU loop in 5 s) untraced and traced.
# Each timed run is the wall time of a whole process handling HITS hits minus the median wall time of the same
# process handling 1 hit (start-up, attach, symbol lookup), so the rate is that of the hits alone.
# Needs: python3 (to start and stop the gdbstub over QMP for gdb), gdb, a built CLI (dotnet build -c Release).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
qmp=${1:?usage: trace-bench.sh QMP_SOCKET [SYMBOL] [HITS] [ROUNDS]}
default_sym=_raw_spin_lock
[[ -n "${GUEST_DIR:-}" ]] && default_sym=__x64_sys_getppid
sym=${2:-$default_sym}
hits=${3:-500}
rounds=${4:-3}
vs=(dotnet "$root/src/VmState.Cli/bin/Release/net10.0/vmstate.dll")
[[ -n "${VMSTATE_CLI_EXE:-}" ]] && vs=("$VMSTATE_CLI_EXE")

addr=$("${vs[@]}" symbols --qmp "$qmp" | awk -v s="$sym" '$3 == s { print $1; exit }')
[[ -n "$addr" ]] || { echo "no symbol $sym" >&2; exit 2; }

hmp() {   # hmp COMMAND: one HMP command over QMP
  python3 - "$qmp" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile('rw')
def cmd(c, a=None):
    f.write(json.dumps({"execute": c, **({"arguments": a} if a else {})}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m: return m
f.readline(); cmd("qmp_capabilities"); print(cmd("human-monitor-command", {"command-line": sys.argv[2]}).get("return", "").strip())
PY
}

now() { date +%s.%N; }

request_paddr=
request() {   # request CODE [ARG]: the marker's g_request, written into guest RAM through /proc/QEMU/mem
  local paddr mib mpid vaddr
  if [[ -z "$request_paddr" ]]; then
    # Translated now, through the marker's page tables: a fork (an earlier exec request) moves the page.
    mpid=$(grep -o 'marker pid=[0-9]*' "$GUEST_DIR/truth.txt" | cut -d= -f2)
    vaddr=$(grep -o 'g_request_addr=0x[0-9a-f]*' "$GUEST_DIR/truth.txt" | cut -d= -f2)
    request_paddr=$("${vs[@]}" translate --qmp "$qmp" --pid "$mpid" "$vaddr" | awk '{print $3}')
  fi
  paddr=$request_paddr
  mib=$(grep -o -- '-m [0-9]*' "$GUEST_DIR/cmdline.txt" | awk '{print $2}')
  python3 - "$(cat "$GUEST_DIR/qemu.pid")" "$mib" "$paddr" "$(( (${2:-0} << 8) | $1 ))" <<'PY'
import sys
pid, mib, paddr, value = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3], 0), int(sys.argv[4])
for line in open(f"/proc/{pid}/maps"):
    f = line.split(); lo, hi = (int(x, 16) for x in f[0].split("-"))
    if hi - lo == mib << 20 and len(f) < 6: break
else: sys.exit("guest RAM mapping not found")
with open(f"/proc/{pid}/mem", "r+b", buffering=0) as m: m.seek(lo + paddr); m.write(value.to_bytes(8, "little"))
PY
}

loop() {   # loop SECONDS: the marker calls getppid in a tight loop for SECONDS (from its next tick)
  [[ -n "${GUEST_DIR:-}" ]] || return 0
  request 4 "$(($1 * 1000))"; sleep 1.2
}

spin() {   # spin: the marker's CPU-loop iterations in 5 s (its serial line)
  local from
  from=$(wc -l < "$GUEST_DIR/serial.log")
  request 5 5000
  for _ in $(seq 100); do
    sleep 0.2
    tail -n +"$((from + 1))" "$GUEST_DIR/serial.log" | grep -m1 -o 'VMSMARKER spin ms=5000 iterations=[0-9]*' | cut -d= -f3 && return 0
  done
  echo "no spin result" >&2; return 1
}

run_vmstate() {   # run_vmstate N -> seconds
  local t0 t1
  t0=$(now); "${vs[@]}" trace --qmp "$qmp" break "$sym" --max-events "$1" --json 2>/dev/null | tail -1 > "$last_summary"; t1=$(now)
  echo "$t1 - $t0" | bc
}

run_gdb() {   # run_gdb N -> seconds (stub start and stop over QMP not timed)
  local port=$((30000 + RANDOM % 20000)) t0 t1 script
  hmp "gdbserver tcp:127.0.0.1:$port" > /dev/null
  script=$(mktemp)
  cat > "$script" <<GDB
set pagination off
set confirm off
set \$n = 0
target remote 127.0.0.1:$port
break *0x$addr
commands
silent
set \$n = \$n + 1
if \$n >= $1
delete
detach
quit
end
continue
end
continue
GDB
  t0=$(now); gdb -nx -q -batch -x "$script" > /dev/null 2>&1 || true; t1=$(now)
  rm -f "$script"
  hmp "gdbserver none" > /dev/null
  echo "$t1 - $t0" | bc
}

run_gdbpy() {   # run_gdbpy N -> seconds: gdb's Python API, a gdb.Breakpoint whose stop() counts and lets it run on
  local port=$((30000 + RANDOM % 20000)) t0 t1 script
  hmp "gdbserver tcp:127.0.0.1:$port" > /dev/null
  script=$(mktemp --suffix=.py)
  cat > "$script" <<PY
import gdb
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("target remote 127.0.0.1:$port")
class Counter(gdb.Breakpoint):
    n = 0
    def stop(self):
        Counter.n += 1
        return Counter.n >= $1
bp = Counter("*0x$addr")
gdb.execute("continue")
bp.delete()
gdb.execute("detach")
PY
  t0=$(now); gdb -nx -q -batch -x "$script" > /dev/null 2>&1 || true; t1=$(now)
  rm -f "$script"
  hmp "gdbserver none" > /dev/null
  echo "$t1 - $t0" | bc
}

run_floor() {   # run_floor N -> seconds: the stub's own ceiling. A minimal client (Python, no registers, no task, no
  # output) that answers each stop with the two packets any correct client must send: read the registers (g, to
  # check the vCPU stopped at the breakpoint) and continue past the breakpoint's 5-byte no-op (cADDR), as vmstate
  # does. What is left is QEMU stopping and resuming the VM, which no client shortens.
  local port=$((30000 + RANDOM % 20000)) t0 t1
  hmp "gdbserver tcp:127.0.0.1:$port" > /dev/null
  t0=$(now)
  python3 - "$port" "$addr" "$1" <<'PY'
import socket, sys
port, addr, n = int(sys.argv[1]), int(sys.argv[2], 16), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
def send(p):
    s.sendall(b"$%s#%02x" % (p, sum(p) & 0xff))
def reply():   # one packet (acknowledging it); '+' acks are skipped
    global buf
    while True:
        i = buf.find(b"$"); j = buf.find(b"#", i + 1) if i >= 0 else -1
        if i >= 0 and j >= 0 and len(buf) >= j + 3:
            p = buf[i + 1:j]; buf = buf[j + 3:]; s.sendall(b"+"); return p
        d = s.recv(65536)
        if not d: sys.exit("stub closed")
        buf += d
s.settimeout(3)
try:
    reply()   # QEMU stops a running VM when a client connects and says so (T02) unasked
except socket.timeout:   # the VM was already stopped: nothing is said; ask
    send(b"?"); reply()
s.settimeout(None)
send(b"Z0,%x,1" % addr)
if reply() != b"OK": sys.exit("Z0 refused")
send(b"c")
for k in range(n):
    stop = reply()   # the stop reply of hit k
    if not stop.startswith(b"T05"): sys.exit("unexpected stop reply %r" % stop)
    send(b"g"); regs = reply()   # the stopped vCPU's registers: RIP (gdb register 16) must be the breakpoint
    rip = int.from_bytes(bytes.fromhex(regs[16 * 16:17 * 16].decode()), "little")
    if rip != addr: sys.exit("stop at 0x%x, not at the breakpoint" % rip)
    if k + 1 < n: send(b"c%x" % (addr + 5))
send(b"z0,%x,1" % addr); reply()
# Once any client asked for multiprocess (gdb does), QEMU 7.2's stub refuses a bare D (E22) and leaves the VM stopped.
send(b"D")
if reply() != b"OK":
    send(b"D;1"); reply()
PY
  t1=$(now)
  hmp "gdbserver none" > /dev/null
  echo "$t1 - $t0" | bc
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

last_summary=$(mktemp)
echo "symbol $sym at 0x$addr, $hits hits per run, $rounds rounds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
loop 600
vs0=$(for _ in 1 2 3; do run_vmstate 1; done | median)
gdb0=$(for _ in 1 2 3; do run_gdb 1; done | median)
py0=$(for _ in 1 2 3; do run_gdbpy 1; done | median)
# The minimal client continues at SYMBOL+5, which is only right on a function that starts with the 5-byte ftrace no-op.
[[ "$("${vs[@]}" read --qmp "$qmp" "0x$addr" 5 | cut -c19-32)" == "0f 1f 44 00 00" ]] ||
  { echo "$sym does not start with the 5-byte no-op (0f 1f 44 00 00); the minimal client cannot continue past it" >&2; exit 2; }
fl0=$(for _ in 1 2 3; do run_floor 1; done | median)
echo "start-up (1 hit): vmstate ${vs0} s, gdb ${gdb0} s, gdb python ${py0} s, minimal client ${fl0} s"
for r in $(seq "$rounds"); do
  v=$(run_vmstate "$hits"); lat=$(cat "$last_summary"); g=$(run_gdb "$hits"); p=$(run_gdbpy "$hits"); f=$(run_floor "$hits")
  vr=$(echo "($hits - 1) / ($v - $vs0)" | bc -l); gr=$(echo "($hits - 1) / ($g - $gdb0)" | bc -l); pr=$(echo "($hits - 1) / ($p - $py0)" | bc -l)
  fr=$(echo "($hits - 1) / ($f - $fl0)" | bc -l)
  printf 'round %d: vmstate %.0f hits/s (%.2f s), gdb %.0f hits/s (%.2f s), gdb python %.0f hits/s (%.2f s); vmstate/gdb %.2fx, vmstate/gdb python %.2fx\n' "$r" \
    "$vr" "$v" "$gr" "$g" "$pr" "$p" "$(echo "$vr / $gr" | bc -l)" "$(echo "$vr / $pr" | bc -l)"
  printf '  stub ceiling (minimal client, g + cADDR): %.0f hits/s (%.2f s) = %.2fx gdb; vmstate reaches %.0f %% of it\n' \
    "$fr" "$f" "$(echo "$fr / $gr" | bc -l)" "$(echo "$vr * 100 / $fr" | bc -l)"
  echo "  vmstate hit->handler latency: $(echo "$lat" | grep -o '"latency_median_us":[0-9.]*' | cut -d: -f2) us median, $(echo "$lat" | grep -o '"latency_p99_us":[0-9.]*' | cut -d: -f2) us p99"
done
if [[ -n "${GUEST_DIR:-}" ]]; then
  request 4 0; sleep 1.5   # a new request ends the loop; this one is a loop of 0 ms
  idle=$("${vs[@]}" symbols --qmp "$qmp" | awk '$3 == "__x64_sys_kexec_load" { print $3; exit }')
  for r in 1 2; do
    base=$(spin)
    "${vs[@]}" trace --qmp "$qmp" break "$idle" --duration 9 > /dev/null 2>&1 &
    tracer=$!; sleep 2.5
    traced=$(spin); wait "$tracer"
    printf 'idle trace (%s, never hit) round %d: untraced %s iterations/5 s, traced %s (%.1f %%)\n' "$idle" "$r" "$base" "$traced" \
      "$(echo "($traced - $base) * 100 / $base" | bc -l)"
  done
fi
rm -f "$last_summary"
echo "guest state after: $(hmp 'info status')"
