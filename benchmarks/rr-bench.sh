#!/usr/bin/env bash
# Benchmark: `vmstate rr index` + `rr find` against gdb's reverse-continue on QEMU's replay gdbstub, same run, same
# recording. The fixture guest (MEM MiB, one vCPU, NICS=0: no NICs, so QEMU can load snapshots in the replay; QEMU
# issue #2634) is recorded from power-on to its first tick, then:
#   index   `rr index REC --compare --checkpoints 0`: a plain replay to the end, then the index pass without
#           checkpoints (goal <= 1.5x the plain replay); `--checkpoints 1` (a checkpoint at every point) with our two
#           answers below timed on it; then `rr index REC` (the default checkpoints, adaptive), which the rest uses;
#   process "when did vmsmarker first appear":
#           ours  `rr find REC --process vmsmarker` (the index's interval, then narrowing through checkpoints);
#           peer  gdb on QEMU's stub of a replay started at power-on (QEMU saves its `start_debugging` snapshot there
#                 when gdb attaches, as QEMU's docs describe for a recording without rrsnapshot), run to the end
#                 (`monitor replay_break END`, `continue`, not timed), then timed: a breakpoint on __set_task_comm (exec
#                 names the process) with the condition that the new name is "vmsmarker", reverse-continue;
#   break   "last time SYMBOL was hit before count T" (T: one instruction before the end of the recording):
#           ours  `rr find REC --break SYMBOL --before T`;
#           peer  the same replay at T, `break SYMBOL`, one reverse-continue (timed). Both answers are checked to be
#                 the same instruction.
#   For the process question the peer stops at the entry of __set_task_comm, before ours (the store that completes
#   the new name: the first count at which ps shows it); after the timed part gdb watches the task's comm and
#   continues forward until it reads "vmsmarker", so that answer is compared at one instruction too.
#   Every step is bounded: gdb gets PEER_MIN minutes in all (the run to T first, then the reverse-continue); a
#   reverse-continue that has not stopped by then is reported as "> S s" (the time it had) and its ratio as a lower
#   bound (">= x").
#   (QEMU 7.2 loads only a power-on snapshot into a running replay, so gdb cannot use our later checkpoints: see
#   benchmarks/rr-snapshot-repro.py and the user guide.)
#   QEMU 7.2's reverse-continue deadlocks on this host unless helped: its second snapshot load (from the timer that
#   ends the forward pass, while the VM runs) stops the vCPU and then resets the devices, whose vapic reset waits in
#   run_on_cpu for the vCPU thread, which waits for the replay mutex the main thread holds (docs/benchmarks.md,
#   2026-12-01 peer section: thread stacks, QMP silent, 0% CPU). With PEER_FIX=1 (the default) the peer's QEMU runs
#   pinned to one CPU with its main thread at nice 19, so the vCPU thread takes the replay mutex first and the load
#   completes; the replay itself runs on the vCPU thread, at its usual speed (rr goto now does this itself). PEER_FIX=0
#   undoes it, and the peer then usually deadlocks (5 of 7 tries here).
#   The process question is asked the peer twice: from the end (T = the end - 1: one reverse-continue per later
#   __set_task_comm call, 77 in the fixture's boot, each replaying from power-on twice, so it is bounded by PEER_MIN
#   and reported as a lower bound) and from one instruction after our answer (one reverse-continue: the peer's best
#   case, a start a user could not know). benchmarks/rr-qmp-poll.py records the replay's instruction count every
#   0.5 s during each gdb session (work/poll-NAME.log; snapshot loads show as drops, counted in the report).
# Prints the times, the answers (instruction counts) and the ratios peer/ours (goal >= 20x) and index/plain.
#
# Usage: benchmarks/rr-bench.sh
# Environment:
#   MEM=256           guest RAM in MiB
#   NICS=0            1: the fixture's two NICs behind filter-replay (reverse execution then ends QEMU here)
#   SYMBOL=do_sys_openat2
#   UNTIL="VMSTATE-TICK 1"  the console line that ends the recording (e.g. "VMSTATE-TRUTH marker": a shorter one)
#   VMSTATE_BIN       the vmstate executable (default: dotnet src/VmState.Cli/bin/Release/net10.0/vmstate.dll)
#   PEER_MIN=6        minutes each gdb session (run to T, then the reverse-continue) may take
#   PEER_FIX=1        0: the peer's QEMU unpinned at normal priority (QEMU 7.2's reverse-continue then usually deadlocks)
#   PEER_CPU=1        the CPU the peer's QEMU is pinned to with PEER_FIX=1
#   STEP_MIN=15       minutes each of our commands may take
#   KEEP=0            1: keep the work directory (recording, logs of every step)
#   ONLY=             index: only the index part (plain replay; index passes with no, every-point and the default
#                     checkpoints; our two answers timed on the every-point and on the default checkpoints), no peer
#   REC=              an existing recording directory to use (copied) instead of recording one
#   OUT               report (default benchmarks/results/rr-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEM=${MEM:-256}
NICS=${NICS:-0}
SYMBOL=${SYMBOL:-do_sys_openat2}
UNTIL=${UNTIL:-VMSTATE-TICK 1}
PEER_MIN=${PEER_MIN:-6}
PEER_FIX=${PEER_FIX:-1}
PEER_CPU=${PEER_CPU:-1}
STEP_MIN=${STEP_MIN:-15}
ONLY=${ONLY:-}
OUT=${OUT:-$root/benchmarks/results/rr-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-rrb.XXXXXX")
log() { echo "rr-bench: $*" >&2; }
die() { echo "rr-bench: ERROR: $*" >&2; exit 1; }
if [[ -n "${VMSTATE_BIN:-}" ]]; then vmstate=("$VMSTATE_BIN"); else vmstate=(dotnet "$root/src/VmState.Cli/bin/Release/net10.0/vmstate.dll"); fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  sleep 1
  if [[ "${KEEP:-0}" == 1 ]]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
bench_t0=$(now)
eval "$(bash "$root/eng/fixture.sh" 2> /dev/null | grep -E '^(KERNEL|INITRD)=')"
args=(qemu-system-x86_64 -M pc -accel tcg -m "$MEM" -cpu qemu64 -display none -vga std -no-reboot -kernel "$KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check" -device vmcoreinfo -serial "file:$work/serial.log")
if [[ "$NICS" == 1 ]]; then
  args+=(-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56
    -netdev user,id=n1,restrict=on -device e1000,netdev=n1,mac=52:54:00:ab:cd:ef)
else
  args+=(-nic none)
fi

if [[ -n "${REC:-}" ]]; then
log "using a copy of the recording $REC"
cp -a "$REC" "$work/rec" && rm -rf "$work/rec/checkpoints" "$work/rec/index.vmsrr"
else
log "recording the fixture's boot to the console line $UNTIL"
# setsid: a background job of a non-interactive shell ignores SIGINT, so rr record gets SIGTERM (handled the same).
"${vmstate[@]}" rr record -o "$work/rec" -- "${args[@]}" > "$work/record.out" 2> "$work/record.err" &
rec=$!
for _ in $(seq 1 3000); do grep -q "^$UNTIL" "$work/serial.log" 2> /dev/null && break; sleep 0.2; done
kill -TERM "$rec"; wait "$rec" || die "rr record failed: $(cat "$work/record.err")"
fi
end=$("${vmstate[@]}" rr info "$work/rec" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["instructionCount"])')
log "recorded $end instructions"

log "rr index --compare --checkpoints 0 (plain replay, then the index pass alone)"
timeout "${STEP_MIN}m" "${vmstate[@]}" rr index "$work/rec" --compare --checkpoints 0 > "$work/index0.out" 2> "$work/index0.err" || die "rr index failed: $(tail -3 "$work/index0.err")"
pass0=$(grep -o 'index pass [0-9.]*' "$work/index0.out" | awk '{print $3}')
plain=$(grep -o 'plain replay [0-9.]* s' "$work/index0.out" | awk '{print $3}')
log "rr index --checkpoints 1 (a checkpoint at every point)"
timeout "${STEP_MIN}m" "${vmstate[@]}" rr index "$work/rec" --checkpoints 1 > "$work/index1.out" 2> "$work/index1.err" || die "rr index failed: $(tail -3 "$work/index1.err")"
pass1=$(grep -o 'index pass [0-9.]*' "$work/index1.out" | awk '{print $3}')
checkpoints1=$(grep '^  checkpoints' "$work/index1.out" | sed 's/^  //')
# find1 NAME ARGS...: ours on the every-point checkpoints, timed (the same questions as below, for the default's cost).
find1() { local name=$1 t0; shift; t0=$(now)
  timeout "${STEP_MIN}m" "${vmstate[@]}" rr find "$work/rec" "$@" --json > "$work/find1-$name.json" 2> "$work/find1-$name.err" || die "rr find $* failed: $(cat "$work/find1-$name.err")"
  echo "$(echo "$(now) - $t0" | bc) $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["icount"])' "$work/find1-$name.json")"; }
read -r find1_process find1_process_at < <(find1 process --process vmsmarker)
read -r find1_break find1_break_at < <(find1 break --break "$SYMBOL" --before "$((end - 1))")
log "rr index (the default checkpoints: adaptive)"
timeout "${STEP_MIN}m" "${vmstate[@]}" rr index "$work/rec" > "$work/index.out" 2> "$work/index.err" || die "rr index failed: $(tail -3 "$work/index.err")"
pass=$(grep -o 'index pass [0-9.]*' "$work/index.out" | awk '{print $3}')
checkpoints=$(grep '^  checkpoints' "$work/index.out" | sed 's/^  //')

log "ours: rr find --process vmsmarker"
t0=$(now)
timeout "${STEP_MIN}m" "${vmstate[@]}" rr find "$work/rec" --process vmsmarker --json > "$work/find-process.json" 2> "$work/find-process.err" || die "rr find failed: $(cat "$work/find-process.err")"
ours_process=$(echo "$(now) - $t0" | bc)
ours_process_at=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["icount"])' "$work/find-process.json")

