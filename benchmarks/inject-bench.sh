#!/usr/bin/env bash
# Benchmark: writing a new snapshot with a handful of edits (`vmstate edit`: memory pokes, a register, a device
# field, a MAC) into a 2 GiB guest's stream, against copying the same file with cp, in the same run, warm page
# cache. Goal: at most 1.5x the time of the copy.
#
# Usage: benchmarks/inject-bench.sh
# Environment: VMSTATE_CACHE, VMSTATE_BIN (as in extract-bench.sh), BENCH_SIZE (MiB, default 2048),
#              BENCH_RUNS (default 5; the median is reported), BENCH_SCRATCH (default ${TMPDIR:-/tmp})
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${VMSTATE_CACHE:-$HOME/.cache/vmstate}"
size=${BENCH_SIZE:-2048}
runs=${BENCH_RUNS:-5}
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [[ -n "${VMSTATE_BIN:-}" ]]; then
  vmstate=$VMSTATE_BIN
else
  log "building vmstate (Release)"
  dotnet build "$root/src/VmState.Cli" -c Release -nologo -v quiet > /dev/null
  vmstate="$root/src/VmState.Cli/bin/Release/net10.0/vmstate"
fi

snap="$cache/bench/vm${size}.mig"
if [[ ! -s "$snap" ]]; then
  log "making the ${size} MiB snapshot"
  mkdir -p "$cache/bench"
  bash "$root/benchmarks/make-snapshot.sh" "$size" "$snap"
fi

scratch=$(mktemp -d "${BENCH_SCRATCH:-${TMPDIR:-/tmp}}/vmstate-inject.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cat "$snap" > /dev/null

edits=(--write-pa 0x1000000=56534d535441544521 --set-u64-pa 0x2000000=0x1122334455667788
       --set-u64-pa 0x40000000=0x99 --set-reg 0:rax=0x1234 --set-reg 1:r15=0x5678
       --set-field serial:state.scr=0x5a)
now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cp_times=()
vm_times=()
for ((i = 0; i <= runs; i++)); do
  rm -f "$scratch/copy.mig" "$scratch/edited.mig"
  sync
  t0=$(now); cp "$snap" "$scratch/copy.mig"; t1=$(now)
  rm -f "$scratch/copy.mig"
  sync
  t2=$(now); "$vmstate" edit "$snap" -o "$scratch/edited.mig" "${edits[@]}" > /dev/null; t3=$(now)
  if ((i > 0)); then   # run 0 is a warm-up
    cp_times+=("$(echo "$t1 - $t0" | bc -l)")
    vm_times+=("$(echo "$t3 - $t2" | bc -l)")
  fi
done

# The edits are really there, and nothing else changed in size.
"$vmstate" read "$scratch/edited.mig" --pa 0x1000000 9 -f raw | grep -q 'VSMSTATE!' || { echo "inject-bench: the memory edit is missing" >&2; exit 1; }
[[ $(stat -c %s "$snap") == $(stat -c %s "$scratch/edited.mig") ]] || { echo "inject-bench: the size changed" >&2; exit 1; }

cp_med=$(median "${cp_times[@]}")
vm_med=$(median "${vm_times[@]}")
ratio=$(echo "$vm_med / $cp_med" | bc -l)
verdict=$(echo "$ratio <= 1.5" | bc -l | sed 's/1/PASS/;s/0/FAIL/')
printf '| guest | stream bytes | cp s (median of %d) | vmstate edit s | ratio edit/cp | <=1.5x |\n|---|---|---|---|---|---|\n' "$runs"
printf '| %s MiB | %s | %.3f | %.3f | %.2fx | %s |\n' "$size" "$(stat -c %s "$snap")" "$cp_med" "$vm_med" "$ratio" "$verdict"
echo "cp runs: ${cp_times[*]}" >&2
echo "vmstate runs: ${vm_times[*]}" >&2
