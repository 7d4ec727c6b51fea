#!/usr/bin/env bash
# Benchmark: history find over many captures (issue 13: `find` for a process over 1,000 captures <= 100 ms; a
# byte-pattern search over 1,000 captures at least 10x faster than the same search on each capture's stream), and
# the recorder's cost per capture (guest pause, wall time, peak memory). The fixture guest is recorded N times back to
# back (`vmstate record --every 0 --count N`, under /usr/bin/time for the peak RSS); then
#   - `history find --process vmsmarker` (index only) and `--log` (index only),
#   - `history find --bytes` of the marker's string (each unique page searched once, then every capture's page map),
#   - the peer: `vmstate search --hex` of the same pattern on one exported capture's stream, times N (what searching
#     each capture's stream costs; the streams of an idle guest are alike, so one stands for all).
#
# Usage: benchmarks/history-find-bench.sh
# Environment:
#   N=1000           captures
#   MEM=128          guest RAM in MiB
#   VMSTATE_BIN      the vmstate command (default: dotnet on the Release build in src/VmState.Cli/bin)
#   OUT              report (default benchmarks/results/history-find-DATE.md)
#   RSS_MEMS="512 4096"  also record RSS_N captures of a guest of each of these sizes (MiB) into a scratch store and
#                    report the recorder's peak RSS per guest size (issue 13: <= 256 MiB whatever the guest size)
#   RSS_N=30         captures per guest size for RSS_MEMS
#   REPEAT=5         runs of each find (the medians are reported: the machine may be shared)
#   STORE=DIR        keep the recorded store in DIR (with record.jsonl and rss beside it) instead of a temporary
#                    directory; when DIR already holds a store recorded by this script, the guest is not booted and
#                    the recording is not repeated: the find part runs again on it (e.g. after changing the reader)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N=${N:-1000}
MEM=${MEM:-128}
OUT=${OUT:-$root/benchmarks/results/history-find-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-hfind.XXXXXX")
cleanup() {
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "history-find-bench: $*" >&2; }
die() { echo "history-find-bench: ERROR: $*" >&2; exit 1; }
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
# shellcheck source=benchmarks/common.sh
source "$root/benchmarks/common.sh"
vmstate_release_command

keep=${STORE:-$work/kept}
mkdir -p "$keep"
store=$keep/store
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -f "$keep/record.done" ]]; then
  log "reusing the store in $keep (recorded $(cat "$keep/record.done"))"
  N=$(wc -l < "$keep/record.jsonl")
else
  log "booting the fixture guest with $MEM MiB"
  MEM=$MEM TIMEOUT=300 bash "$root/eng/run-guest.sh" "$work/guest" > "$work/guest.log" 2>&1 || { cat "$work/guest.log" >&2; die "the guest did not boot"; }
  marker=$(grep -o 'value=VMSTATE-MARKER-[0-9a-f]*' "$work/guest/serial.log" | head -1 | cut -d= -f2)
  [[ -n "$marker" ]] || die "no marker line on the console"
  echo "$marker" > "$keep/marker"
  rm -rf "$store"
  log "recording $N captures"
  t0=$(now_ms)
  /usr/bin/time -f '%M' -o "$keep/rss" "${vmstate[@]}" record --qmp "$work/guest/qmp.sock" --store "$store" --every 0 --count "$N" --json > "$keep/record.jsonl" 2> "$keep/record.err" || { cat "$keep/record.err" >&2; die "record failed"; }
  echo $(($(now_ms) - t0)) > "$keep/record.ms"
  echo "$(date -u +%FT%TZ), load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, by ${vmstate[*]}" > "$keep/record.done"
