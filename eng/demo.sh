#!/usr/bin/env bash
# The README's first command: on a fresh Debian 12 machine, installs what is missing, builds vmstate and the
# guest fixture, boots the guest under QEMU, snapshots it (a migration stream and a savevm in a qcow2 disk),
# and shows `vmstate info` and `vmstate extract` on the snapshot, then gdb on the extracted core, then the guest
# Linux views (kernel-info, ps, dmesg, maps, procdump + gdb) found with no profile.
# Usage: eng/demo.sh [WORKDIR]     (default: ./artifacts/demo)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$root/artifacts/demo}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"

step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

step "installing missing Debian packages"
bash "$root/eng/install-deps.sh"

step "building vmstate (Release, Native AOT; eng/publish.sh)"
vmstate="$(bash "$root/eng/publish.sh")"

step "building the guest fixture (Debian kernel + busybox initramfs)"
bash "$root/eng/fixture.sh"

guest="$work/guest"
bash "$root/eng/run-guest.sh" --stop "$guest" > /dev/null 2>&1 || true
rm -rf "$guest"
trap 'bash "$root/eng/run-guest.sh" --stop "$guest" > /dev/null 2>&1 || true' EXIT

step "booting the guest (QEMU, TCG, 2 vCPUs, 512 MiB, virtio-net + e1000)"
DISK="$work/disk.qcow2" bash "$root/eng/run-guest.sh" "$guest" | grep -E 'VMSTATE-TRUTH (kernel|nic|marker)|READY after' || true

step "snapshotting it: a migration stream (the guest is paused briefly and resumed)"
"$vmstate" snapshot --qmp "$guest/qmp.sock" -o "$work/guest.mig"
step "and a savevm snapshot named 'demo' inside the qcow2 disk"
"$vmstate" snapshot --qmp "$guest/qmp.sock" --savevm demo
bash "$root/eng/run-guest.sh" --stop "$guest"

step "vmstate info guest.mig"
"$vmstate" info "$work/guest.mig"

step "vmstate snapshots disk.qcow2"
"$vmstate" snapshots "$work/disk.qcow2"

step "vmstate extract guest.mig -o extract"
rm -rf "$work/extract"
"$vmstate" extract "$work/guest.mig" -o "$work/extract" --xml
ls -l "$work/extract"

step "the NIC MAC addresses in hardware.json (the guest printed them above)"
grep -E '"(id|mac)"' "$work/extract/hardware.json" | grep -B1 '"mac"' | sed 's/^ *//'

step "gdb on the extracted core"
gdb -batch -c "$work/extract/core.elf" -ex 'info threads' -ex 'info registers rip rsp' -ex 'x/3i $rip' 2>&1 | grep -v '^\[New LWP'

step "the same from the qcow2 snapshot"
"$vmstate" extract "$work/disk.qcow2" --snapshot demo -o "$work/extract-qcow2"

step "inside the guest's Linux, from the snapshot alone (no System.map, no debug info): kernel, processes, log"
"$vmstate" kernel-info "$work/guest.mig" | head -12
"$vmstate" ps "$work/guest.mig"
"$vmstate" dmesg "$work/guest.mig" --tail 5

marker_pid=$(sed -n 's/^VMSTATE-TRUTH marker pid=\([0-9]*\).*/\1/p' "$guest/truth.txt" | head -1)
if [[ -n "$marker_pid" ]]; then
  step "the marker process (pid $marker_pid): its memory map, and a core of it that gdb reads with its binary"
  "$vmstate" maps "$work/guest.mig" "$marker_pid"
  "$vmstate" procdump "$work/guest.mig" "$marker_pid" -o "$work/vmsmarker.core"
  marker_bin=$(sed -n 's/^MARKER_BIN=//p' "${VMSTATE_CACHE:-$HOME/.cache/vmstate}/fixture/env" 2>/dev/null || true)
  if [[ -n "$marker_bin" ]]; then
    gdb -batch -ex bt -ex 'x/s g_marker_buf' "$marker_bin" "$work/vmsmarker.core" 2>&1 | grep -E '^#|VMSTATE-MARKER'
  fi
fi

printf '\nDone. Outputs are in %s\n' "$work"
