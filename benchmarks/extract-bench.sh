#!/usr/bin/env bash
# Benchmark: `vmstate extract` against QEMU's own scripts/analyze-migration.py -x on the same migration
# streams, in the same run, warm page cache. Checks three goals:
#   - vmstate at least 20x faster than analyze-migration.py (wall time)
#   - vmstate at least 1.5 GB/s of guest RAM (guest RAM = SIZE MiB, GB = 10^9 bytes)
#   - vmstate peak RSS at most 256 MiB
#   - vmstate at most 1.5x the time of cp of the same stream (same run); `vmstate --version` (the executable's
#     start-up alone) and `true` (the timing itself) are timed the same way, as the floor under that ratio
# and that both tools pulled the same guest RAM out of the stream (compare-ram.py).
#
# Usage: benchmarks/extract-bench.sh
# Environment:
#   VMSTATE_CACHE   cache root (default ~/.cache/vmstate); snapshots in bench/, analyze-migration.py in qemu-src/
#   BENCH_SIZES     guest sizes in MiB (default "512 2048"); SIZE:DATA loads DATA MiB of random data instead of
#                   SIZE - 32 (opt-in cases: "2048:0" mostly zero, "65536:0" a 64 GiB guest with little touched
#                   memory, "16384:3040" a 16 GiB guest with ~3 GiB written)
#   ANALYZE_MAX_MIB analyze-migration.py only runs on guests up to this size (default 4096: it writes every page
#                   of pc.ram, which is the whole guest)
#   BENCH_RUNS      vmstate runs per size, the median is reported (default 3)
#   ANALYZE_RUNS    analyze-migration.py runs per size (default: 3 when one run takes under 30 s, else 1)
#   BENCH_WARMUP    1 (default): one untimed warm-up run of each tool before its timed runs; 0: none
#   BENCH_SCRATCH   where outputs are written (default ${TMPDIR:-/tmp}); removed after each size
#   VMSTATE_BIN     an already built vmstate to measure (default: eng/publish.sh builds the Native AOT executable)
#   BENCH_NO_RESULTS=1  do not write benchmarks/results/extract-DATE.md
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="$root/benchmarks"
cache="${VMSTATE_CACHE:-$HOME/.cache/vmstate}"
read -r -a sizes <<< "${BENCH_SIZES:-512 2048}"
runs=${BENCH_RUNS:-3}
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [[ ! -x /usr/bin/time ]]; then
  log "installing GNU time"
  apt-get install -y -q time > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q time > /dev/null; }
fi

bin_dir=
if [[ -n "${VMSTATE_BIN:-}" ]]; then
  vmstate=$VMSTATE_BIN
  log "using $vmstate (VMSTATE_BIN; not building)"
else
  # What a user runs every day: eng/publish.sh's Native AOT executable (no JIT, no runtime start-up).
  log "publishing vmstate (eng/publish.sh: Native AOT)"
  bin_dir=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-bench-bin.XXXXXX")
  trap 'rm -rf "$bin_dir"' EXIT
  if ! vmstate=$(bash "$root/eng/publish.sh" "$bin_dir" 2> "$bin_dir.log"); then
    cat "$bin_dir.log" >&2
    echo "extract-bench: eng/publish.sh failed" >&2
    exit 1
  fi
  rm -f "$bin_dir.log"
fi
[[ -x "$vmstate" ]] || { echo "extract-bench: $vmstate was not built" >&2; exit 1; }

log "QEMU's analyze-migration.py"
analyze=$(bash "$bench/fetch-analyze-migration.sh")
echo "$analyze ($(cat "$(dirname "$analyze")/SOURCE" 2> /dev/null || echo '?'))" >&2

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
scratch=$(mktemp -d "${BENCH_SCRATCH:-${TMPDIR:-/tmp}}/vmstate-bench.XXXXXX")
trap 'rm -rf "$scratch" ${bin_dir:+"$bin_dir"}' EXIT

