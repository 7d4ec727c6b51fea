#!/usr/bin/env bash
# Builds the arm64 (aarch64) VmState guest fixture: Debian 12's arm64 6.1
# kernel + an arm64 static busybox initramfs with the same ground-truth /init
# as the x86 guest (eng/guest/init, unchanged), into
# ${VMSTATE_CACHE:-$HOME/.cache/vmstate}/fixture/arm64/.
# Started by `eng/fixture.sh --arch arm64`; idempotent like it.
#
# The arm64 packages are fetched with a private apt state (its own sources
# list, package lists and cache under <cache>/fixture/arm64/apt): the machine's
# dpkg architectures and apt lists are not touched. The guest binaries
# (vmsmarker, vmsrunas) are cross-compiled with aarch64-linux-gnu-gcc
# (Debian's gcc-aarch64-linux-gnu + libc6-dev-arm64-cross).
#
# Usage: eng/fixture-arm64.sh [--force]
# Environment:
#   VMSTATE_CACHE    cache root (default: $HOME/.cache/vmstate)
#   VMSTATE_KVER     arm64 kernel ABI to use, e.g. 6.1.0-57-arm64 (default: the
#                    one already in the cache, else what linux-image-arm64 depends on)
#
# Prints (and writes to <cache>/fixture/arm64/env) lines NAME=VALUE:
#   KERNEL INITRD KVER KERNEL_SERIES ARCH MARKER_BIN RUNAS_BIN MODULES_DIR KCONFIG
# KERNEL is the uncompressed arm64 Image (Debian's vmlinuz-*-arm64 is one),
# for qemu-system-aarch64 -M virt -kernel.
set -euo pipefail

