#!/usr/bin/env bash
# Fuzzing the parsers with SharpFuzz + AFL++ (coverage-guided), and replaying the corpora.
#
#   eng/fuzz.sh TARGET [SECONDS]   instrument VmState.Core.dll and run afl-fuzz on one target
#                                  (stream | qcow2 | elf | detect | btf | kallsyms | vmdesc | gdb | extract |
#                                  indexcache | kernelnote | gdbstub | history | indexlog | traceprint | osevents | replay | rrindex | rrcheckpoints | rrfind | fork | trigger | arm64walk | arm64btf | webparams | gdbarm64 | hmparm64 | regvalue) for SECONDS
#                                  (default 300), then summarise; fuzz/dict/TARGET.dict is passed as -x if present
#   eng/fuzz.sh replay             run every target on its corpus and on saved crashes, without AFL (fast; CI)
#
# Findings go to artifacts/fuzz/TARGET/; a crashing input worth keeping goes to fuzz/crashes/TARGET/ so the
# replay (and CI) keeps checking it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
targets=(stream qcow2 elf detect btf kallsyms vmdesc gdb extract indexcache kernelnote mount history indexlog gdbstub traceprint osevents replay rrindex rrcheckpoints rrfind fork trigger arm64walk arm64btf webparams gdbarm64 hmparm64 regvalue)

publish() {
  local out=$1
  dotnet publish fuzz/VmState.Fuzz -c Release -o "$out" -nologo -v quiet > /dev/null
}

if [[ "${1:-}" == replay ]]; then
  out="$root/artifacts/fuzz/replay-bin"
  publish "$out"
  status=0
  for t in "${targets[@]}"; do
    inputs=("fuzz/corpus/$t")
    [[ -d "fuzz/crashes/$t" ]] && inputs+=("fuzz/crashes/$t")
    if ! dotnet "$out/VmState.Fuzz.dll" "$t" --replay "${inputs[@]}"; then
      echo "fuzz replay: target $t failed" >&2
      status=1
    fi
  done
  exit $status
fi

target=${1:?usage: eng/fuzz.sh TARGET [SECONDS] | replay}
seconds=${2:-300}
[[ " ${targets[*]} " == *" $target "* ]] || { echo "unknown target $target (known: ${targets[*]})" >&2; exit 2; }
if ! command -v afl-fuzz > /dev/null; then
  apt-get install -y -q afl++ > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q afl++ > /dev/null; }
fi
(cd fuzz && dotnet tool restore > /dev/null)
bin="$root/artifacts/fuzz/bin-$target"
rm -rf "$bin"
publish "$bin"
# Instrument the library (not the harness): SharpFuzz rewrites VmState.Core.dll with AFL coverage hooks.
(cd fuzz && dotnet tool run sharpfuzz "$bin/VmState.Core.dll" > /dev/null)
# webparams and rrfind drive parsers in the CLI assembly: instrument it too.
if [[ "$target" == webparams || "$target" == rrfind ]]; then
  (cd fuzz && dotnet tool run sharpfuzz "$bin/vmstate.dll" > /dev/null)
fi
findings="$root/artifacts/fuzz/$target"
rm -rf "$findings"
mkdir -p "$findings"
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
# A dictionary (afl-fuzz -x) for text formats: AFL's byte flips rarely turn one JSON number into another.
dict=()
[[ -f "fuzz/dict/$target.dict" ]] && dict=(-x "fuzz/dict/$target.dict")
afl-fuzz -i "fuzz/corpus/$target" -o "$findings" "${dict[@]}" -t 10000 -m none -V "$seconds" -- dotnet "$bin/VmState.Fuzz.dll" "$target" > "$findings/afl.log" 2>&1 || true
stats="$findings/default/fuzzer_stats"
if [[ ! -f "$stats" ]]; then
  echo "afl-fuzz did not start; its log:" >&2
  tail -n 30 "$findings/afl.log" >&2
  exit 1
fi
awk -F' *: ' '/^(run_time|execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg)/ {printf "%s: %s\n", $1, $2}' "$stats"
crashes=$(find "$findings/default/crashes" -type f ! -name README.txt 2> /dev/null | wc -l)
hangs=$(find "$findings/default/hangs" -type f 2> /dev/null | wc -l)
echo "crash files: $crashes, hang files: $hangs (in $findings/default)"
