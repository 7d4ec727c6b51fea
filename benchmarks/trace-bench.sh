#!/usr/bin/env bash
# Breakpoint events per second on a running guest: `vmstate trace break` against gdb on the same breakpoint
# (gdb: `commands` / `silent` / counter / `continue`, on a stub started over QMP), same guest, same run.
#
# Usage: benchmarks/trace-bench.sh QMP_SOCKET [SYMBOL] [HITS] [ROUNDS]
#   SYMBOL  a kernel function the guest calls often (default _raw_spin_lock)
#   HITS    hits per timed run (default 500); ROUNDS timed runs per tool, alternating (default 3)
# Each timed run is the wall time of a whole process handling HITS hits minus the median wall time of the same
# process handling 1 hit (start-up, attach, symbol lookup), so the rate is that of the hits alone.
# Needs: python3 (to start and stop the gdbstub over QMP for gdb), gdb, a built CLI (dotnet build -c Release).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
qmp=${1:?usage: trace-bench.sh QMP_SOCKET [SYMBOL] [HITS] [ROUNDS]}
sym=${2:-_raw_spin_lock}
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

run_vmstate() {   # run_vmstate N -> seconds
  local t0 t1
  t0=$(now); "${vs[@]}" trace --qmp "$qmp" break "$sym" --max-events "$1" --json > /dev/null 2>&1; t1=$(now)
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

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "symbol $sym at 0x$addr, $hits hits per run, $rounds rounds"
vs0=$(for _ in 1 2 3; do run_vmstate 1; done | median)
gdb0=$(for _ in 1 2 3; do run_gdb 1; done | median)
echo "start-up (1 hit): vmstate ${vs0} s, gdb ${gdb0} s"
for r in $(seq "$rounds"); do
  v=$(run_vmstate "$hits"); g=$(run_gdb "$hits")
  printf 'round %d: vmstate %.0f hits/s (%.2f s), gdb %.0f hits/s (%.2f s)\n' "$r" \
    "$(echo "($hits - 1) / ($v - $vs0)" | bc -l)" "$v" "$(echo "($hits - 1) / ($g - $gdb0)" | bc -l)" "$g"
done
echo "guest state after: $(hmp 'info status')"
