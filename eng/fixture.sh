#!/usr/bin/env bash
# Builds the VmState guest fixture (a Debian 12 kernel + busybox initramfs with
# ground-truth /init) into ${VMSTATE_CACHE:-$HOME/.cache/vmstate}/fixture/.
# Idempotent: when everything is up to date it only prints the env lines.
#
# Usage: eng/fixture.sh [--kernel SERIES] [--force]
#        eng/fixture.sh --arch arm64 [--force]   (the aarch64 guest: eng/fixture-arm64.sh)
#   --kernel SERIES  the kernel series to build the guest for (default 6.1):
#                      6.1   linux-image-6.1.0-N-amd64 (what linux-image-amd64
#                            depends on); files in <cache>/fixture/
#                      6.12  linux-image-6.12.N+deb12-amd64 (what
#                            linux-image-6.12-amd64 depends on; bookworm-security
#                            carries it, as bookworm-backports does);
#                            files in <cache>/fixture/6.12/
#   --force          rebuild the guest binaries and the initramfs
# Environment:
#   FIXTURE_KERNEL   the series when --kernel is not given
#   VMSTATE_CACHE    cache root (default: $HOME/.cache/vmstate)
#   VMSTATE_KVER     kernel ABI to use, e.g. 6.1.0-56-amd64 (default: the one
#                    already in the cache for the series, else what its
#                    meta-package depends on); must belong to the series
#
# Prints (and writes to the series' env file) lines NAME=VALUE:
#   KERNEL INITRD KVER KERNEL_SERIES MARKER_BIN RUNAS_BIN MODULES_DIR
#   SYSTEM_MAP KCONFIG
# SYSTEM_MAP is the real System.map, from the kernel's -dbg package (the image
# package's boot/System.map is a one-line placeholder).
set -euo pipefail

# --- arm64 guest: a script of its own (eng/fixture-arm64.sh) -----------------
for arg in "$@"; do
  case "$arg" in
    --arch=arm64|arm64)
      args=(); for a in "$@"; do [[ "$a" == --arch || "$a" == --arch=arm64 || "$a" == arm64 ]] || args+=("$a"); done
      exec bash "$(dirname "${BASH_SOURCE[0]}")/fixture-arm64.sh" "${args[@]}" ;;
  esac
done

force=0
SERIES=${FIXTURE_KERNEL:-6.1}
while (($#)); do
  case "$1" in
    --force) force=1 ;;
    --kernel)
      (($# >= 2)) || { echo "fixture.sh: --kernel needs a series (6.1 or 6.12)" >&2; exit 2; }
      SERIES=$2; shift ;;
    --kernel=*) SERIES=${1#--kernel=} ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "fixture.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

ENG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_DIR=$ENG_DIR/guest
# The guest-side helper of `vmstate agent` (shipped for users in guest/), installed as /bin/vmstate-trigger.
TRIGGER_HELPER=$(cd "$ENG_DIR/.." && pwd)/guest/vmstate-trigger
CACHE_ROOT=${VMSTATE_CACHE:-${HOME:?HOME is not set; set VMSTATE_CACHE}/.cache/vmstate}
FX=$CACHE_ROOT/fixture
# Per series: the meta-package naming the current ABI, the ABI's pattern, and
# where the guest's own files go (kernel trees and guest binaries are shared).
case "$SERIES" in
  6.1)  KMETA=linux-image-amd64;      KVER_RE='6\.1\.0-[0-9]+-amd64';          OUT=$FX ;;
  6.12) KMETA=linux-image-6.12-amd64; KVER_RE='6\.12\.[0-9]+\+(deb[0-9]+|bpo)-amd64'; OUT=$FX/6.12 ;;
  *) echo "fixture.sh: unknown kernel series '$SERIES' (want 6.1 or 6.12)" >&2; exit 2 ;;
esac
# Kernel modules loaded by /init (only those that are not built in), plus deps.
WANTED_MODULES=(virtio_pci virtio_net e1000 qemu_fw_cfg virtio_console virtio_blk crc32c_generic ext4)
BUSYBOX=/bin/busybox

