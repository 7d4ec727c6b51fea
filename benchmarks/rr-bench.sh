#!/usr/bin/env bash
# Benchmark: `vmstate rr index` + `rr find` against gdb's reverse-continue on QEMU's replay gdbstub, same run, same
# recording. The fixture guest (MEM MiB, one vCPU, NICS=0: no NICs, so QEMU can load snapshots in the replay; QEMU
# issue #2634) is recorded from power-on to its first tick, then:
#   index   `rr index REC --compare --checkpoints 1`: the index pass (a checkpoint at every point) against a plain
#           replay to the end (goal <= 1.5x); also without checkpoints (`--checkpoints 0`), the pass alone;
#   process "when did vmsmarker first appear":
#           ours  `rr find REC --process vmsmarker` (the index's interval, then narrowing through checkpoints);
#           peer  gdb on QEMU's stub of a replay started at power-on (QEMU saves its `start_debugging` snapshot there
#                 when gdb attaches, as QEMU's docs describe for a recording without rrsnapshot), run to the end
#                 (`monitor replay_break END`, `continue`, not timed), then timed: a breakpoint on __set_task_comm (exec
#                 names the process) with the condition that the new name is "vmsmarker", reverse-continue;
#   break   "last time SYMBOL was hit before count T" (T: the end of the recording):
#           ours  `rr find REC --break SYMBOL --before T`;
#           peer  the same replay at the end, `break SYMBOL`, one reverse-continue (timed).
#   (QEMU 7.2 loads only a power-on snapshot into a running replay, so gdb cannot use our later checkpoints: see
#   benchmarks/rr-snapshot-repro.py and the user guide.)
# Prints the times, the answers (instruction counts) and the ratios peer/ours (goal >= 20x) and index/plain.
#
# Usage: benchmarks/rr-bench.sh
# Environment:
#   MEM=256           guest RAM in MiB
#   NICS=0            1: the fixture's two NICs behind filter-replay (reverse execution then ends QEMU here)
#   SYMBOL=do_sys_openat2
#   UNTIL="VMSTATE-TICK 1"  the console line that ends the recording (e.g. "VMSTATE-TRUTH marker": a shorter one)
#   VMSTATE_BIN       the vmstate executable (default: dotnet src/VmState.Cli/bin/Release/net10.0/vmstate.dll)
#   OUT               report (default benchmarks/results/rr-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEM=${MEM:-256}
NICS=${NICS:-0}
SYMBOL=${SYMBOL:-do_sys_openat2}
UNTIL=${UNTIL:-VMSTATE-TICK 1}
OUT=${OUT:-$root/benchmarks/results/rr-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-rrb.XXXXXX")
log() { echo "rr-bench: $*" >&2; }
die() { echo "rr-bench: ERROR: $*" >&2; exit 1; }
if [[ -n "${VMSTATE_BIN:-}" ]]; then vmstate=("$VMSTATE_BIN"); else vmstate=(dotnet "$root/src/VmState.Cli/bin/Release/net10.0/vmstate.dll"); fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
eval "$(bash "$root/eng/fixture.sh" 2> /dev/null | grep -E '^(KERNEL|INITRD)=')"
args=(qemu-system-x86_64 -M pc -accel tcg -m "$MEM" -cpu qemu64 -display none -vga std -no-reboot -kernel "$KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check" -device vmcoreinfo -serial "file:$work/serial.log")
if [[ "$NICS" == 1 ]]; then
  args+=(-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56
    -netdev user,id=n1,restrict=on -device e1000,netdev=n1,mac=52:54:00:ab:cd:ef)
else
  args+=(-nic none)
fi

log "recording the fixture's boot to the console line $UNTIL"
# setsid: a background job of a non-interactive shell ignores SIGINT, so rr record gets SIGTERM (handled the same).
"${vmstate[@]}" rr record -o "$work/rec" -- "${args[@]}" > "$work/record.out" 2> "$work/record.err" &
rec=$!
for _ in $(seq 1 3000); do grep -q "^$UNTIL" "$work/serial.log" 2> /dev/null && break; sleep 0.2; done
kill -TERM "$rec"; wait "$rec" || die "rr record failed: $(cat "$work/record.err")"
end=$("${vmstate[@]}" rr info "$work/rec" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["instructionCount"])')
log "recorded $end instructions"

log "rr index --compare --checkpoints 0 (plain replay, then the index pass alone)"
"${vmstate[@]}" rr index "$work/rec" --compare --checkpoints 0 > "$work/index0.out" 2> "$work/index0.err" || die "rr index failed: $(tail -3 "$work/index0.err")"
pass0=$(grep -o 'index pass [0-9.]*' "$work/index0.out" | awk '{print $3}')
plain=$(grep -o 'plain replay [0-9.]* s' "$work/index0.out" | awk '{print $3}')
log "rr index --checkpoints 1 (a checkpoint at every point)"
"${vmstate[@]}" rr index "$work/rec" --checkpoints 1 > "$work/index.out" 2> "$work/index.err" || die "rr index failed: $(tail -3 "$work/index.err")"
pass=$(grep -o 'index pass [0-9.]*' "$work/index.out" | awk '{print $3}')
checkpoints=$(grep '^  checkpoints' "$work/index.out" | sed 's/^  //')

log "ours: rr find --process vmsmarker"
t0=$(now)
"${vmstate[@]}" rr find "$work/rec" --process vmsmarker --json > "$work/find-process.json" 2> "$work/find-process.err" || die "rr find failed: $(cat "$work/find-process.err")"
ours_process=$(echo "$(now) - $t0" | bc)
ours_process_at=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["icount"])' "$work/find-process.json")

