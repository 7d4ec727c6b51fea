#!/usr/bin/env bash
# Benchmark: `vmstate serve` on the fixture's Linux guest (256 MiB, saved once as a migration stream). There is no
# peer web UI to compare with; the reference is the CLI: `vmstate ps SNAPSHOT` (a fresh process that opens the
# snapshot, finds the kernel and walks the tasks) against the server's process-table page and a 64 KiB hexdump
# page (snapshot already open: time to first byte and whole response, curl, median of 20). Goal: < 200 ms each.
# Then the server's memory with 10 sources open (the same snapshot given 10 times, each source opened on its own,
# every source's Linux page and a 64 KiB hexdump loaded): RSS and peak RSS from /proc.
# Browser-side numbers (Navigation Timing in chromium) come from the WebServeTests browser test
# (artifacts/web/timings.txt).
#
# Usage: benchmarks/web-bench.sh
# Environment:
#   VMSTATE_BIN      the vmstate executable to measure (default: eng/publish.sh builds the Native AOT executable)
#   VMSTATE_CACHE    cache root (default ~/.cache/vmstate); the stream is kept in bench/web-256MiB.mig
#   RUNS=20          requests per page
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=${RUNS:-20}
cache=${VMSTATE_CACHE:-$HOME/.cache/vmstate}/bench
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-web.XXXXXX")
server=
cleanup() {
  [[ -n "$server" ]] && kill -INT "$server" 2> /dev/null && wait "$server" 2> /dev/null || true
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "web-bench: $*" >&2; }
die() { echo "web-bench: ERROR: $*" >&2; exit 1; }
command -v curl > /dev/null || die "curl is missing"

if [[ -n "${VMSTATE_BIN:-}" ]]; then
  vmstate=$VMSTATE_BIN
else
  log "publishing vmstate (Native AOT)"
  vmstate=$(bash "$root/eng/publish.sh" "$work/bin" 2> "$work/publish.log") || { cat "$work/publish.log" >&2; die "eng/publish.sh failed"; }
fi

mkdir -p "$cache"
stream="$cache/web-256MiB.mig"
if [[ ! -f "$stream" ]]; then
  log "booting the fixture guest (256 MiB) and saving it to $stream"
  MEM=256 bash "$root/eng/run-guest.sh" "$work/guest" > "$work/guest.log" 2>&1 || { cat "$work/guest.log" >&2; die "the guest did not boot"; }
  "$vmstate" snapshot --qmp "$work/guest/qmp.sock" -o "$stream.tmp" >&2
  mv "$stream.tmp" "$stream"
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null
fi
cat "$stream" > /dev/null

# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms() { awk '{printf "%.1f\n", $1 * 1000}'; }

# The reference: `vmstate ps` as a user runs it (the index cache warm, as the server's source is after its first page).
"$vmstate" ps "$stream" > /dev/null
for _ in $(seq "$RUNS"); do
  s=$(date +%s.%N); "$vmstate" ps "$stream" > /dev/null; e=$(date +%s.%N)
  echo "$e - $s" | bc
done | median | ms > "$work/ps"
ps_ms=$(cat "$work/ps")

sources=()
for _ in $(seq 10); do sources+=("$stream"); done
"$vmstate" serve "${sources[@]}" --port 0 > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 600); do
  grep -q "listening on" "$work/serve.out" 2> /dev/null && break
  sleep 0.1
done
url=$(sed -n 's/.*listening on \(http:[^ ]*\)$/\1/p' "$work/serve.out")
[[ -n "$url" ]] || { cat "$work/serve.err" >&2; die "serve did not start"; }
base=${url%/}
rss_open=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$server/status")

pid=$(curl -sf "$base/api/s/0/ps" | python3 -c 'import json,sys; print(next(p["pid"] for p in json.load(sys.stdin)["processes"] if p["name"] == "vmsmarker"))')
heap=$(curl -sf "$base/api/s/0/proc/$pid/maps" | python3 -c 'import json,sys; print(next(v["start"] for v in json.load(sys.stdin) if v["name"] == "[heap]"))')
pages=("process table|/s/0/linux" "64 KiB hexdump|/s/0/mem?space=va&pid=$pid&addr=$heap&len=65536" "ps JSON|/api/s/0/ps")
rows=()
for entry in "${pages[@]}"; do
  name=${entry%%|*}
  path=${entry#*|}
  curl -sf -o /dev/null "$base$path" # the first load locates the kernel and reads the lists once per source
  for _ in $(seq "$RUNS"); do curl -sf -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download}\n' "$base$path"; done > "$work/t"
  ttfb=$(cut -d' ' -f1 "$work/t" | median | ms)
  total=$(cut -d' ' -f2 "$work/t" | median | ms)
  bytes=$(head -1 "$work/t" | cut -d' ' -f3)
  rows+=("$name|$ttfb|$total|$bytes")
done

for i in $(seq 0 9); do
  curl -sf -o /dev/null "$base/s/$i/linux"
  curl -sf -o /dev/null "$base/s/$i/mem?space=va&pid=$pid&addr=$heap&len=65536"
done
rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$server/status")
hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$server/status")

echo "vmstate serve on $(basename "$stream") ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)); median of $RUNS"
echo
echo "| request | first byte (ms) | whole response (ms) | bytes | vs vmstate ps ($ps_ms ms) |"
echo "|---|---:|---:|---:|---:|"
for r in "${rows[@]}"; do
  IFS='|' read -r name ttfb total bytes <<< "$r"
  echo "| $name | $ttfb | $total | $bytes | $(awk -v a="$ps_ms" -v b="$total" 'BEGIN {printf "%.1fx faster", a / b}') |"
done
echo
echo "server memory with 10 sources: RSS $rss_open MiB after opening them, $rss MiB after every source's Linux page and a 64 KiB hexdump (peak $hwm MiB)"