log() { echo "fixture: $*" >&2; }
die() { echo "fixture: ERROR: $*" >&2; exit 1; }

need() {
  local what=$1 path dir
  path=$(command -v "$what" 2>/dev/null || true)
  if [[ -z "$path" ]]; then
    for dir in /usr/sbin /sbin; do
      if [[ -x "$dir/$what" ]]; then path=$dir/$what; break; fi
    done
  fi
  [[ -n "$path" ]] || die "'$what' not found; run eng/install-deps.sh"
  printf '%s\n' "$path"
}

APT_GET=$(need apt-get)
APT_CACHE=$(need apt-cache)
DPKG_DEB=$(need dpkg-deb)
DEPMOD=$(need depmod)
GCC=$(need gcc)
CPIO=$(need cpio)
GZIP=$(need gzip)
READELF=$(need readelf)
XZ=$(need xz)
TAR=$(need tar)
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX not found; run eng/install-deps.sh (package busybox-static)"
if "$READELF" -l "$BUSYBOX" | grep -q INTERP; then
  die "$BUSYBOX is dynamically linked; install busybox-static (eng/install-deps.sh)"
fi
[[ -e /usr/lib/x86_64-linux-gnu/libc.a ]] || die "libc.a missing (static linking); run eng/install-deps.sh"

mkdir -p "$FX" "$OUT"
exec 9>"$FX/.lock"
flock 9   # serialize concurrent builds (parallel test runs)

apt_root_opts=()
if ((EUID == 0)); then
  apt_root_opts=(-o APT::Sandbox::User=root)   # no _apt sandbox warning
fi

# --- kernel version -----------------------------------------------------------
resolve_kver() {
  local dep
  dep=$("$APT_CACHE" depends "$KMETA" 2>/dev/null |
        sed -En "s/^ *Depends: linux-image-($KVER_RE)\$/\\1/p" | head -n1)
  printf '%s\n' "$dep"
}

apt_updated=0
apt_update() {
  ((apt_updated)) && return 0
  ((EUID == 0)) || die "apt-get update needs root; run 'sudo apt-get update' (or set VMSTATE_KVER)"
  log "running apt-get update"
  "$APT_GET" update -qq || die "apt-get update failed"
  apt_updated=1
}

check_kver() {
  [[ "$1" =~ ^${KVER_RE}$ ]] ||
    die "unexpected kernel version '$1' for series $SERIES (want the generic flavour, e.g. 6.1.0-56-amd64 or 6.12.117+deb12-amd64)"
}

# fetch_kernel KVER: download linux-image-KVER, extract it to
# $FX/kernel/KVER and run depmod there. Returns 1 if the download fails.
fetch_kernel() {
  local kver=$1 pkg=linux-image-$1 dl=$FX/download kroot=$FX/kernel/$1 debs
  rm -rf "$dl" "$kroot.tmp"
  mkdir -p "$dl"
  log "downloading $pkg"
  if ! (cd "$dl" && "$APT_GET" "${apt_root_opts[@]}" download "$pkg" >&2); then
    rm -rf "$dl"
    return 1
  fi
  debs=("$dl"/"$pkg"_*.deb)
  [[ -f "${debs[0]}" ]] || die "apt-get download produced no .deb for $pkg"
  log "extracting ${debs[0]##*/}"
  mkdir -p "$kroot.tmp"
  "$DPKG_DEB" -x "${debs[0]}" "$kroot.tmp"
  [[ -f "$kroot.tmp/boot/vmlinuz-$kver" ]] || die "${debs[0]##*/} has no boot/vmlinuz-$kver"
  "$DEPMOD" -b "$kroot.tmp" "$kver"
  rm -rf "$kroot" "$dl"
  mv "$kroot.tmp" "$kroot"
  touch "$kroot/.complete"
}

KVER=${VMSTATE_KVER:-}
if [[ -n "$KVER" ]]; then
  check_kver "$KVER"
  if [[ ! -f "$FX/kernel/$KVER/.complete" ]] && ! fetch_kernel "$KVER"; then
    apt_update
    fetch_kernel "$KVER" || die "apt-get download linux-image-$KVER failed (VMSTATE_KVER=$KVER)"
  fi