now() { date +%s.%N; }
first=1
[[ "${BENCH_WARMUP:-1}" == 1 ]] && first=0
run_name() { (($1 == 0)) && echo "warm-up run (not counted)" || echo "run $1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Peak RSS in KiB from a /usr/bin/time -v report.
rss_kib() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
# Runs "$@" under /usr/bin/time -v (report in $tfile, the command's stdout in $tfile.out) and prints the wall
# seconds (ns clock around it).
timed() {
  local tfile=$1
  shift
  local t0 t1 rc=0
  t0=$(now)
  /usr/bin/time -v -o "$tfile" "$@" > "$tfile.out" || rc=$?
  t1=$(now)
  ((rc == 0)) || { echo "extract-bench: '$*' failed (exit $rc); see $tfile" >&2; cat "$tfile" >&2; return $rc; }
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}'
}

rows=()   # one line per size, fields separated by |
checks=() # RAM comparison output per size
all_pass=1
for spec in "${sizes[@]}"; do
  size=${spec%%:*}
  data=$((size - 32))
  snap="$cache/bench/pc-${size}MiB.mig"
  label="${size} MiB"
  if [[ "$spec" == *:* ]]; then
    data=${spec#*:}
    snap="$cache/bench/pc-${size}MiB-${data}data.mig"
    label="${size} MiB (${data} MiB data)"
  fi
  if [[ ! -s "$snap" ]]; then
    log "making the $label snapshot ($snap)"
    bash "$bench/make-snapshot.sh" "$size" "$snap" "$data"
  fi
  stream_bytes=$(stat -c %s "$snap")
  ram_bytes=$((size * 1048576))
  log "${size} MiB guest: $snap ($stream_bytes bytes); warming the page cache"
  cat "$snap" > /dev/null

  # Each tool: one untimed warm-up run (BENCH_WARMUP=1), then its timed runs, each into a fresh directory;
  # the previous output is removed and the disk synced first, so no run pays for another's writeback, and each
  # run writes into page-cache pages that the previous run's output just gave back. Outputs are not fsynced.
  # (The warm-up matters on VMs with free page reporting, such as this one: free guest memory is handed back to
  # the host a couple of seconds after it is freed, and the first writer that touches it again pays a host
  # page fault per page: up to 2.5 s per GB of output, for any tool, cp included.)
  vm_secs=()
  vm_rss=()
  for ((i = first; i <= runs; i++)); do
    rm -rf "$scratch/vmstate"
    sync
    s=$(timed "$scratch/vmstate.time" "$vmstate" extract "$snap" -o "$scratch/vmstate" --json)
    inner=$(grep -oE '"seconds": *[0-9.]+' "$scratch/vmstate.time.out" | grep -oE '[0-9.]+$' || echo '?')
    if ((i > 0)); then
      vm_secs+=("$s")
      vm_rss+=("$(rss_kib "$scratch/vmstate.time")")
    fi
    echo "  vmstate $(run_name $i): ${s} s (its own timer: $inner s), peak RSS $(( $(rss_kib "$scratch/vmstate.time") / 1024 )) MiB" >&2
  done
  vm_med=$(median "${vm_secs[@]}")
  vm_rss_max=$(printf '%s\n' "${vm_rss[@]}" | sort -n | tail -1)

  # Reference floor: plain cp of the stream into the same scratch file system, timed the same way. It is
  # about the cost of writing that many bytes into the page cache here, which vmstate cannot go below.
  cp_secs=()
  for ((i = first; i <= runs; i++)); do
    rm -f "$scratch/stream.copy"
    sync
    s=$(timed "$scratch/cp.time" cp "$snap" "$scratch/stream.copy")
    ((i == 0)) || cp_secs+=("$s")
  done
  rm -f "$scratch/stream.copy"
  cp_med=$(median "${cp_secs[@]}")
  echo "  cp of the stream (reference): $(IFS=/; echo "${cp_secs[*]}") s" >&2

  # The fixed floor under vmstate's time, timed the same way: `vmstate --version` starts the executable (loader,
  # runtime, the command line) and does nothing else, so no extract can take less; `true` is the timing itself
  # (date, /usr/bin/time, fork and exec), which every number here includes.
  up_secs=()
  true_secs=()
  for ((i = first; i <= runs; i++)); do
    s=$(timed "$scratch/up.time" "$vmstate" --version)
    t=$(timed "$scratch/true.time" true)
    ((i == 0)) || { up_secs+=("$s"); true_secs+=("$t"); }
  done
  up_med=$(median "${up_secs[@]}")
  true_med=$(median "${true_secs[@]}")
  echo "  vmstate --version (start-up alone): $(IFS=/; echo "${up_secs[*]}") s; true (the timing itself): $(IFS=/; echo "${true_secs[*]}") s" >&2

  # analyze-migration.py -x writes pc.ram etc. into the current directory.
  an_secs=()
  an_rss=()
  an_runs=${ANALYZE_RUNS:-0}
  i=$((first - 1))
  while ((size <= ${ANALYZE_MAX_MIB:-4096})); do
    i=$((i + 1))
    rm -rf "$scratch/analyze"
    mkdir -p "$scratch/analyze"
    sync
    s=$(cd "$scratch/analyze" && timed "$scratch/analyze.time" python3 "$analyze" -x -f "$snap")
    if ((i > 0)); then
      an_secs+=("$s")
      an_rss+=("$(rss_kib "$scratch/analyze.time")")
    fi
    echo "  analyze-migration.py $(run_name $i): ${s} s, peak RSS $(( $(rss_kib "$scratch/analyze.time") / 1024 )) MiB" >&2
    if ((an_runs == 0 && i <= 1)); then
      an_runs=$(awk -v s="$s" 'BEGIN {print (s < 30) ? 3 : 1}')
    fi
    ((i < an_runs)) || break
  done
  core_kib=$(du -k "$scratch/vmstate/core.elf" | cut -f1)
  core_bytes=$(stat -c %s "$scratch/vmstate/core.elf")
  if ((${#an_secs[@]} > 0)); then
    an_med=$(median "${an_secs[@]}")
    an_rss_max=$(printf '%s\n' "${an_rss[@]}" | sort -n | tail -1)
    log "$label: checking that both tools extracted the same RAM"
    random_args=()
    ((data > 0 && data <= 2016)) && random_args=("$cache/bench/random-${data}MiB.bin" 0x1000000)
    check=$(python3 "$bench/compare-ram.py" "$scratch/vmstate/core.elf" "$scratch/analyze/pc.ram" \
      "${random_args[@]}" 2>&1) && ram_ok=match || ram_ok=MISMATCH
  else
    an_med=-
    an_rss_max=0
    check="analyze-migration.py not run (guest above ANALYZE_MAX_MIB=${ANALYZE_MAX_MIB:-4096})"
    ram_ok=-
  fi
  echo "$check" >&2
  checks+=("$label guest (core.elf: $core_bytes bytes, $core_kib KiB on disk):"$'\n'"$check")

  read -r gbps ratio vm_rss_mib an_rss_mib cp_ratio up_ratio < <(awk -v b="$ram_bytes" -v v="$vm_med" -v a="$an_med" \
    -v vr="$vm_rss_max" -v ar="$an_rss_max" -v c="$cp_med" -v u="$up_med" \
    'BEGIN {printf "%.2f %s %.0f %.0f %.2f %.2f\n", b / v / 1e9, (a == "-") ? "-" : sprintf("%.1f", a / v), vr / 1024, ar / 1024, v / c, u / c}')
  g_ratio=$(awk -v r="$ratio" 'BEGIN {print (r == "-") ? "-" : (r >= 20) ? "PASS" : "FAIL"}')
  g_speed=$(awk -v g="$gbps" 'BEGIN {print (g >= 1.5) ? "PASS" : "FAIL"}')
  g_rss=$(awk -v m="$vm_rss_max" 'BEGIN {print (m <= 256 * 1024) ? "PASS" : "FAIL"}')
  g_cp=$(awk -v r="$cp_ratio" 'BEGIN {print (r <= 1.5) ? "PASS" : "FAIL"}')
  [[ "$g_ratio$g_speed$g_rss$g_cp" == PASSPASSPASSPASS && $ram_ok == match ]] || all_pass=0
  rows+=("$label|$stream_bytes|$vm_med|$gbps|$vm_rss_mib|$an_med|$an_rss_mib|${ratio}x|$g_ratio|$g_speed|$g_rss|$ram_ok|$(IFS=/; echo "${vm_secs[*]}")|$(IFS=/; echo "${an_secs[*]:-}")|$cp_med|${cp_ratio}x|$g_cp|$core_kib|$up_med|${up_ratio}x|$true_med")

  rm -rf "$scratch/vmstate" "$scratch/analyze"
done

header="guest|stream bytes|vmstate s (median)|GB/s guest RAM|vmstate peak RSS MiB|analyze s|analyze peak RSS MiB|ratio analyze/vmstate|>=20x|>=1.5 GB/s|RSS<=256 MiB|RAM equal|vmstate runs s|analyze runs s|cp of stream s (median)|vmstate/cp|<=1.5x cp|core KiB on disk|vmstate --version s (start-up floor)|--version/cp|true s (timing floor)"

echo
{
  echo "$header"
  printf '%s\n' "${rows[@]}"
} | column -t -s '|'
echo
((all_pass)) && echo "all goals: PASS" || echo "all goals: FAIL (see the table)"

if [[ "${BENCH_NO_RESULTS:-0}" != 1 ]]; then
  mkdir -p "$bench/results"
  md="$bench/results/extract-$(date +%Y-%m-%d).md"
  fs=$(df -T "$scratch" | awk 'NR == 2 {print $2 " (" $1 ")"}')
  {
    echo "# vmstate extract vs analyze-migration.py — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Made by \`benchmarks/extract-bench.sh\`. Warm page cache (each stream is read once before timing);"
    echo "outputs written to $fs without fsync, each run into a fresh directory after \`sync\`;"
    if [[ $first == 0 ]]; then
      echo "one untimed warm-up run of each tool (vmstate, cp, analyze) before its timed runs."
    else
      echo "no warm-up runs."
    fi
    echo "vmstate: $(if [[ -n "$bin_dir" ]]; then echo "the Native AOT executable of eng/publish.sh"; else echo "\`$vmstate\` (VMSTATE_BIN)"; fi);"
    echo "load average at the start: $load_start."
    echo "vmstate: median of $runs runs of \`vmstate extract SNAP -o DIR --json\`; analyze: median of its runs of"
    echo "\`python3 analyze-migration.py -x -f SNAP\`. GB/s = guest RAM (SIZE MiB) / vmstate seconds / 10^9."
    echo
    echo "| ${header//|/ | } |"
    cols=$(tr -cd '|' <<< "$header")
    sep="|---${cols//|/|---}|"
    echo "$sep"
    for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
    echo
    echo "RAM check (compare-ram.py: core.elf PT_LOAD segments against analyze-migration's pc.ram):"
    echo
    echo '```'
    printf '%s\n' "${checks[@]}"
    echo '```'
    echo
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
      "$(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r);" \
      ".NET $(dotnet --version), $(qemu-system-x86_64 --version | head -1), $(python3 --version)," \
      "analyze-migration.py from $(cat "$(dirname "$analyze")/SOURCE" 2> /dev/null || echo '?')."
  } > "$md"
  echo "wrote $md"
fi
