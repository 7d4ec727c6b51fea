#!/usr/bin/env bash
# Benchmark: a consistent cut across many VMs. N fixture guests run as libvirt domains (a private libvirtd, started
# here in its own mount namespace as the integration tests do); for each fleet size the cut is taken three ways, and
# for each the skew is the spread of QEMU's own STOP event timestamps (max - min), read the same way for all three
# (virsh qemu-monitor-event --timestamp):
#   vmstate fleet snapshot --libvirt URI --domain ... --live   (ours: stops sent concurrently, background saves)
#   for d in ...; do virsh suspend $d; done                    (a shell loop, then virsh resume)
#   for d in ...; do virsh save $d FILE; done                  (one save after another, then virsh restore)
# Goal (issue 16): skew <= 5 ms for 8 local VMs. Also reports each way's total time and ours' per-VM pause.
#
# Usage: benchmarks/fleet-bench.sh            (needs root: the private libvirtd bind-mounts its directories)
# Environment:
#   SIZES="4 8"      fleet sizes (the largest is the number of guests booted)
#   MEM=128          guest RAM in MiB
#   VMSTATE_BIN      the vmstate executable to measure (default: eng/publish.sh builds the Native AOT executable)
#   OUT              report (default benchmarks/results/fleet-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES=${SIZES:-"4 8"}
MEM=${MEM:-128}
OUT=${OUT:-$root/benchmarks/results/fleet-$(date +%F).md}
work=$(mktemp -d /tmp/vms-fleet.XXXXXX) # short: socket paths are limited
uri="qemu:///system?socket=$work/sock/libvirt-sock"
log() { echo "fleet-bench: $*" >&2; }
die() { echo "fleet-bench: ERROR: $*" >&2; exit 1; }
cleanup() {
  if [[ -s $work/libvirtd.pid ]]; then
    for d in $(virsh -c "$uri" list --name 2> /dev/null); do virsh -c "$uri" destroy "$d" > /dev/null 2>&1 || true; done
    kill "$(cat "$work/libvirtd.pid")" 2> /dev/null || true
    sleep 1
  fi
  rm -rf "$work"
}
trap cleanup EXIT
((EUID == 0)) || die "needs root (the private libvirtd bind-mounts its own /etc/libvirt, /run/libvirt, ...)"
for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
  [[ -d $d ]] || die "$d is missing: install libvirt-daemon-system (eng/install-deps.sh)"
done

# shellcheck source=benchmarks/common.sh
source "$root/benchmarks/common.sh"
vmstate=$(bench_vmstate "$work") || exit 1

eval "$(bash "$root/eng/fixture.sh")"
max=0
for n in $SIZES; do ((n > max)) && max=$n; done