log "ours: rr find --break $SYMBOL --before $end"
t0=$(now)
"${vmstate[@]}" rr find "$work/rec" --break "$SYMBOL" --before "$end" --json > "$work/find-break.json" 2> "$work/find-break.err" || die "rr find --break failed: $(cat "$work/find-break.err")"
ours_break=$(echo "$(now) - $t0" | bc)
ours_break_at=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["icount"])' "$work/find-break.json")

# goto NAME TARGET [ARGS...]: `rr goto` in the background; sets port, qmp, gpid.
goto() {
  local name=$1 target=$2; shift 2
  "${vmstate[@]}" rr goto "$work/rec" "$target" "$@" > "$work/goto-$name.out" 2> "$work/goto-$name.err" &
  gpid=$!; pids+=("$gpid")
  for _ in $(seq 1 3000); do grep -q '^gdb tcp' "$work/goto-$name.out" 2> /dev/null && break; kill -0 "$gpid" 2> /dev/null || break; sleep 0.2; done
  port=$(grep -o '^gdb tcp:127.0.0.1:[0-9]*' "$work/goto-$name.out" | cut -d: -f3 || true)
  qmp=$(grep '^qmp ' "$work/goto-$name.out" | cut -d' ' -f2 || true)
  [[ -n "$port" ]] || die "rr goto $target did not pause: $(cat "$work/goto-$name.err")"
}
# SIGTERM: a background job of a non-interactive shell ignores SIGINT; rr goto handles both alike.
stop_goto() { kill -TERM "$gpid" 2> /dev/null || true; wait "$gpid" 2> /dev/null || true; }
# rc NAME PRE-COMMANDS-FILE BREAK: gdb on $port: the commands in the file, then `break BREAK`, a timed reverse-continue
# (gdb resumes by itself while a condition is false); prints "SECONDS ICOUNT".
rc() {
  local name=$1 pre=$2 brk=$3
  timeout 3600 gdb -nx -batch -ex 'set pagination off' -ex "target remote 127.0.0.1:$port" -x "$pre" -ex "break $brk" \
    -ex 'python import time; t0 = time.time()' -ex 'reverse-continue' -ex 'python print("RC-SECONDS %.3f" % (time.time() - t0))' \
    -ex 'monitor info replay' -ex 'p/x $pc' > "$work/gdb-$name.out" 2>&1 || true
  local secs at
  secs=$(grep -o 'RC-SECONDS [0-9.]*' "$work/gdb-$name.out" | awk '{print $2}')
  at=$(grep -o 'instruction count = [0-9]*' "$work/gdb-$name.out" | tail -1 | awk '{print $4}')
  log "gdb $name: $(grep -E '^\$1|Remote|Breakpoint 1,|RC-SECONDS|instruction count' "$work/gdb-$name.out" | tr '\n' ' ')"
  echo "${secs:-n/a} ${at:-n/a}"
}
cond_process='if $_streq((char *)$rsi, "vmsmarker")'
: > "$work/none.gdb"

# (rr goto at the very end would find the replay ended: one instruction before.)
last=$((end - 1))
log "symbols: rr goto REC $last (from the last checkpoint)"
goto sym "$last"
"${vmstate[@]}" symbols --qmp "$qmp" > "$work/symbols.txt"
addr_comm=$(awk '$3 == "__set_task_comm" {print $1; exit}' "$work/symbols.txt")
addr_sym=$(awk -v s="$SYMBOL" '$3 == s {print $1; exit}' "$work/symbols.txt")
stop_goto

log "peer: gdb reverse-continue from the end, QEMU's own snapshot at power-on (rr goto REC 0 --no-checkpoints)"
printf 'monitor replay_break %s\ncontinue\nmonitor info replay\n' "$last" > "$work/to-end.gdb"
goto peer 0 --no-checkpoints
read -r peer_process peer_process_at < <(rc peer-process "$work/to-end.gdb" "*0x${addr_comm#0x} $cond_process")
stop_goto
goto peer2 0 --no-checkpoints
read -r peer_break peer_break_at < <(rc peer-break "$work/to-end.gdb" "*0x${addr_sym#0x}")
stop_goto

ratio() { python3 -c "import sys
try:
  a,b=map(float,sys.argv[1:]); print(f'{a/b:.1f}' if b > 0 else 'n/a')
except ValueError: print('n/a')" "$1" "$2"; }
mkdir -p "$(dirname "$OUT")"
{
  echo "# rr index / find against gdb reverse-continue ($(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "recording: $end instructions (to the console line \"$UNTIL\"), NICs: $NICS; $checkpoints"
  echo
  echo "| question | ours (s) | ours: icount | peer: gdb reverse-continue, QEMU's power-on snapshot (s) | peer: icount | ratio peer/ours |"
  echo "|---|---|---|---|---|---|"
  echo "| vmsmarker first appears | $ours_process | $ours_process_at | $peer_process | $peer_process_at | $(ratio "$peer_process" "$ours_process") |"
  echo "| last $SYMBOL before $end | $ours_break | $ours_break_at | $peer_break | $peer_break_at | $(ratio "$peer_break" "$ours_break") |"
  echo
  echo "(The process answers differ by design: ours is the first instruction at which ps shows vmsmarker, gdb's the entry of __set_task_comm that names it.)"
  echo
  echo "plain replay $plain s; index pass without checkpoints $pass0 s: $(ratio "$pass0" "$plain")x; with a checkpoint at every point $pass s: $(ratio "$pass" "$plain")x"
} | tee "$OUT"