fi
marker=$(cat "$keep/marker")
hex=$(printf '%s' "$marker" | xxd -p -c 256)
record_ms=$(cat "$keep/record.ms")
rss_kib=$(tail -1 "$keep/rss")
read -r pause_mean pause_max wall_mean < <(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
p = [r.get("guestPauseMs", 0) for r in rows]
w = [r["wallSeconds"] for r in rows]
print(f"{sum(p)/len(p):.1f} {max(p):.1f} {sum(w)/len(w):.3f}")' "$keep/record.jsonl")
store_bytes=$(du -sb "$store" | cut -f1)

timed() { # timed NAME ARGS...: median over REPEAT runs of the wall ms of the command and of its "milliseconds" field; its hit count
  local name=$1; shift
  local walls=() i t
  for ((i = 0; i < ${REPEAT:-5}; i++)); do
    t=$(now_ms)
    "${vmstate[@]}" "$@" --json > "$work/$name.$i.json" || [[ $? == 1 ]]
    walls+=($(($(now_ms) - t)))
  done
  python3 -c '
import json, statistics, sys
runs = [json.load(open(f)) for f in sys.argv[2:]]
walls = [int(w) for w in sys.argv[1].split()]
print(statistics.median(walls), statistics.median(r["milliseconds"] for r in runs), len(runs[0]["hits"]), runs[0]["captures"])' "${walls[*]}" "$work/$name".*.json
}
log "history find"
read -r proc_wall proc_ms proc_hits proc_n < <(timed process history find "$store" --process vmsmarker)
read -r log_wall log_ms log_hits _ < <(timed log history find "$store" --log '^VMSTATE-KTICK 5$')
read -r bytes_wall bytes_ms bytes_hits _ < <(timed bytes history find "$store" --bytes "$hex")

log "the peer: search on one capture's stream"
"${vmstate[@]}" history export "$store@-1" -o "$work/one.mig" > /dev/null
stream_bytes=$(stat -c %s "$work/one.mig")
cat "$work/one.mig" > /dev/null
t=$(now_ms)
"${vmstate[@]}" search --hex "$hex" "$work/one.mig" > /dev/null
one_ms=$(($(now_ms) - t))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

rss_rows=()
for mem in ${RSS_MEMS:-}; do
  log "peak RSS of the recorder: $RSS_N captures of a $mem MiB guest"
  MEM=$mem TIMEOUT=600 bash "$root/eng/run-guest.sh" "$work/guest-$mem" > "$work/guest-$mem.log" 2>&1 || { cat "$work/guest-$mem.log" >&2; die "the $mem MiB guest did not boot"; }
  t=$(now_ms)
  /usr/bin/time -f '%M' -o "$work/rss-$mem" "${vmstate[@]}" record --qmp "$work/guest-$mem/qmp.sock" --store "$work/store-$mem" --every 0 --count "${RSS_N:-30}" --json > "$work/record-$mem.jsonl" 2> "$work/record-$mem.err" || { cat "$work/record-$mem.err" >&2; die "record of the $mem MiB guest failed"; }
  ms=$(($(now_ms) - t))
  read -r p_mean w_mean bytes < <(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
p = sum(r.get("guestPauseMs", 0) for r in rows) / len(rows)
w = sum(r["wallSeconds"] for r in rows) / len(rows)
print("%.1f %.3f %d" % (p, w, rows[-1]["streamBytes"]))' "$work/record-$mem.jsonl")
  bash "$root/eng/run-guest.sh" --stop "$work/guest-$mem" > /dev/null 2>&1 || true
  rss_rows+=("| recorder peak RSS, $mem MiB guest, ${RSS_N:-30} captures | $(($(tail -1 "$work/rss-$mem") / 1024)) MiB (stream $((bytes / 1048576)) MiB; pause mean $p_mean ms, wall per capture $w_mean s; $((ms / 1000)) s in all) |")
  rm -rf "$work/store-$mem"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

ratio=$(python3 -c "print(f'{$one_ms * $N / max($bytes_wall, 1):.0f}')")
mkdir -p "$(dirname "$OUT")"
{
  echo "# history find over $N captures ($(date -u +%FT%TZ))"
  echo
  echo "Fixture guest, $MEM MiB, idle; \`${vmstate[*]}\`; $(nproc) cores; load average $load_start at the start, $load_end at the end."
  echo
  echo "Recording: $(cat "$keep/record.done")."
  echo
  echo "| what | result |"
  echo "|---|---|"
  echo "| record $N captures (--every 0) | $((record_ms / 1000)) s; guest pause mean $pause_mean ms, max $pause_max ms; wall per capture $wall_mean s |"
  echo "| recorder peak RSS, $MEM MiB guest, $N captures | $((rss_kib / 1024)) MiB |"
  for row in "${rss_rows[@]}"; do echo "$row"; done
  echo "| store | $((store_bytes / 1048576)) MiB for $N captures; one stream is $((stream_bytes / 1048576)) MiB |"
  echo "| find --process vmsmarker (median of ${REPEAT:-5}) | ${proc_ms} ms inside the command (${proc_wall} ms with process start); holds in $proc_hits of $proc_n |"
  echo "| find --log | ${log_ms} ms (${log_wall} ms with process start); holds in $log_hits |"
  echo "| find --bytes (marker string) | ${bytes_ms} ms (${bytes_wall} ms with process start); holds in $bytes_hits |"
  echo "| search on one stream, x $N | ${one_ms} ms x $N = $((one_ms * N)) ms |"
  echo "| **find --bytes / searching every stream** | **${ratio}x faster** (goal: 10x) |"
} > "$OUT"
cat "$OUT"