else
  if [[ -s "$OUT/kver" ]]; then
    KVER=$(<"$OUT/kver")   # keep the kernel already built, even if Debian has a newer one
    [[ -f "$FX/kernel/$KVER/.complete" ]] || KVER=
  fi
  if [[ -z "$KVER" ]]; then
    KVER=$(resolve_kver)
    if [[ -z "$KVER" ]]; then
      log "apt-cache does not know $KMETA"
      apt_update
      KVER=$(resolve_kver)
      [[ -n "$KVER" ]] || die "could not find the Debian 12 kernel $SERIES: 'apt-cache depends $KMETA' names no linux-image-<ABI> matching $KVER_RE"
    fi
    check_kver "$KVER"
    if [[ ! -f "$FX/kernel/$KVER/.complete" ]] && ! fetch_kernel "$KVER"; then
      # Stale package lists name a kernel the archive no longer has.
      apt_update
      KVER=$(resolve_kver)
      check_kver "$KVER"
      if [[ ! -f "$FX/kernel/$KVER/.complete" ]]; then
        fetch_kernel "$KVER" || die "apt-get download linux-image-$KVER failed"
      fi
    fi
  fi
fi
KROOT=$FX/kernel/$KVER
MODULES_DIR=$KROOT/lib/modules/$KVER

# --- System.map -------------------------------------------------------------------
# The image package's boot/System.map is a one-line placeholder ("The real
# System.map is in the linux-image-<version>-dbg package"). The -dbg package is
# ~1 GB, but System.map is the first file of its data.tar: tar stops reading
# there (--occurrence), so only the download costs time. The .deb is not kept.
SYSTEM_MAP=$KROOT/System.map-$KVER
fetch_system_map() {   # fetch_system_map KVER; returns 1 if the download fails
  local kver=$1 pkg=linux-image-$1-dbg dl=$FX/download-dbg out=$FX/kernel/$1/System.map-$1 debs st
  rm -rf "$dl"
  mkdir -p "$dl"
  log "downloading $pkg (for its System.map)"
  if ! (cd "$dl" && "$APT_GET" "${apt_root_opts[@]}" download "$pkg" >&2); then
    rm -rf "$dl"
    return 1
  fi
  debs=("$dl"/"$pkg"_*.deb)
  [[ -f "${debs[0]}" ]] || die "apt-get download produced no .deb for $pkg"
  # dpkg-deb dies of SIGPIPE once tar has the file and stops reading: only tar's status counts.
  set +o pipefail
  "$DPKG_DEB" --fsys-tarfile "${debs[0]}" 2>/dev/null |
    "$TAR" -x -O --occurrence=1 "./usr/lib/debug/boot/System.map-$kver" >"$out.tmp"
  st=${PIPESTATUS[1]}
  set -o pipefail
  ((st == 0)) || die "${debs[0]##*/} has no usr/lib/debug/boot/System.map-$kver"
  grep -Eq '^[0-9a-f]{16} [Tt] _text$' "$out.tmp" || die "System.map-$kver from ${debs[0]##*/} has no _text line"
  mv "$out.tmp" "$out"
  rm -rf "$dl"
}
if [[ ! -s "$SYSTEM_MAP" ]] && ! fetch_system_map "$KVER"; then
  apt_update
  fetch_system_map "$KVER" || die "apt-get download linux-image-$KVER-dbg failed"
fi
printf '%s\n' "$KVER" >"$OUT/kver.tmp" && mv "$OUT/kver.tmp" "$OUT/kver"

KERNEL=$OUT/vmlinuz
if [[ ! -f "$KERNEL" ]] || ! cmp -s "$KROOT/boot/vmlinuz-$KVER" "$KERNEL"; then
  cp "$KROOT/boot/vmlinuz-$KVER" "$KERNEL.tmp" && mv "$KERNEL.tmp" "$KERNEL"
fi

