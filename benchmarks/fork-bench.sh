#!/usr/bin/env bash
# Benchmark: `vmstate fork` against starting the same clones by hand. The fixture guest (MEM MiB, one vCPU) is
# booted, paused after its first tick and migrated to a file; then, for each N in COUNTS:
#   ours  `vmstate fork SNAP --count N` (per clone: the stream with new MACs in both NICs and in the guest kernel,
#         written; overlays; QEMU daemonized with -incoming defer, migrate-incoming, cont), timed from the command's
#         start to its return (every clone running), then to every clone's console showing a tick;
#   peer  N QEMUs started by hand on the unedited stream (-incoming "exec:cat SNAP" -daemonize, then cont over QMP;
#         the clones would share MACs), timed the same way.
# Memory per clone is QEMU's VmRSS a few seconds after the start (both ways). Prints a table and the ratio
# ours/peer of the time to N running clones.
#
# Usage: benchmarks/fork-bench.sh
# Environment:
#   COUNTS="1 3 5"   clone counts
#   MEM=256          guest RAM in MiB
#   VMSTATE_BIN      the vmstate executable (default: dotnet src/VmState.Cli/bin/Release/net10.0/vmstate.dll)
#   OUT              report (default benchmarks/results/fork-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNTS=${COUNTS:-"1 3 5"}
MEM=${MEM:-256}
OUT=${OUT:-$root/benchmarks/results/fork-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-fork.XXXXXX") # short: QMP socket paths are limited
log() { echo "fork-bench: $*" >&2; }
die() { echo "fork-bench: ERROR: $*" >&2; exit 1; }
if [[ -n "${VMSTATE_BIN:-}" ]]; then vmstate=("$VMSTATE_BIN"); else vmstate=(dotnet "$root/src/VmState.Cli/bin/Release/net10.0/vmstate.dll"); fi
cleanup() {
  "${vmstate[@]}" fork --stop --dir "$work/clones" > /dev/null 2>&1 || true
  for p in "$work"/peer-*/qemu.pid; do [[ -s "$p" ]] && kill "$(cat "$p")" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash "$root/eng/fixture.sh" 2> /dev/null | grep -E '^(KERNEL|INITRD)=')"
args=(-M pc -accel tcg -m "$MEM" -smp 1 -cpu qemu64 -display none -vga std -no-reboot -kernel "$KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check"
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56
  -netdev user,id=n1,restrict=on -device e1000,netdev=n1,mac=52:54:00:ab:cd:ef -device vmcoreinfo)
qmp() { # qmp SOCKET COMMAND...: runs QMP commands in order, waits for a migration to complete after "migrate"
  python3 - "$@" << 'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw"); f.readline()
def call(cmd, **a):
    f.write(json.dumps({"execute": cmd, "arguments": a} if a else {"execute": cmd}) + "\n"); f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m: return m
call("qmp_capabilities")
for c in sys.argv[2:]:
    if c.startswith("migrate:"):
        call("migrate", uri="exec:cat > " + c[8:])
        while call("query-migrate")["return"].get("status") != "completed": time.sleep(0.05)
    elif c == "wait-running":
        while call("query-status")["return"]["status"] == "inmigrate": time.sleep(0.01)
        if call("query-status")["return"]["status"] != "running": call("cont")
    else:
        call(c)
PY
}
wait_line() { # wait_line FILE PATTERN SECONDS
  local i
  for ((i = 0; i < $3 * 20; i++)); do grep -q "$2" "$1" 2> /dev/null && return 0; sleep 0.05; done
  die "no '$2' in $1 after $3 s"
}
now() { date +%s.%N; }
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

log "booting the fixture guest ($MEM MiB, 1 vCPU)"
mkdir -p "$work/src"
qemu-system-x86_64 "${args[@]}" -serial "file:$work/src/serial.log" -qmp "unix:$work/src/qmp.sock,server=on,wait=off" -daemonize -pidfile "$work/src/qemu.pid"
wait_line "$work/src/serial.log" "VMSTATE-TICK 1" 300
qmp "$work/src/qmp.sock" stop "migrate:$work/snap.mig" quit
snap_bytes=$(stat -c %s "$work/snap.mig")
load=$(cut -d' ' -f1-3 /proc/loadavg)

rows=()
for n in $COUNTS; do
  log "ours: vmstate fork --count $n"
  t0=$(now)
  "${vmstate[@]}" fork "$work/snap.mig" --count "$n" --prefix b --dir "$work/clones" -- qemu-system-x86_64 "${args[@]}" -serial "file:/dev/null" > /dev/null
  t1=$(now)
  for ((i = 1; i <= n; i++)); do wait_line "$work/clones/b-$i/serial0.log" "VMSTATE-TICK" 60; done
  t2=$(now)
  sleep 3
  ours_rss=0
  for ((i = 1; i <= n; i++)); do ours_rss=$((ours_rss + $(rss_mib "$(cat "$work/clones/b-$i/qemu.pid")"))); done
  "${vmstate[@]}" fork --stop --dir "$work/clones" > /dev/null 2>&1

  log "peer: $n QEMUs on the unedited stream"
  t3=$(now)
  for ((i = 1; i <= n; i++)); do
    d="$work/peer-$i"; mkdir -p "$d"
    qemu-system-x86_64 "${args[@]}" -serial "file:$d/serial.log" -qmp "unix:$d/qmp.sock,server=on,wait=off" -daemonize -pidfile "$d/qemu.pid" -incoming "exec:cat $work/snap.mig" &
  done
  wait
  for ((i = 1; i <= n; i++)); do qmp "$work/peer-$i/qmp.sock" wait-running & done
  wait
  t4=$(now)
  for ((i = 1; i <= n; i++)); do wait_line "$work/peer-$i/serial.log" "VMSTATE-TICK" 60; done
  t5=$(now)
  sleep 3
  peer_rss=0
  for ((i = 1; i <= n; i++)); do peer_rss=$((peer_rss + $(rss_mib "$(cat "$work/peer-$i/qemu.pid")"))); done
  for ((i = 1; i <= n; i++)); do qmp "$work/peer-$i/qmp.sock" quit > /dev/null 2>&1 || true; rm -rf "$work/peer-$i"; done

  rows+=("$(awk -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v f="$t5" -v r1="$ours_rss" -v r2="$peer_rss" 'BEGIN {
    printf "| %d | %.2f s | %.2f s | %.0f MiB | %.2f s | %.2f s | %.0f MiB | %.2fx |", n, b - a, c - a, r1 / n, e - d, f - d, r2 / n, (b - a) / (e - d) }')")
done

{
  echo "# vmstate fork, $(date -u +%FT%TZ)"
  echo
  echo "Fixture guest, $MEM MiB, 1 vCPU, TCG; snapshot stream $((snap_bytes / 1048576)) MiB; load average at start: $load; host: $(nproc) CPUs."
  echo
  echo "| clones | ours: running | ours: all ticked | ours: RSS/clone | peer: running | peer: all ticked | peer: RSS/clone | ours/peer (running) |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "ours: \`vmstate fork\` (new MACs in both NICs and the guest kernel, one edited stream written per clone, overlays, daemonized QEMU, migrate-incoming, cont)."
  echo "peer: the same QEMUs started by hand on the unedited stream (the clones share MACs), resumed over QMP."
} | tee "$OUT"
