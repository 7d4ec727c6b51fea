#!/usr/bin/env bash
# Benchmark: the recorder's memory against the guest size (issue 13: "memory of the recorder bounded (<= 256 MiB)
# whatever the guest size"). For each guest size, the fixture guest is booted with that much RAM (above 8 GiB QEMU
# allocates only what the guest touches, so a 16 GiB guest fits a smaller host) and recorded N times back to back
# (`vmstate record --every 0 --count N`); /proc/PID/status of the recorder is sampled every 50 ms, and the peaks of
# VmRSS, RssAnon (the process's own memory: heap, native tables, stacks), RssFile (mapped files: the executable,
# libraries, the store's files it maps) and RssShmem are reported, with VmHWM (the kernel's own peak of VmRSS).
#
# Usage: benchmarks/record-memory-bench.sh
# Environment:
#   MEMS="512 4096 16384"  guest sizes in MiB
#   N=30                   captures per guest size
#   VMSTATE_BIN            the vmstate command (default: dotnet on the Release build in src/VmState.Cli/bin)
#   OUT                    report (default benchmarks/results/record-memory-DATE.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEMS=${MEMS:-512 4096 16384}
N=${N:-30}
OUT=${OUT:-$root/benchmarks/results/record-memory-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-recmem.XXXXXX")
cleanup() {
  for g in "$work"/guest-*; do [[ -d "$g" ]] && bash "$root/eng/run-guest.sh" --stop "$g" > /dev/null 2>&1; done
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "record-memory-bench: $*" >&2; }
die() { echo "record-memory-bench: ERROR: $*" >&2; exit 1; }
# shellcheck source=benchmarks/common.sh
source "$root/benchmarks/common.sh"
vmstate_release_command

rows=()
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for mem in $MEMS; do
  log "booting the fixture guest with $mem MiB"
  MEM=$mem TIMEOUT=900 bash "$root/eng/run-guest.sh" "$work/guest-$mem" > "$work/guest-$mem.log" 2>&1 || { cat "$work/guest-$mem.log" >&2; die "the $mem MiB guest did not boot"; }
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  log "recording $N captures of the $mem MiB guest"
  t0=$(now_ms)
  "${vmstate[@]}" record --qmp "$work/guest-$mem/qmp.sock" --store "$work/store-$mem" --every 0 --count "$N" --json > "$work/record-$mem.jsonl" 2> "$work/record-$mem.err" &
  pid=$!
  # Peaks of the recorder's memory, sampled (kB).
  peak_rss=0 peak_anon=0 peak_file=0 peak_shmem=0 hwm=0
  while kill -0 "$pid" 2> /dev/null; do
    if status=$(cat "/proc/$pid/status" 2> /dev/null); then
      read -r rss anon file shmem h < <(awk '/^VmRSS:/ {r=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} /^RssShmem:/ {s=$2} /^VmHWM:/ {h=$2} END {print r+0, a+0, f+0, s+0, h+0}' <<< "$status")
      ((rss > peak_rss)) && peak_rss=$rss
      ((anon > peak_anon)) && peak_anon=$anon
      ((file > peak_file)) && peak_file=$file
      ((shmem > peak_shmem)) && peak_shmem=$shmem
      ((h > hwm)) && hwm=$h
    fi
    sleep 0.05
  done
  wait "$pid" || { cat "$work/record-$mem.err" >&2; die "record of the $mem MiB guest failed"; }
  ms=$(($(now_ms) - t0))
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  read -r p_mean w_mean w_med bytes changed < <(python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
p = sum(r.get("guestPauseMs", 0) for r in rows) / len(rows)
w = [r["wallSeconds"] for r in rows]
print("%.1f %.3f %.3f %d %d" % (p, sum(w) / len(w), statistics.median(w), rows[-1]["streamBytes"], rows[-1]["changedPages"]))' "$work/record-$mem.jsonl")
  store_kib=$(du -sk "$work/store-$mem" | cut -f1)
  unique=$(tail -1 "$work/record-$mem.err" | grep -o '[0-9]* unique pages' || true)
  bash "$root/eng/run-guest.sh" --stop "$work/guest-$mem" > /dev/null 2>&1 || true
  mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
  rows+=("| $mem MiB | $N | $(mib "$peak_rss") | $(mib "$hwm") | **$(mib "$peak_anon")** | $(mib "$peak_file") | $(mib "$peak_shmem") | $((bytes / 1048576)) | $p_mean | $w_med | $((store_kib / 1024)) MiB, $unique | $load_before -> $load_after |")
  rm -rf "$work/store-$mem"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$OUT")"
{
  echo "# Recorder memory against guest size ($(date -u +%FT%TZ))"
  echo
  echo "\`benchmarks/record-memory-bench.sh\`; \`${vmstate[*]}\`; $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; load average $load_start at the start, $load_end at the end."
  echo "Peaks of the recorder's /proc/PID/status sampled every 50 ms (MiB); VmHWM is the kernel's peak of VmRSS."
  echo
  echo "| guest | captures | VmRSS peak | VmHWM | RssAnon peak | RssFile peak | RssShmem peak | stream MiB | pause mean ms | wall median s | store | load (guest booted -> recorded) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
  for row in "${rows[@]}"; do echo "$row"; done
} > "$OUT"
log "report: $OUT"
cat "$OUT"
