#!/usr/bin/env bash
# Benchmark: the history store against keeping captures as files. The fixture guest (idle: its init ticks once a
# second) is saved N times a few seconds apart (`vmstate snapshot --qmp`: pause, migrate to a file, resume); each
# stream is imported into one store (`vmstate history import`), compressed with the zstd CLI (level 3, its default),
# then deleted, so the disk holds one stream at a time. Reports the store's size beside the N streams and the N
# zstd files (goal in issue 13: the store <= 1.5x one stream for 100 captures), import throughput beside zstd's, then
# `history verify` and a `ps` on the last capture beside the same on a stream. The guest's qcow2 disk also takes
# each capture as an internal snapshot (`vmstate snapshot --savevm`, QEMU's savevm), the third way of keeping them.
#
# Usage: benchmarks/history-bench.sh
# Environment:
#   N=100            captures
#   SLEEP=2          seconds between captures
#   MEM=512          guest RAM in MiB
#   VMSTATE_BIN      the vmstate executable to measure (default: eng/publish.sh builds the Native AOT executable)
#   OUT              report (default benchmarks/results/history-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N=${N:-100}
SLEEP=${SLEEP:-2}
MEM=${MEM:-512}
OUT=${OUT:-$root/benchmarks/results/history-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-hist.XXXXXX") # short: the QMP socket path is limited
cleanup() {
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "history-bench: $*" >&2; }
die() { echo "history-bench: ERROR: $*" >&2; exit 1; }
command -v zstd > /dev/null || die "the zstd CLI is missing (apt-get install zstd)"

# shellcheck source=benchmarks/common.sh
source "$root/benchmarks/common.sh"
vmstate=$(bench_vmstate "$work") || exit 1

log "booting the fixture guest with $MEM MiB"
DISK="$work/disk.qcow2" MEM=$MEM TIMEOUT=300 bash "$root/eng/run-guest.sh" "$work/guest" > "$work/guest.log" 2>&1 || { cat "$work/guest.log" >&2; die "the guest did not boot"; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

store="$work/store"
raw_total=0
zst_total=0
first_stream=0
import_ns=0
zstd_ns=0
now_ns() { date +%s%N; }
for ((i = 1; i <= N; i++)); do
  sleep "$SLEEP"
  "$vmstate" snapshot --qmp "$work/guest/qmp.sock" -o "$work/c.mig" > /dev/null
  size=$(stat -c %s "$work/c.mig")
  ((i == 1)) && first_stream=$size
  raw_total=$((raw_total + size))
  cat "$work/c.mig" > /dev/null # page cache warm for both readers
  t0=$(now_ns)
  zstd -q -3 -f "$work/c.mig" -o "$work/c.mig.zst"
  t1=$(now_ns)
  "$vmstate" history import --store "$store" "$work/c.mig" > /dev/null 2> "$work/import.err" || { cat "$work/import.err" >&2; die "import $i failed"; }
  t2=$(now_ns)
  zstd_ns=$((zstd_ns + t1 - t0))
  import_ns=$((import_ns + t2 - t1))
  zst_total=$((zst_total + $(stat -c %s "$work/c.mig.zst")))
  "$vmstate" snapshot --qmp "$work/guest/qmp.sock" --savevm "hist-$i" > /dev/null
  ((i == N)) && cp "$work/c.mig" "$work/last.mig"
  rm -f "$work/c.mig" "$work/c.mig.zst"
  ((i % 10 == 0)) && log "$i of $N captures"
done
bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

qcow2_bytes=$(stat -c %s "$work/disk.qcow2")
qcow2_used=$(($(stat -c %b "$work/disk.qcow2") * $(stat -c %B "$work/disk.qcow2")))
qcow2_snaps=$(qemu-img snapshot -l -U "$work/disk.qcow2" | grep -c ' hist-' || true)
store_bytes=$(find "$store" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
rate() { awk -v b="$1" -v ns="$2" 'BEGIN {printf "%.0f", (b / 1048576) / (ns / 1e9)}'; }

t0=$(now_ns)
"$vmstate" history verify "$store" > "$work/verify.out" 2>&1 || { cat "$work/verify.out" >&2; die "history verify failed"; }
verify_s=$(awk -v ns="$(($(now_ns) - t0))" 'BEGIN {printf "%.2f", ns / 1e9}')
"$vmstate" ps "$work/last.mig" --no-cache > "$work/ps-stream.txt"
t0=$(now_ns)
"$vmstate" ps "$store@-1" > "$work/ps-store.txt"
ps_store_s=$(awk -v ns="$(($(now_ns) - t0))" 'BEGIN {printf "%.2f", ns / 1e9}')
cmp -s "$work/ps-stream.txt" "$work/ps-store.txt" || die "ps on the last capture differs from ps on its stream"
"$vmstate" history list "$store" --json > "$work/list.json"

{
  echo "# History store: $N captures of the idle fixture guest ($(date +%F))"
  echo
  echo "\`benchmarks/history-bench.sh\` (N=$N, SLEEP=$SLEEP s, MEM=$MEM MiB, $(nproc) cores, load $load_start -> $load_end)."
  echo "vmstate: \`$("$vmstate" --version 2> /dev/null || echo "$vmstate")\`; zstd: \`$(zstd --version)\`."
  echo
  echo "| kept as | bytes | MiB | x one stream |"
  echo "|---|---:|---:|---:|"
  echo "| one migration stream (the first) | $first_stream | $(mib "$first_stream") | 1.00 |"
  echo "| $N migration streams | $raw_total | $(mib "$raw_total") | $(ratio "$raw_total" "$first_stream") |"
  echo "| $N zstd -3 streams | $zst_total | $(mib "$zst_total") | $(ratio "$zst_total" "$first_stream") |"
  echo "| qcow2 with $qcow2_snaps internal snapshots (savevm; file size, blocks used $(mib "$qcow2_used") MiB) | $qcow2_bytes | $(mib "$qcow2_bytes") | $(ratio "$qcow2_bytes" "$first_stream") |"
  echo "| history store ($N captures) | $store_bytes | $(mib "$store_bytes") | $(ratio "$store_bytes" "$first_stream") |"
  echo
  echo "| step | total s | MiB/s of stream |"
  echo "|---|---:|---:|"
  echo "| \`vmstate history import\` (one process per capture) | $(awk -v ns="$import_ns" 'BEGIN {printf "%.1f", ns / 1e9}') | $(rate "$raw_total" "$import_ns") |"
  echo "| \`zstd -3\` of the same files | $(awk -v ns="$zstd_ns" 'BEGIN {printf "%.1f", ns / 1e9}') | $(rate "$raw_total" "$zstd_ns") |"
  echo
  echo "\`history verify\` of the whole store: $verify_s s ($(head -1 "$work/verify.out")). \`ps\` on \`STORE@-1\`: $ps_store_s s, the same output as \`ps\` on its stream."
  echo
  echo "Per capture (from \`history list --json\`): new pages, changed pages, bytes added:"
  echo
  echo '```'
  python3 - "$work/list.json" << 'PY'
import json, sys
caps = json.load(open(sys.argv[1]))["captures"]
for c in caps:
    print(f'{c["number"]:4} new {c["newPages"]:7} changed {c["changedPages"]:7} added {c["bytesAdded"]:10}')
PY
  echo '```'
} > "$OUT"
log "report: $OUT"
cat "$OUT"