log "starting a private libvirtd in $work"
mkdir -p "$work"/{run,etc,lib,cache,log,sock,guest}
chmod 755 "$work" "$work/guest"
cp "$KERNEL" "$work/guest/vmlinuz"
cp "$INITRD" "$work/guest/initramfs.cpio.gz"
cat > "$work/etc/libvirtd.conf" << EOF
unix_sock_dir = "$work/sock"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$work/libvirtd.log"
EOF
cat > "$work/etc/qemu.conf" << EOF
user = "root"
group = "root"
dynamic_ownership = 0
stdio_handler = "file"
security_driver = "none"
EOF
(cd "$work" && unshare --mount --propagation private -- sh -c "
  mount --bind $work/etc /etc/libvirt && mount --bind $work/run /run/libvirt && mount --bind $work/lib /var/lib/libvirt &&
  mount --bind $work/cache /var/cache/libvirt && mount --bind $work/log /var/log/libvirt &&
  exec libvirtd --config $work/etc/libvirtd.conf --pid-file $work/libvirtd.pid" > "$work/libvirtd.out" 2>&1 &)
for _ in $(seq 300); do virsh -c "$uri" version > /dev/null 2>&1 && break; sleep 0.2; done
virsh -c "$uri" version > /dev/null 2>&1 || { cat "$work/libvirtd.out" >&2; die "libvirtd did not start"; }

log "booting $max guests ($MEM MiB, 1 vCPU each)"
names=()
for i in $(seq 1 "$max"); do
  name=$(printf 'fleet%02d' "$i")
  names+=("$name")
  cat > "$work/$name.xml" << EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>$MEM</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$work/guest/vmlinuz</kernel><initrd>$work/guest/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check</cmdline></os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='$work/guest/$name.log' append='on'/></serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
  virsh -c "$uri" create "$work/$name.xml" > /dev/null
done
for name in "${names[@]}"; do
  for _ in $(seq 1500); do grep -qs '^VMSTATE-READY' "$work/guest/$name.log" && break; sleep 0.2; done
  grep -qs '^VMSTATE-READY' "$work/guest/$name.log" || die "$name did not boot"
done

# STOP timestamps of the domains while COMMAND runs: QEMU's own (virsh qemu-monitor-event prints them as "at S.US").
watch_stops() {
  local file=$1
  virsh -c "$uri" qemu-monitor-event --loop --event STOP > "$file" 2>&1 &
  echo $!
}
spread_ms() { # file, n: the spread of the first STOP of each domain, in ms
  python3 - "$1" "$2" << 'EOF'
import re, sys
stops = {}
for line in open(sys.argv[1]):
    t = re.search(r"at (\d+)\.(\d+)", line)
    d = re.search(r"domain '([^']+)'", line)
    if t and d and d.group(1) not in stops:
        stops[d.group(1)] = int(t.group(1)) + int(t.group(2)) / 1e6
if len(stops) < int(sys.argv[2]):
    print("n/a"); sys.exit()
v = sorted(stops.values())
print(f"{(v[-1] - v[0]) * 1000:.3f}")
EOF
}
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

{
  echo "# Fleet cut: vmstate fleet snapshot vs virsh loops ($(date -u +%FT%TZ))"
  echo
  echo "Local libvirt domains, $MEM MiB RAM and 1 vCPU each (TCG), on $(nproc) cores. Skew = spread of QEMU's STOP event timestamps across the VMs."
  echo
  echo "| VMs | way | skew (ms) | max pause (ms) | total (s) | skew ratio to ours |"
  echo "|---|---|---|---|---|---|"
} > "$work/report.md"

for n in $SIZES; do
  set -- "${names[@]:0:n}"
  args=()
  for d in "$@"; do args+=(--domain "$d"); done

  log "$n VMs: vmstate fleet snapshot --live"
  t0=$(now)
  "$vmstate" fleet snapshot --libvirt "$uri" "${args[@]}" -o "$work/cut$n" --live --json > "$work/cut$n.json"
  t1=$(now)
  ours=$(python3 -c "import json;print(json.load(open('$work/cut$n.json'))['skewMs'])")
  pause=$(python3 -c "import json;print(max(v['pauseMs'] or 0 for v in json.load(open('$work/cut$n.json'))['vms']))")
  echo "| $n | vmstate fleet snapshot --live | $ours | $pause | $(secs "$t0" "$t1") | 1.0x |" >> "$work/report.md"
  rm -rf "$work/cut$n"

  log "$n VMs: virsh suspend loop"
  w=$(watch_stops "$work/suspend$n.ev"); sleep 1
  t0=$(now)
  for d in "$@"; do virsh -c "$uri" suspend "$d" > /dev/null; done
  t1=$(now)
  for d in "$@"; do virsh -c "$uri" resume "$d" > /dev/null; done
  sleep 1; kill "$w" 2> /dev/null || true
  s=$(spread_ms "$work/suspend$n.ev" "$n")
  r=$(python3 -c "print(f'{$s / max($ours, 0.001):.0f}x')" 2> /dev/null || echo "n/a")
  echo "| $n | virsh suspend loop | $s | - | $(secs "$t0" "$t1") | $r |" >> "$work/report.md"

  log "$n VMs: virsh save one after another"
  w=$(watch_stops "$work/save$n.ev"); sleep 1
  t0=$(now)
  for d in "$@"; do virsh -c "$uri" save "$d" "$work/$d.save" > /dev/null; done
  t1=$(now)
  for d in "$@"; do virsh -c "$uri" restore "$work/$d.save" > /dev/null; rm -f "$work/$d.save"; done
  sleep 1; kill "$w" 2> /dev/null || true
  s=$(spread_ms "$work/save$n.ev" "$n")
  r=$(python3 -c "print(f'{$s / max($ours, 0.001):.0f}x')" 2> /dev/null || echo "n/a")
  echo "| $n | virsh save loop | $s | - | $(secs "$t0" "$t1") | $r |" >> "$work/report.md"
done

mkdir -p "$(dirname "$OUT")"
cp "$work/report.md" "$OUT"
cat "$OUT"