# --- guest binaries -----------------------------------------------------------
mkdir -p "$FX/bin"
build_bin() {   # build_bin NAME SOURCE
  local out=$FX/bin/$1 src=$GUEST_DIR/$2
  [[ -f "$src" ]] || die "missing source $src"
  if ((force)) || [[ ! -x "$out" || "$src" -nt "$out" || "$ENG_DIR/fixture.sh" -nt "$out" ]]; then
    log "compiling $1"
    "$GCC" -static -no-pie -O0 -g -Wall -Wextra -o "$out.tmp" "$src" || die "gcc failed for $src"
    mv "$out.tmp" "$out"
  fi
}
build_bin vmsmarker marker.c
build_bin vmsrunas runas.c

# --- qemu-guest-agent (vmstate agent --freeze) ----------------------------------
# qemu-ga from Debian's qemu-guest-agent package (downloaded and unpacked, not
# installed); the shared libraries it needs are this host's (same release and
# architecture). /init starts it only in a VM that has its virtio-serial port.
QGA_DIR=$FX/qga
QGA_BIN=$QGA_DIR/qemu-ga
fetch_qga() {
  local dl=$QGA_DIR/download debs
  rm -rf "$dl" && mkdir -p "$dl"
  log "downloading qemu-guest-agent"
  (cd "$dl" && "$APT_GET" "${apt_root_opts[@]}" download qemu-guest-agent >&2) || return 1
  debs=("$dl"/qemu-guest-agent_*.deb)
  [[ -f "${debs[0]}" ]] || return 1
  "$DPKG_DEB" -x "${debs[0]}" "$dl/x" || return 1
  cp "$dl/x/usr/sbin/qemu-ga" "$QGA_BIN.tmp" && mv "$QGA_BIN.tmp" "$QGA_BIN"
  rm -rf "$dl"
}
if [[ ! -x $QGA_BIN ]]; then
  mkdir -p "$QGA_DIR"
  fetch_qga || { apt_update && fetch_qga; } || die "apt-get download qemu-guest-agent failed"
fi
MARKER_BIN=$FX/bin/vmsmarker
RUNAS_BIN=$FX/bin/vmsrunas

