#!/usr/bin/env bash
# Benchmark: `vmstate mount` against the plain ways to get the same bytes. The fixture guest (RAM on a shared
# memory file) is saved once (`vmstate snapshot --qmp`), then:
#   * sequential read of machine/physmem (dd, 1 MiB blocks, 256 MiB of RAM from 1 MiB) of the mounted snapshot, first
#     read (through FUSE) and second read (the kernel's page cache), beside `vmstate read --pa 0 RAM -f raw` of the
#     same range and `cat` of a plain file of the same bytes (page cache warm): goal >= 1 GB/s;
#   * random 4 KiB preads per second of physmem (a fresh mount) beside the same on the plain file;
#   * proc/PID/mem: the marker's 64 KiB buffer read 2000 times (GB/s, after a first read);
#   * `cat linux/ps` on a fresh mount beside `vmstate ps SNAPSHOT` (one process each);
#   * `ls -R linux proc`, cold (fresh mount) and warm;
#   * the running guest mounted (`--qmp`, RAM on shared memory): sequential physmem read beside `cat` of the
#     guest's own RAM file (the same range).
# Prints the ratios and writes a report.
#
# Usage: benchmarks/mount-bench.sh
# Environment:
#   MEM=512          guest RAM in MiB
#   VMSTATE_BIN      the vmstate command to measure, e.g. "dotnet src/VmState.Cli/bin/Release/net10.0/vmstate.dll"
#                    (default: eng/publish.sh builds the Native AOT executable)
#   OUT              report (default benchmarks/results/mount-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEM=${MEM:-512}
OUT=${OUT:-$root/benchmarks/results/mount-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-mnt.XXXXXX") # short: the QMP socket path is limited
shm=/dev/shm/vmstate-mount-bench-$$
mnt="$work/mnt"
mkdir -p "$mnt"
mount_pid=
cleanup() {
  if [[ -n "$mount_pid" ]]; then kill -INT "$mount_pid" 2> /dev/null || true; wait "$mount_pid" 2> /dev/null || true; fi
  fusermount3 -u -z "$mnt" 2> /dev/null || true
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work" "$shm"
}
trap cleanup EXIT
log() { echo "mount-bench: $*" >&2; }
die() { echo "mount-bench: ERROR: $*" >&2; exit 1; }

# shellcheck source=benchmarks/common.sh
source "$root/benchmarks/common.sh"
# VMSTATE_BIN may be a command with arguments here ("dotnet path/vmstate.dll").
bin=$(bench_vmstate "$work") || exit 1
read -r -a vmstate <<< "$bin"
vm() { "${vmstate[@]}" "$@"; }
now_ns() { date +%s%N; }
secs() { awk -v ns="$1" 'BEGIN {printf "%.3f", ns / 1e9}'; }
gbs() { awk -v b="$1" -v ns="$2" 'BEGIN {printf "%.2f", (b / 1e9) / (ns / 1e9)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# `vmstate read` takes at most 256 MiB and stops at a hole (the VGA window below 1 MiB): the sequential reads compare
# SEQ MiB of guest RAM from 1 MiB.
SEQ=$((MEM - 1 < 256 ? MEM - 1 : 256))
bytes=$((SEQ << 20))

# Mounts SOURCE... at $mnt in the background and waits for its "mounted" line.
mount_vm() {
  vm mount "$@" "$mnt" --no-cache --foreground 2> "$work/mount.err" &
  mount_pid=$!
  for _ in $(seq 600); do
    grep -q '^mounted ' "$work/mount.err" 2> /dev/null && return 0
    kill -0 "$mount_pid" 2> /dev/null || { cat "$work/mount.err" >&2; die "vmstate mount $* failed"; }
    sleep 0.1
  done
  die "vmstate mount $* did not come up"
}
umount_vm() {
  vm umount "$mnt"
  wait "$mount_pid"
  mount_pid=
}
# Nanoseconds COMMAND... takes (output dropped).
timed() {
  local t0
  t0=$(now_ns)
  "$@" > /dev/null
  echo $(($(now_ns) - t0))
}
random_reads() { # FILE SPAN COUNT -> reads per second
  python3 - "$@" << 'PY'
import os, random, sys, time
path, span, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(15)
offsets = [rng.randrange(0, span // 4096) * 4096 for _ in range(count)]
fd = os.open(path, os.O_RDONLY)
t0 = time.perf_counter()
for o in offsets:
    if len(os.pread(fd, 4096, o)) != 4096:
        raise SystemExit(f"short read at {o}")
print(f"{count / (time.perf_counter() - t0):.0f}")
PY
}

log "booting the fixture guest with $MEM MiB on $shm"
SHARED_MEM=$shm MEM=$MEM TIMEOUT=300 bash "$root/eng/run-guest.sh" "$work/guest" > "$work/guest.log" 2>&1 || { cat "$work/guest.log" >&2; die "the guest did not boot"; }
marker=$(grep -m1 'VMSTATE-TRUTH marker ' "$work/guest/truth.txt")
mpid=$(sed -E 's/.* pid=([0-9]+).*/\1/' <<< "$marker")
maddr=$(sed -E 's/.* addr=(0x[0-9a-f]+).*/\1/' <<< "$marker")
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
vm snapshot --qmp "$work/guest/qmp.sock" -o "$work/s.mig" > /dev/null
snap="$work/s.mig"

log "vmstate read and a plain file of the same $SEQ MiB"
vm read "$snap" 0x100000 "${SEQ}m" --pa -f raw --no-cache > "$work/ram.raw"
[[ $(stat -c %s "$work/ram.raw") -eq $bytes ]] || die "vmstate read gave $(stat -c %s "$work/ram.raw") bytes, not $bytes"
cat "$work/ram.raw" > /dev/null
read_ns=$(timed vm read "$snap" 0x100000 "${SEQ}m" --pa -f raw --no-cache)
cat_ns=$(timed cat "$work/ram.raw")

log "snapshot mount: physmem sequential (first and second read), ps, ls -R"
mount_vm "$snap"
t0=$(now_ns)
ls -R "$mnt/linux" "$mnt/proc" > /dev/null
ls_cold_ns=$(($(now_ns) - t0))
t0=$(now_ns)
ls -R "$mnt/linux" "$mnt/proc" > /dev/null
ls_warm_ns=$(($(now_ns) - t0))
phys_ns=$(timed dd if="$mnt/machine/physmem" bs=1M skip=1 count="$SEQ" status=none)
phys2_ns=$(timed dd if="$mnt/machine/physmem" bs=1M skip=1 count="$SEQ" status=none)
cmp -s <(dd if="$mnt/machine/physmem" bs=1M skip=1 count="$SEQ" status=none) "$work/ram.raw" || die "physmem differs from vmstate read"
dd if="$mnt/proc/$mpid/mem" bs=64k iflag=skip_bytes skip=$((maddr)) count=1 status=none > /dev/null # first use: made and JIT-compiled
mem_ns=$(timed python3 -c "
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(2000):
    assert len(os.pread(fd, 65536, int(sys.argv[2], 16))) == 65536
" "$mnt/proc/$mpid/mem" "$maddr")
umount_vm

mount_vm "$snap"
catps_ns=$(timed cat "$mnt/linux/ps")
cmp -s "$mnt/linux/ps" <(vm ps "$snap" --no-cache) || die "linux/ps differs from vmstate ps"
random_mount=$(random_reads "$mnt/machine/physmem" "$bytes" 20000)
umount_vm
ps_ns=$(timed vm ps "$snap" --no-cache)
random_plain=$(random_reads "$work/ram.raw" "$bytes" 20000)

log "live mount (shared memory): physmem sequential"
mount_vm --qmp "$work/guest/qmp.sock"
live_ns=$(timed dd if="$mnt/machine/physmem" bs=1M skip=1 count="$SEQ" status=none)
live2_ns=$(timed dd if="$mnt/machine/physmem" bs=1M skip=1 count="$SEQ" status=none)
umount_vm
dd if="$shm" bs=1M skip=1 count="$SEQ" status=none > /dev/null
shm_ns=$(timed dd if="$shm" bs=1M skip=1 count="$SEQ" status=none)
status=$(python3 - "$work/guest/qmp.sock" << 'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", "query-status"):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
    reply = json.loads(f.readline())
    while "return" not in reply: reply = json.loads(f.readline())
print(reply["return"]["status"])
PY
)
[[ "$status" == running ]] || die "the guest is $status after the live mount"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

verdict() { awk -v g="$1" 'BEGIN {print (g >= 1.0) ? "PASS" : "FAIL"}'; }
{
  echo "# vmstate mount ($(date +%F))"
  echo
  echo "\`benchmarks/mount-bench.sh\` (MEM=$MEM MiB, $(nproc) cores, load $load_start -> $load_end); vmstate: \`${vmstate[*]}\`."
  echo
  echo "| sequential read of $SEQ MiB of guest RAM (from 1 MiB) | s | GB/s | x cat of a plain file |"
  echo "|---|---:|---:|---:|"
  echo "| \`cat\` of a plain file of the same bytes (page cache) | $(secs "$cat_ns") | $(gbs "$bytes" "$cat_ns") | 1.00 |"
  echo "| \`vmstate read --pa 0x100000 ${SEQ}m -f raw\` of the snapshot (one process) | $(secs "$read_ns") | $(gbs "$bytes" "$read_ns") | $(ratio "$cat_ns" "$read_ns") |"
  echo "| \`dd\` of the mounted snapshot's machine/physmem, first read | $(secs "$phys_ns") | $(gbs "$bytes" "$phys_ns") | $(ratio "$cat_ns" "$phys_ns") |"
  echo "| the same again (kernel page cache, keep_cache) | $(secs "$phys2_ns") | $(gbs "$bytes" "$phys2_ns") | $(ratio "$cat_ns" "$phys2_ns") |"
  echo "| \`dd\` of the running guest's RAM file in /dev/shm (page cache) | $(secs "$shm_ns") | $(gbs "$bytes" "$shm_ns") | $(ratio "$cat_ns" "$shm_ns") |"
  echo "| \`dd\` of the running guest's machine/physmem (\`--qmp\`, shared memory), first read | $(secs "$live_ns") | $(gbs "$bytes" "$live_ns") | $(ratio "$cat_ns" "$live_ns") |"
  echo "| the same again (a new open: the page cache is dropped, read from the guest again) | $(secs "$live2_ns") | $(gbs "$bytes" "$live2_ns") | $(ratio "$cat_ns" "$live2_ns") |"
  echo
  echo "Goal (issue 15): physmem >= 1 GB/s sequential: snapshot $(verdict "$(gbs "$bytes" "$phys_ns")"), live $(verdict "$(gbs "$bytes" "$live_ns")") (first read), $(verdict "$(gbs "$bytes" "$live2_ns")") (again)."
  echo
  echo "| other | result |"
  echo "|---|---:|"
  echo "| random 4 KiB preads of physmem (fresh mount) | $random_mount /s |"
  echo "| random 4 KiB preads of the plain file (page cache) | $random_plain /s ($(ratio "$random_mount" "$random_plain")x) |"
  echo "| proc/$mpid/mem: the marker's 64 KiB buffer, 2000 preads (after a first read) | $(gbs $((2000 * 65536)) "$mem_ns") GB/s |"
  echo "| \`cat linux/ps\` on a fresh mount | $(secs "$catps_ns") s |"
  echo "| \`vmstate ps SNAPSHOT\` (a process) | $(secs "$ps_ns") s ($(ratio "$ps_ns" "$catps_ns")x the cat) |"
  echo "| \`ls -R linux proc\`, cold (fresh mount) | $(secs "$ls_cold_ns") s |"
  echo "| \`ls -R linux proc\`, warm | $(secs "$ls_warm_ns") s |"
  echo
  echo "The running guest was \`$status\` after its mount was unmounted. physmem equals \`vmstate read\`, linux/ps equals \`vmstate ps\`."
} > "$OUT"
log "report: $OUT"
cat "$OUT"
