#!/usr/bin/env bash
# Benchmark: the fixture's Linux guest with a big RAM (default 64 GiB; QEMU allocates only what the guest touches, so
# it runs on a small host under TCG), saved once as a migration stream, then every read-only command and extract and
# edit on it: wall time and peak RSS of each (goal: RSS <= 256 MiB whatever the guest's size, time following the data
# in the stream), `cp` of the stream in the same run, and the core's size on disk (sparse). Every command runs with
# --no-cache, so each one parses the stream (benchmarks/index-cache-bench.sh measures the index cache).
#
# Usage: benchmarks/big-guest-bench.sh
# Environment:
#   MEM=65536        guest RAM in MiB
#   VMSTATE_BIN      the vmstate executable to measure (default: eng/publish.sh builds the Native AOT executable)
#   VMSTATE_CACHE    cache root (default ~/.cache/vmstate); the stream is kept in bench/linux-MEMMiB.mig
#   OUT              report (default benchmarks/results/big-guest-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEM=${MEM:-65536}
cache=${VMSTATE_CACHE:-$HOME/.cache/vmstate}/bench
OUT=${OUT:-$root/benchmarks/results/big-guest-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-big.XXXXXX") # short: the QMP socket path is limited
cleanup() {
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "big-guest-bench: $*" >&2; }
die() { echo "big-guest-bench: ERROR: $*" >&2; exit 1; }
[[ -x /usr/bin/time ]] || die "GNU time is missing (apt-get install time)"

# shellcheck source=benchmarks/common.sh
source "$root/benchmarks/common.sh"
vmstate=$(bench_vmstate "$work") || exit 1

mkdir -p "$cache"
stream="$cache/linux-${MEM}MiB.mig"
if [[ ! -f "$stream" ]]; then
  log "booting the fixture guest with $MEM MiB and saving it to $stream"
  MEM=$MEM TIMEOUT=600 bash "$root/eng/run-guest.sh" "$work/guest" > "$work/guest.log" 2>&1 || { cat "$work/guest.log" >&2; die "the guest did not boot"; }
  "$vmstate" snapshot --qmp "$work/guest/qmp.sock" -o "$stream.tmp" >&2
  mv "$stream.tmp" "$stream"
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null
fi
cat "$stream" > /dev/null # warm page cache, as for cp

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
# Runs a command under /usr/bin/time; one table row: name, wall s, peak RSS MiB.
measure() {
  local name=$1
  shift
  sync
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/out" 2> "$work/err" || { cat "$work/err" >&2; die "$name failed"; }
  read -r secs kib < "$work/time"
  rows+=("$name|$secs|$((kib / 1024))")
  log "$name: $secs s, $((kib / 1024)) MiB"
}

measure "cp of the stream" cp "$stream" "$work/copy.mig"
rm -f "$work/copy.mig"
measure "vmstate info" "$vmstate" info "$stream" --no-cache
measure "vmstate ps" "$vmstate" ps "$stream" --no-cache
tasks=$(($(wc -l < "$work/out") - 1))
measure "vmstate modules" "$vmstate" modules "$stream" --no-cache
measure "vmstate dmesg --tail 20" "$vmstate" dmesg "$stream" --tail 20 --no-cache
measure "vmstate extract" "$vmstate" extract "$stream" -o "$work/x" --no-cache
core_len=$(stat -c %s "$work/x/core.elf")
core_kib=$(du -k "$work/x/core.elf" | cut -f1)
rm -rf "$work/x"
measure "vmstate edit --set-reg" "$vmstate" edit "$stream" -o "$work/e.mig" --set-reg 0:rax=0x1234 --no-cache
rm -f "$work/e.mig"

{
  echo "# A $MEM MiB Linux guest — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Made by \`benchmarks/big-guest-bench.sh\`: the fixture guest (\`eng/run-guest.sh\`, MEM=$MEM: a memory-backend-ram"
  echo "with reserve=off, TCG) saved with \`vmstate snapshot\`; stream $(stat -c %s "$stream") bytes. Warm page cache;"
  echo "one run each, outputs on $(df -T "$work" | awk 'NR == 2 {print $2}'). vmstate: ${VMSTATE_BIN:-the Native AOT executable of eng/publish.sh}."
  echo "\`ps\` listed $tasks tasks. The core: $core_len bytes long, $core_kib KiB on disk."
  echo
  echo "| command | wall s | peak RSS MiB | RSS <= 256 MiB |"
  echo "|---|---|---|---|"
  for r in "${rows[@]}"; do
    IFS='|' read -r name secs mib <<< "$r"
    echo "| $name | $secs | $mib | $( ((mib <= 256)) && echo PASS || echo FAIL) |"
  done
  echo
  echo "Load average at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg). Machine: $(nproc) cores,"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r), $(qemu-system-x86_64 --version | head -1)."
} > "$OUT"
cat "$OUT"