# --- module load order ----------------------------------------------------------
declare -A dep_of=() path_of=() seen=()
order=()
while IFS= read -r line; do
  rel=${line%%:*}
  name=${rel##*/}; name=${name%%.ko*}; name=${name//-/_}
  path_of[$name]=$rel
  dep_of[$name]=${line#*:}
done <"$MODULES_DIR/modules.dep"

add_module() {   # depth-first: dependencies before the module itself
  local name=$1 d dn
  [[ -n "${seen[$name]:-}" ]] && return 0
  seen[$name]=1
  for d in ${dep_of[$name]}; do
    dn=${d##*/}; dn=${dn%%.ko*}; dn=${dn//-/_}
    add_module "$dn"
  done
  order+=("${path_of[$name]}")
}
for m in "${WANTED_MODULES[@]}"; do
  if grep -Eq "/${m}\.ko(\.[a-z]+)?$" "$MODULES_DIR/modules.builtin"; then
    continue   # built into the kernel
  fi
  [[ -n "${path_of[$m]:-}" ]] || die "module $m is neither built in nor in $MODULES_DIR/modules.dep"
  add_module "$m"
done
# Compressed modules (Debian's 6.12 ships .ko.xz) are unpacked into the
# initramfs: busybox insmod reads plain ELF only.
modlist=$(printf '%s\n' "${order[@]%.xz}")

# --- initramfs ------------------------------------------------------------------
INITRD=$OUT/initramfs.cpio.gz
stamp="kver=$KVER
$modlist"
rebuild=$force
if [[ ! -f "$INITRD" ]] || [[ "$(cat "$OUT/initramfs.stamp" 2>/dev/null)" != "$stamp" ]]; then
  rebuild=1
else
  for f in "$GUEST_DIR"/* "$TRIGGER_HELPER" "$QGA_BIN" "$ENG_DIR/fixture.sh" "$MARKER_BIN" "$RUNAS_BIN" "$BUSYBOX"; do
    if [[ "$f" -nt "$INITRD" ]]; then rebuild=1; fi
  done
fi

if ((rebuild)); then
  log "building initramfs (kernel $KVER, modules: ${WANTED_MODULES[*]})"
  st=$OUT/initramfs.staging
  rm -rf "$st"
  mkdir -p "$st"/{bin,sbin,etc/vmstate,proc,sys,dev,run,tmp,root,home,lib/modules/"$KVER"}
  cp "$BUSYBOX" "$st/bin/busybox"
  while IFS= read -r applet; do
    if [[ -n "$applet" && "$applet" != busybox && ! -e "$st/bin/$applet" ]]; then
      ln -s busybox "$st/bin/$applet"
    fi
  done < <("$BUSYBOX" --list)
  # Distinctively named copies of busybox (hard links: stored once in the cpio).
  for n in vmsd-alpha vmsd-beta vmsd-gamma vmsd-delta; do
    ln "$st/bin/busybox" "$st/bin/$n"
  done
  cp "$MARKER_BIN" "$st/bin/vmsmarker"
  cp "$RUNAS_BIN" "$st/bin/vmsrunas"
  install -m 0755 "$GUEST_DIR/init" "$st/init"
  install -m 0755 "$TRIGGER_HELPER" "$st/bin/vmstate-trigger"
  install -m 0755 "$QGA_BIN" "$st/bin/qemu-ga"
  # qemu-ga's shared libraries and the dynamic loader, at the paths it was linked for.
  while read -r lib; do
    mkdir -p "$st${lib%/*}"
    cp -L "$lib" "$st$lib"
  done < <(ldd "$QGA_BIN" | sed -En 's/.*=> (\/[^ ]+) .*/\1/p; s/^[[:space:]]*(\/[^ ]+) .*/\1/p' | sort -u)
  mkdir -p "$st/var" && ln -s /run "$st/var/run"
  for rel in "${order[@]}"; do
    mkdir -p "$st/lib/modules/$KVER/${rel%/*}"
    case "$rel" in
      *.ko) cp "$MODULES_DIR/$rel" "$st/lib/modules/$KVER/$rel" ;;
      *.ko.xz) "$XZ" -dc "$MODULES_DIR/$rel" >"$st/lib/modules/$KVER/${rel%.xz}" ;;
      *) die "module $rel: unsupported compression" ;;
    esac
  done
  printf '%s\n' "$modlist" >"$st/etc/vmstate/modules"
  cat >"$st/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
vmsuser:x:1000:1000:vmstate user:/home:/bin/sh
vmsgamma:x:1001:1001:vmstate gamma:/home:/bin/sh
EOF
  cat >"$st/etc/group" <<'EOF'
root:x:0:
vmsuser:x:1000:
vmsgamma:x:1001:
EOF
  # /init also mounts devtmpfs and reopens /dev/console, so the node is
  # only a nicety (it needs root to create).
  if ((EUID == 0)); then
    mknod -m 600 "$st/dev/console" c 5 1
  fi
  (cd "$st" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
     "$CPIO" --null -o -H newc -R 0:0 --quiet) | "$GZIP" -9n >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  printf '%s\n' "$stamp" >"$OUT/initramfs.stamp"
  rm -rf "$st"
fi

# --- env file -------------------------------------------------------------------
envtext=$(
  printf 'KERNEL=%q\n' "$KERNEL"
  printf 'INITRD=%q\n' "$INITRD"
  printf 'KVER=%q\n' "$KVER"
  printf 'KERNEL_SERIES=%q\n' "$SERIES"
  printf 'MARKER_BIN=%q\n' "$MARKER_BIN"
  printf 'RUNAS_BIN=%q\n' "$RUNAS_BIN"
  printf 'MODULES_DIR=%q\n' "$MODULES_DIR"
  printf 'SYSTEM_MAP=%q\n' "$SYSTEM_MAP"
  printf 'KCONFIG=%q\n' "$KROOT/boot/config-$KVER"
)
if [[ "$(cat "$OUT/env" 2>/dev/null)" != "$envtext" ]]; then
  printf '%s\n' "$envtext" >"$OUT/env.tmp" && mv "$OUT/env.tmp" "$OUT/env"
fi
printf '%s\n' "$envtext"
