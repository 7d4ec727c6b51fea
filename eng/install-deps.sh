#!/usr/bin/env bash
# Installs the Debian 12 packages VmState's guest fixture and integration
# tests need. Idempotent: when everything is present it only checks and exits.
#
# Usage: eng/install-deps.sh [--check]
#   --check   only report what is missing (exit 1 if anything is), install nothing
set -euo pipefail

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
  *) echo "install-deps.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

# Each entry: "<debian package>|<probe>". The probe is an absolute file path
# (must exist), "cmd:<name>" (must be on PATH) or "pkg" (dpkg must list the
# package as installed). A package is installed when its probe fails.
requirements=(
  "qemu-system-x86|cmd:qemu-system-x86_64"
  "qemu-utils|cmd:qemu-img"
  "qemu-system-arm|cmd:qemu-system-aarch64"   # the arm64 guest (eng/fixture-arm64.sh)
  "gcc-aarch64-linux-gnu|cmd:aarch64-linux-gnu-gcc"   # arm64 guest binaries (cross-compiled)
  "libc6-dev-arm64-cross|/usr/aarch64-linux-gnu/lib/libc.a"
  "gdb-multiarch|cmd:gdb-multiarch"   # Arm64 tests: gdb opens extract's AArch64 core
  "busybox-static|pkg"          # static /bin/busybox, copied into the initramfs
  "cpio|cmd:cpio"
  "gzip|cmd:gzip"
  "gdb|cmd:gdb"
  "gcc|cmd:gcc"
  "libc6-dev|/usr/lib/x86_64-linux-gnu/libc.a"   # for gcc -static
  "binutils|cmd:nm"
  "python3|cmd:python3"
  "python3-drgn|/usr/lib/python3/dist-packages/drgn"   # ExtractTests: drgn reads extract's core
  "crash|cmd:crash"              # ExtractTests: crash opens extract's core
  "dpkg-dev|cmd:dpkg-architecture"
  "kmod|pkg"                     # depmod builds modules.dep for the fixture kernel
  "clang|cmd:clang"              # Native AOT linking (eng/publish.sh)
  "zlib1g-dev|/usr/include/zlib.h"   # Native AOT links zlib
  "libfuse3-3|/usr/lib/x86_64-linux-gnu/libfuse3.so.3"   # vmstate mount (FUSE)
  "fuse3|cmd:fusermount3"        # vmstate mount by users other than root
  "bpftool|cmd:bpftool"          # MountTests: bpftool reads the raw BTF of linux/btf/
  "libvirt-clients|cmd:virsh"    # LibvirtTests: virsh save/restore of a domain
  "libvirt-daemon-driver-qemu|/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"
  "libvirt-daemon-system|/etc/libvirt/libvirtd.conf"   # libvirtd, its directories and the libvirt-qemu user
  "socat|cmd:socat"              # benchmarks/trigger-bench.sh: the shell peer of vmstate agent
  "e2fsprogs|cmd:mkfs.ext2"      # TriggerAgentTests: the guest's data disk that agent --freeze freezes
  "chromium|cmd:chromium"        # WebServeTests: Playwright drives Debian's chromium (no browser download)
)

probe_ok() {
  local pkg=$1 probe=$2 status
  case "$probe" in
    cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 ;;
    /*) [[ -e "$probe" ]] ;;
    pkg)
      status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
      [[ "$status" == ii* ]]
      ;;
    *) echo "install-deps.sh: bad probe '$probe'" >&2; return 2 ;;
  esac
}

missing=()
for req in "${requirements[@]}"; do
  pkg=${req%%|*}
  probe=${req#*|}
  if ! probe_ok "$pkg" "$probe"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all Debian packages present"
elif ((check_only)); then
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
else
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      SUDO=(sudo)
    else
      echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
      exit 1
    fi
  else
    SUDO=()
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Re-probe so a package that installed but did not provide the probe fails loudly.
  still=()
  for req in "${requirements[@]}"; do
    pkg=${req%%|*}
    probe=${req#*|}
    probe_ok "$pkg" "$probe" || still+=("$pkg (${probe})")
  done
  if ((${#still[@]})); then
    echo "install-deps: still missing after apt-get install: ${still[*]}" >&2
    exit 1
  fi
  missing=()
fi

# The .NET SDK is not a Debian package here; it is assumed to be installed.
if command -v dotnet >/dev/null 2>&1 && dotnet_ver=$(dotnet --version 2>/dev/null); then
  echo "install-deps: .NET SDK ${dotnet_ver}"
else
  echo "install-deps: WARNING: the .NET SDK ('dotnet') was not found or does not work;" >&2
  echo "install-deps: install the .NET 10 SDK to build VmState (global.json pins the version)." >&2
fi

if ((${#missing[@]})); then
  exit 1
fi
