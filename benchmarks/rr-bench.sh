#!/usr/bin/env bash
# Benchmark: `vmstate rr index` + `rr find` against gdb's reverse-continue on QEMU's replay gdbstub, same run, same
# recording. The fixture guest (MEM MiB, one vCPU, NICS=0: no NICs, so QEMU's reverse execution can load its
# snapshot; QEMU issue #2634) is recorded from power-on to its first tick, then:
#   index   `rr index REC --compare`: the index pass's time against a plain replay to the end (goal <= 1.5x);
#   process "when did vmsmarker first appear":
#           ours  `rr find REC --process vmsmarker` (the index's interval, then narrowing replays);
#           peer  `rr goto REC END`, then gdb: a breakpoint on __set_task_comm (exec names the process) with the
#                 condition that the new name is "vmsmarker", one reverse-continue from the end;
#   break   "last time SYMBOL was hit before count T" (T: the end of the recording):
#           ours  `rr find REC --break SYMBOL --before T`;
#           peer  `rr goto REC T`, gdb: break SYMBOL, one reverse-continue.
# Prints the times and the ratios peer/ours (goal >= 20x) and index/plain.
#
# Usage: benchmarks/rr-bench.sh
# Environment:
#   MEM=256           guest RAM in MiB
#   NICS=0            1: the fixture's two NICs behind filter-replay (reverse execution then ends QEMU here)
#   SYMBOL=do_sys_openat2
#   VMSTATE_BIN       the vmstate executable (default: dotnet src/VmState.Cli/bin/Release/net10.0/vmstate.dll)
#   OUT               report (default benchmarks/results/rr-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEM=${MEM:-256}
NICS=${NICS:-0}
SYMBOL=${SYMBOL:-do_sys_openat2}
OUT=${OUT:-$root/benchmarks/results/rr-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-rrb.XXXXXX")
log() { echo "rr-bench: $*" >&2; }
die() { echo "rr-bench: ERROR: $*" >&2; exit 1; }
if [[ -n "${VMSTATE_BIN:-}" ]]; then vmstate=("$VMSTATE_BIN"); else vmstate=(dotnet "$root/src/VmState.Cli/bin/Release/net10.0/vmstate.dll"); fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2> /dev/null || true; done
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

log "recording the fixture's boot to its first tick"
# setsid: a background job of a non-interactive shell ignores SIGINT, so rr record gets SIGTERM (handled the same).
"${vmstate[@]}" rr record -o "$work/rec" -- "${args[@]}" > "$work/record.out" 2> "$work/record.err" &
rec=$!
for _ in $(seq 1 900); do grep -q "^VMSTATE-TICK 1" "$work/serial.log" 2> /dev/null && break; sleep 0.2; done
kill -TERM "$rec"; wait "$rec" || die "rr record failed: $(cat "$work/record.err")"
end=$("${vmstate[@]}" rr info "$work/rec" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["instructionCount"])')
log "recorded $end instructions"

log "rr index --compare"
"${vmstate[@]}" rr index "$work/rec" --compare > "$work/index.out" 2> "$work/index.err" || die "rr index failed: $(tail -3 "$work/index.err")"
pass=$(grep -o 'index pass [0-9.]*' "$work/index.out" | awk '{print $3}')
plain=$(grep -o 'plain replay [0-9.]* s' "$work/index.out" | awk '{print $3}')

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

# peer: a paused replay at the end with its gdbstub, gdb's reverse-continue from there (symbols from the guest).
peer() { # peer NAME GDB-COMMANDS...: prints the seconds of the gdb run after the replay is paused at the end
  local name=$1; shift
  "${vmstate[@]}" rr goto "$work/rec" "$end" > "$work/goto-$name.out" 2> "$work/goto-$name.err" &
  local g=$!; pids+=("$g")
  for _ in $(seq 1 1200); do grep -q '^gdb tcp' "$work/goto-$name.out" 2> /dev/null && break; sleep 0.2; done
  local port qmp addr
  port=$(grep -o '^gdb tcp:127.0.0.1:[0-9]*' "$work/goto-$name.out" | cut -d: -f3)
  qmp=$(grep '^qmp ' "$work/goto-$name.out" | cut -d' ' -f2)
  [[ -n "$port" ]] || die "rr goto did not pause: $(cat "$work/goto-$name.err")"
  addr=$("${vmstate[@]}" symbols --qmp "$qmp" "^$1\$" | awk 'NR==1 {print $1}')
  local sym=$1; shift
  t0=$(now)
  timeout 1800 gdb -nx -batch -ex "target remote 127.0.0.1:$port" -ex "break *0x${addr#0x} $*" -ex 'reverse-continue' \
    -ex 'p/x $pc' > "$work/gdb-$name.out" 2>&1 || true
  echo "$(now) - $t0" | bc
  kill -INT "$g" 2> /dev/null || true; wait "$g" 2> /dev/null || true
  log "peer $name ($sym): $(grep -E '^\$1|Remote|Breakpoint 1,' "$work/gdb-$name.out" | tr '\n' ' ')"
}
log "peer: gdb reverse-continue to the exec that named vmsmarker"
peer_process=$(peer process __set_task_comm 'if $_streq((char *)$rsi, "vmsmarker")')
log "peer: gdb reverse-continue to the last $SYMBOL"
peer_break=$(peer break "$SYMBOL")

ratio() { python3 -c "import sys; a,b=map(float,sys.argv[1:]); print(f'{a/b:.1f}' if b > 0 else 'n/a')" "$1" "$2"; }
mkdir -p "$(dirname "$OUT")"
{
  echo "# rr index / find against gdb reverse-continue ($(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "recording: $end instructions, NICs: $NICS"
  echo
  echo "| question | ours (s) | answer | gdb reverse-continue (s) | ratio peer/ours |"
  echo "|---|---|---|---|---|"
  echo "| vmsmarker first appears | $ours_process | $ours_process_at | $peer_process | $(ratio "$peer_process" "$ours_process") |"
  echo "| last $SYMBOL before $end | $ours_break | $ours_break_at | $peer_break | $(ratio "$peer_break" "$ours_break") |"
  echo
  echo "index pass $pass s, plain replay $plain s: $(ratio "$pass" "$plain")x"
} | tee "$OUT"
