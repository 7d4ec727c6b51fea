#!/usr/bin/env bash
# Fetches QEMU's scripts/analyze-migration.py from Debian's qemu source package (the version of the installed
# QEMU when apt can find it, else bookworm's newest), unpacked with dpkg-source -x and nothing else applied.
# The deb-src lines live in a temporary sources file and a private apt state directory used only for this
# command, so the machine's apt configuration and package lists are untouched.
# The script is cached under ${VMSTATE_CACHE:-$HOME/.cache/vmstate}/qemu-src/ and later runs reuse it.
# QEMU's code is never copied into the repository.
# Usage: benchmarks/fetch-analyze-migration.sh     (prints the path of analyze-migration.py)
set -euo pipefail

cache="${VMSTATE_CACHE:-$HOME/.cache/vmstate}/qemu-src"
script="$cache/analyze-migration.py"
if [[ -s "$script" ]]; then
  echo "$script"
  exit 0
fi

log() { echo "fetch-analyze-migration: $*" >&2; }
command -v dpkg-source > /dev/null || { log "installing dpkg-dev"; apt-get install -y -q dpkg-dev >&2; }

# The mirror in use: the first deb.debian.org-style URI of the machine's own Debian sources.
mirror=$(grep -hoE '^(URIs:|deb) *(\[[^]]*\] *)?https?://[^ ]+/debian/?( |$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -oE 'https?://[^ ]+' | head -1 || true)
security=$(grep -hoE '^(URIs:|deb) *(\[[^]]*\] *)?https?://[^ ]+/debian-security/?( |$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -oE 'https?://[^ ]+' | head -1 || true)
mirror="${mirror:-http://deb.debian.org/debian}"
security="${security:-http://deb.debian.org/debian-security}"
mirror="${mirror%/}"
security="${security%/}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/archives/partial" "$tmp/src"
cat > "$tmp/sources.list" << EOF
deb-src $mirror bookworm main
deb-src $mirror bookworm-updates main
deb-src $security bookworm-security main
EOF
apt_opts=(
  -o "Dir::Etc::sourcelist=$tmp/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$tmp/lists"
  -o "Dir::Cache::archives=$tmp/archives"
  -o "Dir::Cache::pkgcache=$tmp/pkgcache.bin"
  -o "Dir::Cache::srcpkgcache=$tmp/srcpkgcache.bin"
  -o "APT::Get::List-Cleanup=0"
  -o "APT::Sandbox::User=root"
)
log "apt-get update (deb-src only, private lists in $tmp)"
apt-get "${apt_opts[@]}" update -q >&2

# Prefer the exact source version of the installed QEMU.
want=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || true)
spec=qemu
versions=$(apt-cache "${apt_opts[@]}" showsrc qemu 2> /dev/null | grep '^Version:' || true)
if [[ -n "$want" ]] && grep -qx "Version: $want" <<< "$versions"; then
  spec="qemu=$want"
fi
log "apt-get source --download-only $spec"
(cd "$tmp/src" && apt-get "${apt_opts[@]}" source --download-only -q "$spec" >&2)

dscs=("$tmp/src"/qemu_*.dsc)
dsc=${dscs[0]}
log "dpkg-source -x $(basename "$dsc")"
(cd "$tmp/src" && dpkg-source --no-check -x "$dsc" qemu >&2)
[[ -f "$tmp/src/qemu/scripts/analyze-migration.py" ]] || { log "no scripts/analyze-migration.py in $dsc"; exit 1; }

mkdir -p "$cache"
cp "$tmp/src/qemu/scripts/analyze-migration.py" "$script.tmp"
chmod +x "$script.tmp"
basename "$dsc" .dsc > "$cache/SOURCE"
mv "$script.tmp" "$script"
log "cached $script (from $(cat "$cache/SOURCE"))"
echo "$script"