# T: one instruction before the end (rr goto cannot pause at the very end: the replay has ended there); the peer
# reverse-continues from T, so both look for the last hit before T.
last=$((end - 1))
log "ours: rr find --break $SYMBOL --before $last"
t0=$(now)
timeout "${STEP_MIN}m" "${vmstate[@]}" rr find "$work/rec" --break "$SYMBOL" --before "$last" --json > "$work/find-break.json" 2> "$work/find-break.err" || die "rr find --break failed: $(cat "$work/find-break.err")"
ours_break=$(echo "$(now) - $t0" | bc)
ours_break_at=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["icount"])' "$work/find-break.json")

if [[ "$ONLY" == index ]]; then
  mkdir -p "$(dirname "$OUT")"
  {
    echo "# rr index: plain replay, no checkpoints, every point, the default ($(date -u +%FT%TZ), $(nproc) cores, load at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    echo "recording: $end instructions (to the console line \"$UNTIL\"), $MEM MiB, NICs: $NICS; whole run $(printf '%.0f' "$(echo "$(now) - $bench_t0" | bc)") s"
    echo
    echo "| index pass | s | x plain replay ($plain s) | checkpoints | rr find --process vmsmarker (s, icount) | rr find --break $SYMBOL --before $last (s, icount) |"
    echo "|---|---|---|---|---|---|"
    echo "| --checkpoints 0 | $pass0 | $(python3 -c "print(f'{$pass0/$plain:.2f}')") | none | | |"
    echo "| --checkpoints 1 | $pass1 | $(python3 -c "print(f'{$pass1/$plain:.2f}')") | $checkpoints1 | $find1_process, $find1_process_at | $find1_break, $find1_break_at |"
    echo "| default | $pass | $(python3 -c "print(f'{$pass/$plain:.2f}')") | $checkpoints | $ours_process, $ours_process_at | $ours_break, $ours_break_at |"
  } | tee "$OUT"
  exit 0
fi

# goto NAME TARGET [ARGS...]: `rr goto` in the background; sets port, qmp, gpid, qpid (QEMU's pid).
goto() {
  local name=$1 target=$2; shift 2
  "${vmstate[@]}" rr goto "$work/rec" "$target" "$@" > "$work/goto-$name.out" 2> "$work/goto-$name.err" &
  gpid=$!; pids+=("$gpid")
  for _ in $(seq 1 3000); do grep -q '^gdb tcp' "$work/goto-$name.out" 2> /dev/null && break; kill -0 "$gpid" 2> /dev/null || break; sleep 0.2; done
  port=$(grep -o '^gdb tcp:127.0.0.1:[0-9]*' "$work/goto-$name.out" | cut -d: -f3 || true)
  qmp=$(grep '^qmp ' "$work/goto-$name.out" | cut -d' ' -f2 || true)
  qpid=$(grep -o 'QEMU [0-9]* replaying' "$work/goto-$name.err" | awk '{print $2}' || true)
  [[ -n "$port" ]] || die "rr goto $target did not pause: $(cat "$work/goto-$name.err")"
  if [[ "$name" == peer* && "$PEER_FIX" == 1 ]]; then
    # All of QEMU's threads on one CPU, the main thread (its id is the pid) at nice 19: see the header. (rr goto now
    # does this itself; this keeps the setup explicit, and older builds working.)
    [[ -n "$qpid" ]] && taskset -a -cp "$PEER_CPU" "$qpid" > /dev/null && renice -n 19 -p "$qpid" > /dev/null || die "could not pin QEMU ${qpid:-?}"
  elif [[ "$name" == peer* ]]; then
    # Undo rr goto's pinning: QEMU on every CPU, its main thread at nice 0 (QEMU 7.2's reverse-continue then deadlocks).
    [[ -n "$qpid" ]] && taskset -a -cp "0-$(($(nproc) - 1))" "$qpid" > /dev/null && renice -n 0 -p "$qpid" > /dev/null || die "could not unpin QEMU ${qpid:-?}"
  fi
}
# SIGTERM: a background job of a non-interactive shell ignores SIGINT; rr goto handles both alike. QEMU busy in a
# reverse-continue gdb gave up on may not answer rr goto's quit: its pid is ended too if it is still there.
stop_goto() {
  kill -TERM "$gpid" 2> /dev/null || true
  for _ in $(seq 1 100); do kill -0 "$gpid" 2> /dev/null || break; sleep 0.2; done
  kill -KILL "$gpid" 2> /dev/null || true
  wait "$gpid" 2> /dev/null || true
  if [[ -n "$qpid" ]] && kill -0 "$qpid" 2> /dev/null && grep -q qemu-system "/proc/$qpid/cmdline" 2> /dev/null; then kill -KILL "$qpid" 2> /dev/null || true; fi
}
# rc NAME PRE-COMMANDS-FILE BREAK [POST-COMMANDS-FILE]: gdb on $port: the commands in the file, then `break BREAK`, a
# timed reverse-continue (gdb resumes by itself while a condition is false; bounded by PEER_MIN minutes), the count
# there, then the post commands (not timed); prints "SECONDS ICOUNT POST-ICOUNT" ("n/a" for what it did not reach).
rc() {
  local name=$1 pre=$2 brk=$3 post=${4:-$work/none.gdb}
  python3 "$root/benchmarks/rr-qmp-poll.py" "$qmp" "$work/poll-$name.log" &
  local poller=$!
  timeout "${PEER_MIN}m" gdb -nx -batch -ex 'set pagination off' -ex 'set confirm off' -ex "target remote 127.0.0.1:$port" -x "$pre" \
    -ex "break $brk" -ex 'python import time; t0 = time.time(); print("RC-START %.3f" % t0)' -ex 'reverse-continue' \
    -ex 'python print("RC-SECONDS %.3f" % (time.time() - t0))' -ex 'echo RC-AT\n' -ex 'monitor info replay' -ex 'p/x $pc' \
    -x "$post" > "$work/gdb-$name.out" 2>&1 || true
  kill "$poller" 2> /dev/null || true
  wait "$poller" 2> /dev/null || true
  local secs at post_at started
  # (|| true: under pipefail a grep that finds nothing, a peer that timed out, would end the script.)
  secs=$(grep -o 'RC-SECONDS [0-9.]*' "$work/gdb-$name.out" | awk '{print $2}' || true)
  started=$(grep -o 'RC-START [0-9.]*' "$work/gdb-$name.out" | awk '{print $2}' || true)
  # Timed out: the reverse-continue had the rest of the PEER_MIN minutes after the (untimed) run to T.
  [[ -z "$secs" && -n "$started" ]] && secs="> $(python3 -c "import sys, time; print('%.0f' % (time.time() - float(sys.argv[1])))" "$started") s"
  at=$(sed -n '/^RC-AT/,$p' "$work/gdb-$name.out" | grep -o 'instruction count = [0-9]*' | head -1 | awk '{print $4}' || true)
  post_at=$(sed -n '/^POST-AT/,$p' "$work/gdb-$name.out" | grep -o 'instruction count = [0-9]*' | head -1 | awk '{print $4}' || true)
  log "gdb $name: $(grep -E '^\$1|Remote|Breakpoint 1,|RC-SECONDS|instruction count|COMM|Hardware' "$work/gdb-$name.out" | tr '\n' ' ' || true)"
  echo "${secs:-"> ${PEER_MIN} min (gdb as a whole)"}" > "$work/rc-$name.secs"
  echo "${at:-n/a} ${post_at:-n/a}"
}
cond_process='if $_streq((char *)$rsi, "vmsmarker")'
: > "$work/none.gdb"

log "symbols and task_struct: rr goto REC $last (from the last checkpoint)"
goto sym "$last"
"${vmstate[@]}" symbols --qmp "$qmp" > "$work/symbols.txt"
"${vmstate[@]}" types --qmp "$qmp" task_struct > "$work/task_struct.txt"
addr_comm=$(awk '$3 == "__set_task_comm" {print $1; exit}' "$work/symbols.txt")
addr_sym=$(awk -v s="$SYMBOL" '$3 == s {print $1; exit}' "$work/symbols.txt")
comm_off=$(grep -E '[[:space:]]comm\[16\];' "$work/task_struct.txt" | grep -o '/\* *[0-9]*' | grep -o '[0-9]*' | head -1)
stop_goto
[[ -n "$addr_comm" && -n "$addr_sym" && -n "$comm_off" ]] || die "no address of __set_task_comm or $SYMBOL, or no task_struct.comm offset"

# After the peer's stop at __set_task_comm(tsk = rdi, buf = rsi): watchpoints on tsk->comm, forward until it reads
# "vmsmarker" (the first instruction at which ps names the process so).
cat > "$work/comm.gdb" << GDB
delete
set \$c = (unsigned long)\$rdi + $comm_off
watch -l *(long *)\$c
watch -l *(long *)(\$c + 8)
python
import gdb
c = int(gdb.parse_and_eval("\$c"))
for _ in range(64):
    gdb.execute("continue")
    if bytes(gdb.selected_inferior().read_memory(c, 16)).split(b"\\0")[0] == b"vmsmarker":
        print("COMM-SET")
        break
end
echo POST-AT\n
monitor info replay
GDB

# polled NAME: what the QMP poll saw during the gdb session NAME: snapshot loads (the count dropped), the highest count,
# and how long QEMU did not answer.
polled() { python3 -c "import sys
loads = top = silent = 0; prev = None
for line in open(sys.argv[1]):
  f = line.split()
  if len(f) < 3 or f[2] == 'None':
    silent += 1; continue
  c = int(f[2]); top = max(top, c)
  if prev is not None and c < prev: loads += 1
  prev = c
print(f'{loads} snapshot load(s), up to {top}' + (f', no QMP answer for {silent * 10} s' if silent else ''))" "$work/poll-$1.log" 2> /dev/null || echo "no poll"; }

log "peer: gdb reverse-continue, QEMU's own snapshot at power-on (rr goto REC 0 --no-checkpoints), PEER_FIX=$PEER_FIX"
printf 'monitor replay_break %s\ncontinue\nmonitor info replay\n' "$last" > "$work/to-end.gdb"
goto peer-break 0 --no-checkpoints
read -r peer_break_at _ < <(rc peer-break "$work/to-end.gdb" "*0x${addr_sym#0x}")
peer_break=$(cat "$work/rc-peer-break.secs")
stop_goto
# The process question from one instruction after our answer (the peer's best case: one reverse-continue).
near=$((ours_process_at + 1))
printf 'monitor replay_break %s\ncontinue\nmonitor info replay\n' "$near" > "$work/to-near.gdb"
goto peer-near 0 --no-checkpoints
read -r peer_near_entry peer_near_at < <(rc peer-near "$work/to-near.gdb" "*0x${addr_comm#0x} $cond_process" "$work/comm.gdb")
peer_near=$(cat "$work/rc-peer-near.secs")
stop_goto
goto peer-process 0 --no-checkpoints
read -r peer_process_entry peer_process_at < <(rc peer-process "$work/to-end.gdb" "*0x${addr_comm#0x} $cond_process" "$work/comm.gdb")
peer_process=$(cat "$work/rc-peer-process.secs")
stop_goto

# ratio PEER OURS: peer/ours; a peer that timed out ("> N min") gives a lower bound.
ratio() { python3 -c "import sys
a, b = sys.argv[1:]
low = a.startswith('>')
try:
  a = float(a.split()[1]) * (60 if 'min' in a else 1) if low else float(a); b = float(b)
  print(('>= ' if low else '') + f'{a/b:.1f}' if b > 0 else 'n/a')
except ValueError: print('n/a')" "$1" "$2"; }
same() { if [[ "$1" == "$2" ]]; then echo "same instruction"; elif [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]]; then echo "differ by $(($2 - $1))"; else echo "not compared"; fi; }
bench_wall=$(echo "$(now) - $bench_t0" | bc)
mkdir -p "$(dirname "$OUT")"
{
  echo "# rr index / find against gdb reverse-continue ($(date -u +%FT%TZ), $(nproc) cores, load at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "recording: $end instructions (to the console line \"$UNTIL\"), $MEM MiB, NICs: $NICS; $checkpoints; whole run $(printf '%.0f' "$bench_wall") s"
  echo
  echo "peer: Debian gdb on QEMU's gdbstub, replay from power-on (QEMU's start_debugging snapshot), run to T untimed, then one timed reverse-continue; PEER_FIX=$PEER_FIX (1: QEMU pinned to CPU $PEER_CPU, main thread at nice 19), PEER_MIN=$PEER_MIN"
  echo
  echo "| question | ours (s) | ours: icount | peer from T | peer (s) | peer: icount | QEMU during the reverse-continue (QMP poll) | check | ratio peer/ours |"
  echo "|---|---|---|---|---|---|---|---|---|"
  echo "| last $SYMBOL before $last | $ours_break | $ours_break_at | $last | $peer_break | $peer_break_at | $(polled peer-break) | $(same "$ours_break_at" "$peer_break_at") | $(ratio "$peer_break" "$ours_break") |"
  echo "| vmsmarker first appears | $ours_process | $ours_process_at | $near (ours + 1) | $peer_near | $peer_near_at (stop at __set_task_comm: $peer_near_entry; then forward to the comm store) | $(polled peer-near) | $(same "$ours_process_at" "$peer_near_at") | $(ratio "$peer_near" "$ours_process") |"
  echo "| vmsmarker first appears | $ours_process | $ours_process_at | $last | $peer_process | $peer_process_at (stop at __set_task_comm: $peer_process_entry) | $(polled peer-process) | $(same "$ours_process_at" "$peer_process_at") | $(ratio "$peer_process" "$ours_process") |"
  echo
  echo "plain replay $plain s; index pass without checkpoints $pass0 s: $(ratio "$pass0" "$plain")x; with a checkpoint at every point $pass1 s: $(ratio "$pass1" "$plain")x; with the default checkpoints $pass s: $(ratio "$pass" "$plain")x"
} | tee "$OUT"
