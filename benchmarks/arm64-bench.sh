#!/usr/bin/env bash
# Benchmark: VmState on the arm64 fixture guest (Debian's arm64 6.1 kernel, qemu-system-aarch64 -M virt -cpu max,
# TCG, 2 vCPUs, 256 MiB), beside its peers in the same run:
#   - boot: seconds from QEMU's start to VMSTATE-READY (TCG arm64; what an integration test class pays once)
#   - extract: `vmstate extract` of the guest's migration stream against QEMU's scripts/analyze-migration.py -x
#     (RAM pulled out of the same stream) and against QEMU's own dump-guest-memory of the paused guest; prints the
#     ratios (peer time / vmstate time)
#   - info and translate: `vmstate info` and `vmstate translate` of the kernel's _stext (TTBR1 walk), wall time
#   - Linux: cold `vmstate ps` (a fresh process per run; with --no-cache the kernel is located from VMCOREINFO each
#     time, else its location comes from the index cache after the warm-up run; goal <= 250 ms as on x86), `vmstate kernel-info`, `dmesg`, `modules`; no peer reads this guest without a profile (drgn needs
#     the arm64 vmlinux's DWARF, the reference checker reads x86-64 only), so no ratio
# Usage: benchmarks/arm64-bench.sh
# Environment:
#   VMSTATE_BIN   an already built vmstate (default: eng/publish.sh builds the Native AOT executable)
#   BENCH_RUNS    runs of each timed command, the median is reported (default 3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=${BENCH_RUNS:-3}
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-arm64-bench.XXXXXX")
qemu_pid=
cleanup() {
  [[ -n "$qemu_pid" ]] && kill "$qemu_pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -n "${VMSTATE_BIN:-}" ]]; then
  vmstate=$VMSTATE_BIN
else
  log "publishing vmstate (eng/publish.sh)"
  vmstate=$(bash "$root/eng/publish.sh" "$work/bin" 2> "$work/publish.log") || { cat "$work/publish.log" >&2; exit 1; }
fi

log "arm64 fixture"
eval "$(bash "$root/eng/fixture.sh" --arch arm64 | grep -E '^(KERNEL|INITRD|KVER)=')"
analyze=$(bash "$root/benchmarks/fetch-analyze-migration.sh")

# QMP over the socket with python3 (one command per call).
qmp() {
  python3 - "$work/qmp.sock" "$@" << 'EOF'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile('rw')
def reply():
    while True:
        m = json.loads(f.readline())
        if 'event' not in m:
            return m
reply()
f.write('{"execute":"qmp_capabilities"}\n'); f.flush(); reply()
cmd = json.loads(sys.argv[2])
f.write(json.dumps(cmd) + '\n'); f.flush(); r = reply()
if 'error' in r:
    sys.exit(r['error']['desc'])
if cmd['execute'] == 'migrate':
    while True:
        f.write('{"execute":"query-migrate"}\n'); f.flush(); st = reply()['return'].get('status')
        if st in ('completed', 'failed'):
            sys.exit(0 if st == 'completed' else 'migration failed')
        time.sleep(0.05)
EOF
}

log "booting the arm64 guest"
t0=$(now)
qemu-system-aarch64 -M virt -cpu max -accel tcg -smp 2 -m 256 -display none -no-reboot \
  -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyAMA0 quiet loglevel=3 panic=-1" \
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0 -device vmcoreinfo \
  -serial "file:$work/serial.log" -qmp "unix:$work/qmp.sock,server=on,wait=off" &
qemu_pid=$!
until grep -q VMSTATE-READY "$work/serial.log" 2> /dev/null; do
  kill -0 "$qemu_pid" 2> /dev/null || { echo "arm64-bench: QEMU exited before READY" >&2; exit 1; }
  sleep 0.1
done
boot=$(secs "$t0" "$(now)")
stext=$(grep -oE 'ksym name=_stext addr=0x[0-9a-f]+' "$work/serial.log" | grep -oE '0x[0-9a-f]+$')
qmp '{"execute":"stop"}'
t0=$(now); qmp "{\"execute\":\"dump-guest-memory\",\"arguments\":{\"paging\":false,\"protocol\":\"file:$work/qemu-dump.elf\"}}"; dump=$(secs "$t0" "$(now)")
qmp "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > $work/guest.mig\"}}"
qmp '{"execute":"quit"}' || true
wait "$qemu_pid" 2> /dev/null || true
qemu_pid=
cat "$work/guest.mig" > /dev/null

timed_median() {   # timed_median CMD...: median wall seconds of BENCH_RUNS runs (after one warm-up); fails when CMD does
  local t=() i t0
  "$@" > /dev/null 2>&1 || return 1
  for ((i = 0; i < runs; i++)); do
    rm -rf "$work/out" "$work/analyze"
    t0=$(now)
    "$@" > /dev/null 2>&1
    t+=("$(secs "$t0" "$(now)")")
  done
  median "${t[@]}"
}

log "measuring ($runs runs each, median)"
extract=$(timed_median "$vmstate" extract "$work/guest.mig" -o "$work/out")
info=$(timed_median "$vmstate" info "$work/guest.mig")
translate=$(timed_median "$vmstate" translate "$work/guest.mig" "$stext")
ps_nocache=$(timed_median "$vmstate" ps "$work/guest.mig" --no-cache)
# Through the index cache (its own directory): the warm-up run searches and keeps the kernel's location, the timed
# runs read it from there (a fresh process each time).
ps_cold=$(timed_median "$vmstate" ps "$work/guest.mig" --cache-dir "$work/index")
ps_timings_search=$("$vmstate" ps "$work/guest.mig" --timings --no-cache 2>&1 > /dev/null | tr '\n' ';' || true)
ps_timings_cached=$("$vmstate" ps "$work/guest.mig" --timings --cache-dir "$work/index" 2>&1 > /dev/null | tr '\n' ';' || true)
kernel_info=$(timed_median "$vmstate" kernel-info "$work/guest.mig")
dmesg=$(timed_median "$vmstate" dmesg "$work/guest.mig")
modules=$(timed_median "$vmstate" modules "$work/guest.mig")
# QEMU 7.2's analyze-migration.py has no description of the arm "cpu" section's subsections: it stops with
# "Unknown section type: 5" on an aarch64 stream. Its failure is reported instead of a ratio.
analyze_note=
if ! analyze_secs=$(timed_median bash -c "mkdir -p '$work/analyze' && cd '$work/analyze' && python3 '$analyze' -x -f '$work/guest.mig'"); then
  analyze_note=$(mkdir -p "$work/analyze" && cd "$work/analyze" && python3 "$analyze" -x -f "$work/guest.mig" 2>&1 | tail -1 || true)
fi

printf '\narm64 guest (%s, -M virt -cpu max, TCG, 2 vCPUs, 256 MiB); load %s\n' "$KVER" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| measure | seconds | peer | peer seconds | ratio (peer / vmstate) |\n|---|---|---|---|---|\n'
printf '| boot to VMSTATE-READY | %s | | | |\n' "$boot"
if [[ -z "$analyze_note" ]]; then
  printf '| vmstate extract (core.elf + hardware.json) | %s | analyze-migration.py -x | %s | %.1fx |\n' "$extract" "$analyze_secs" "$(awk -v a="$analyze_secs" -v b="$extract" 'BEGIN {print a / b}')"
else
  printf '| vmstate extract (core.elf + hardware.json) | %s | analyze-migration.py -x | fails: %s | - |\n' "$extract" "$analyze_note"
fi
printf '| vmstate extract | %s | QEMU dump-guest-memory (paused guest) | %s | %.1fx |\n' "$extract" "$dump" "$(awk -v a="$dump" -v b="$extract" 'BEGIN {print a / b}')"
printf '| vmstate info | %s | | | |\n' "$info"
printf '| vmstate translate _stext (4-level TTBR1 walk, process start included) | %s | | | |\n' "$translate"
printf '| vmstate ps --no-cache, cold process (kernel searched each run) | %s | | | |\n' "$ps_nocache"
printf '| vmstate ps, cold process, kernel location from the index cache (goal <= 0.250) | %s | vmstate ps --no-cache | %s | %.1fx |\n' "$ps_cold" "$ps_nocache" "$(awk -v a="$ps_nocache" -v b="$ps_cold" 'BEGIN {print a / b}')"
printf '| vmstate kernel-info | %s | | | |\n' "$kernel_info"
printf '| vmstate dmesg | %s | | | |\n' "$dmesg"
printf '| vmstate modules | %s | | | |\n' "$modules"
printf '\nps --timings, searched: %s\nps --timings, from the index cache: %s\n' "$ps_timings_search" "$ps_timings_cached"