force=0
while (($#)); do
  case "$1" in
    --force) force=1 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "fixture-arm64.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

ENG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_DIR=$ENG_DIR/guest
# The guest-side helper of `vmstate agent` (a shell script), installed as /bin/vmstate-trigger as on x86.
TRIGGER_HELPER=$(cd "$ENG_DIR/.." && pwd)/guest/vmstate-trigger
CACHE_ROOT=${VMSTATE_CACHE:-${HOME:?HOME is not set; set VMSTATE_CACHE}/.cache/vmstate}
FX=$CACHE_ROOT/fixture/arm64
KMETA=linux-image-arm64
KVER_RE='6\.1\.0-[0-9]+-arm64'
# Kernel modules loaded by /init (only those that are not built in), plus deps.
WANTED_MODULES=(virtio_pci virtio_net e1000 virtio_console qemu_fw_cfg)

log() { echo "fixture-arm64: $*" >&2; }
die() { echo "fixture-arm64: ERROR: $*" >&2; exit 1; }

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
CROSS_GCC=$(need aarch64-linux-gnu-gcc)
CPIO=$(need cpio)
GZIP=$(need gzip)
READELF=$(need readelf)
XZ=$(need xz)
[[ -e /usr/aarch64-linux-gnu/lib/libc.a ]] || die "arm64 libc.a missing (static cross linking); run eng/install-deps.sh (libc6-dev-arm64-cross)"

mkdir -p "$FX"
exec 9>"$FX/.lock"
flock 9   # serialize concurrent builds

# --- private apt state for arm64 ----------------------------------------------
APT_DIR=$FX/apt
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$KEYRING" ]] || die "$KEYRING missing (package debian-archive-keyring)"
mkdir -p "$APT_DIR"/{lists/partial,cache/archives/partial,sources.list.d,preferences.d}
# The machine's own Debian mirrors, as its apt configuration names them (a machine may reach Debian only through a
# mirror of its own); deb.debian.org where it names none.
mirror_of() {
  "$APT_GET" indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk -v r="$1" '$2 == r { print $1; exit }'
}
MAIN_URI=$(mirror_of bookworm || true)
SECURITY_URI=$(mirror_of bookworm-security || true)
MAIN_URI=${MAIN_URI:-http://deb.debian.org/debian/}
SECURITY_URI=${SECURITY_URI:-http://deb.debian.org/debian-security/}
cat >"$APT_DIR/sources.list.tmp" <<EOF
deb [arch=arm64 signed-by=$KEYRING] $MAIN_URI bookworm main
deb [arch=arm64 signed-by=$KEYRING] $MAIN_URI bookworm-updates main
deb [arch=arm64 signed-by=$KEYRING] $SECURITY_URI bookworm-security main
EOF
mv "$APT_DIR/sources.list.tmp" "$APT_DIR/sources.list"
apt_opts=(
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::State::status=/dev/null"
  -o "Dir::Cache=$APT_DIR/cache"
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
  -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
  -o "Dir::Etc::PreferencesParts=$APT_DIR/preferences.d"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "APT::Architecture=arm64"
  -o "APT::Architectures::=arm64"
  -o "Acquire::http::Timeout=60"   # a mirror that does not answer fails the build in minutes, not hours
  -o "Acquire::Retries=2"
)
if ((EUID == 0)); then
  apt_opts+=(-o APT::Sandbox::User=root)   # no _apt sandbox warning
fi

apt_updated=0
apt_update() {
  ((apt_updated)) && return 0
  log "updating the private arm64 package lists"
  "$APT_GET" "${apt_opts[@]}" update -qq || die "apt-get update (private arm64 state in $APT_DIR) failed"
  apt_updated=1
}

resolve_kver() {
  "$APT_CACHE" "${apt_opts[@]}" depends "$KMETA" 2>/dev/null |
    sed -En "s/^ *Depends: linux-image-($KVER_RE)\$/\\1/p" | head -n1 || true
}

# apt_download DIR PKG: download PKG (arm64) into DIR; 1 when apt-get fails.
apt_download() {
  (cd "$1" && "$APT_GET" "${apt_opts[@]}" download "$2" >&2)
}

# --- kernel --------------------------------------------------------------------
fetch_kernel() {   # fetch_kernel KVER; returns 1 if the download fails
  local kver=$1 pkg=linux-image-$1-unsigned dl=$FX/download kroot=$FX/kernel/$1 debs
  rm -rf "$dl" "$kroot.tmp"
  mkdir -p "$dl"
  log "downloading $pkg (arm64)"
  if ! apt_download "$dl" "$pkg"; then
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
if [[ -z "$KVER" && -s "$FX/kver" ]]; then
  KVER=$(<"$FX/kver")   # keep the kernel already built, even if Debian has a newer one
  [[ -f "$FX/kernel/$KVER/.complete" ]] || KVER=
fi
if [[ -z "$KVER" ]]; then
  KVER=$(resolve_kver)
  if [[ -z "$KVER" ]]; then
    apt_update
    KVER=$(resolve_kver)
  fi
  [[ -n "$KVER" ]] || die "'apt-cache depends $KMETA' (arm64) names no linux-image-<ABI> matching $KVER_RE"
fi
[[ "$KVER" =~ ^${KVER_RE}$ ]] || die "unexpected arm64 kernel version '$KVER' (want e.g. 6.1.0-57-arm64)"
if [[ ! -f "$FX/kernel/$KVER/.complete" ]] && ! fetch_kernel "$KVER"; then
  apt_update   # stale lists name a kernel the archive no longer has
  if [[ -z "${VMSTATE_KVER:-}" ]]; then
    KVER=$(resolve_kver)
    [[ "$KVER" =~ ^${KVER_RE}$ ]] || die "unexpected arm64 kernel version '$KVER'"
  fi
  [[ -f "$FX/kernel/$KVER/.complete" ]] || fetch_kernel "$KVER" ||
    die "apt-get download linux-image-$KVER-unsigned (arm64) failed"
fi
KROOT=$FX/kernel/$KVER
MODULES_DIR=$KROOT/lib/modules/$KVER
printf '%s\n' "$KVER" >"$FX/kver.tmp" && mv "$FX/kver.tmp" "$FX/kver"

KERNEL=$FX/Image
if [[ ! -f "$KERNEL" ]] || ! cmp -s "$KROOT/boot/vmlinuz-$KVER" "$KERNEL"; then
  cp "$KROOT/boot/vmlinuz-$KVER" "$KERNEL.tmp" && mv "$KERNEL.tmp" "$KERNEL"
fi

# --- arm64 static busybox ---------------------------------------------------------
BUSYBOX=$FX/bin/busybox
mkdir -p "$FX/bin"
if ((force)) || [[ ! -x "$BUSYBOX" ]]; then
  dl=$FX/download-busybox
  rm -rf "$dl"
  mkdir -p "$dl"
  log "downloading busybox-static (arm64)"
  if ! apt_download "$dl" busybox-static; then
    apt_update
    apt_download "$dl" busybox-static || die "apt-get download busybox-static (arm64) failed"
  fi
  debs=("$dl"/busybox-static_*.deb)
  [[ -f "${debs[0]}" ]] || die "apt-get download produced no .deb for busybox-static"
  "$DPKG_DEB" -x "${debs[0]}" "$dl/root"
  [[ -x "$dl/root/bin/busybox" ]] || die "${debs[0]##*/} has no bin/busybox"
  "$READELF" -h "$dl/root/bin/busybox" | grep -q 'AArch64' || die "busybox from ${debs[0]##*/} is not an AArch64 binary"
  if "$READELF" -l "$dl/root/bin/busybox" | grep -q INTERP; then
    die "busybox from ${debs[0]##*/} is dynamically linked"
  fi
  cp "$dl/root/bin/busybox" "$BUSYBOX.tmp" && mv "$BUSYBOX.tmp" "$BUSYBOX"
  rm -rf "$dl"
fi
# The applet list of the arm64 binary (it cannot run here): Debian builds the
# same busybox-static configuration for every architecture, so the host's
# static busybox (same Debian version) lists the same applets.
applets=$(/bin/busybox --list 2>/dev/null || true)
[[ -n "$applets" ]] || die "/bin/busybox --list failed (install busybox-static; the applet list comes from it)"

# --- guest binaries (cross-compiled) --------------------------------------------------
build_bin() {   # build_bin NAME SOURCE
  local out=$FX/bin/$1 src=$GUEST_DIR/$2
  [[ -f "$src" ]] || die "missing source $src"
  if ((force)) || [[ ! -x "$out" || "$src" -nt "$out" || "$ENG_DIR/fixture-arm64.sh" -nt "$out" ]]; then
    log "cross-compiling $1 for aarch64"
    "$CROSS_GCC" -static -no-pie -O0 -g -Wall -Wextra -o "$out.tmp" "$src" || die "aarch64-linux-gnu-gcc failed for $src"
    mv "$out.tmp" "$out"
  fi
}
build_bin vmsmarker marker.c
build_bin vmsrunas runas.c
MARKER_BIN=$FX/bin/vmsmarker
RUNAS_BIN=$FX/bin/vmsrunas

# --- module load order ------------------------------------------------------------------
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
modlist=$(printf '%s\n' "${order[@]%.xz}")

# --- initramfs --------------------------------------------------------------------------
INITRD=$FX/initramfs.cpio.gz
stamp="kver=$KVER
$modlist"
rebuild=$force
if [[ ! -f "$INITRD" ]] || [[ "$(cat "$FX/initramfs.stamp" 2>/dev/null)" != "$stamp" ]]; then
  rebuild=1
else
  for f in "$GUEST_DIR"/* "$TRIGGER_HELPER" "$ENG_DIR/fixture-arm64.sh" "$MARKER_BIN" "$RUNAS_BIN" "$BUSYBOX"; do
    if [[ "$f" -nt "$INITRD" ]]; then rebuild=1; fi
  done
fi

if ((rebuild)); then
  log "building initramfs (arm64 kernel $KVER, modules: ${WANTED_MODULES[*]})"
  st=$FX/initramfs.staging
  rm -rf "$st"
  mkdir -p "$st"/{bin,sbin,etc/vmstate,proc,sys,dev,run,tmp,root,home,lib/modules/"$KVER"}
  cp "$BUSYBOX" "$st/bin/busybox"
  while IFS= read -r applet; do
    if [[ -n "$applet" && "$applet" != busybox && ! -e "$st/bin/$applet" ]]; then
      ln -s busybox "$st/bin/$applet"
    fi
  done <<<"$applets"
  for n in vmsd-alpha vmsd-beta vmsd-gamma vmsd-delta; do
    ln "$st/bin/busybox" "$st/bin/$n"
  done
  cp "$MARKER_BIN" "$st/bin/vmsmarker"
  cp "$RUNAS_BIN" "$st/bin/vmsrunas"
  install -m 0755 "$GUEST_DIR/init" "$st/init"
  install -m 0755 "$TRIGGER_HELPER" "$st/bin/vmstate-trigger"
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
  if ((EUID == 0)); then
    mknod -m 600 "$st/dev/console" c 5 1
  fi
  (cd "$st" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
     "$CPIO" --null -o -H newc -R 0:0 --quiet) | "$GZIP" -9n >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  printf '%s\n' "$stamp" >"$FX/initramfs.stamp"
  rm -rf "$st"
fi

# --- env file -----------------------------------------------------------------------------
envtext=$(
  printf 'KERNEL=%q\n' "$KERNEL"
  printf 'INITRD=%q\n' "$INITRD"
  printf 'KVER=%q\n' "$KVER"
  printf 'KERNEL_SERIES=%q\n' 6.1
  printf 'ARCH=%q\n' arm64
  printf 'MARKER_BIN=%q\n' "$MARKER_BIN"
  printf 'RUNAS_BIN=%q\n' "$RUNAS_BIN"
  printf 'MODULES_DIR=%q\n' "$MODULES_DIR"
  printf 'KCONFIG=%q\n' "$KROOT/boot/config-$KVER"
)
if [[ "$(cat "$FX/env" 2>/dev/null)" != "$envtext" ]]; then
  printf '%s\n' "$envtext" >"$FX/env.tmp" && mv "$FX/env.tmp" "$FX/env"
fi
printf '%s\n' "$envtext"
