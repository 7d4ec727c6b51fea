#!/usr/bin/env bash
# Benchmark: reading a running guest's memory through each path, same guest, same run: vmstate's shared-memory
# and process-memory paths against QMP/HMP xp, QMP pmemsave and QEMU's gdbstub (8-byte random reads and bulk).
# Goals (issue 19): shared memory <= 100 ns per 8-byte read through the public API and >= 10 GB/s bulk;
# process memory <= 1.5 us per read. Sections:
#   layers   random 8-byte reads at each layer (raw path, LiveMemory, IPhysicalMemory, the Vm front door)
#   capture  live capture into this process beside a background snapshot to a file (issue 13: wall <= 1.2x, pause <= 20 ms)
#   paths    every read path side by side
#   bulk     bulk reads beside memcpy; hash and search of all RAM beside xxhsum and grep -c over a dump of it
# Runs: (1) 512 MiB guest with RAM on /dev/shm: every section; (2) 512 MiB guest without shared RAM: layers (the
# front door over process memory); (3) a BIG_MEM (default 4096) MiB guest with RAM on /dev/shm: bulk.
# Usage: benchmarks/live-bench.sh [RUNS]   (RUNS: comma-separated subset of 1,2,3; default all)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-1,2,3}"
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-livebench.XXXXXX")
ram="/dev/shm/vmstate-livebench-$$"
cleanup() {
  for g in "$work"/guest*; do bash "$root/eng/run-guest.sh" --stop "$g" > /dev/null 2>&1 || true; done
  rm -rf "$work" "$ram"
}
trap cleanup EXIT
dotnet build "$root/benchmarks/VmState.LiveBench" -c Release -nologo -v quiet > /dev/null
# Run a copy, so a build elsewhere in the tree cannot replace the assemblies under the running benchmark.
cp -r "$root/benchmarks/VmState.LiveBench/bin/Release/net10.0" "$work/bench"
bench() { dotnet "$work/bench/VmState.LiveBench.dll" "$@"; }
guest() {   # guest NAME [ENV...] -> starts a guest in $work/NAME
  local name=$1; shift
  env "$@" bash "$root/eng/run-guest.sh" "$work/$name" > /dev/null
}
stop() { bash "$root/eng/run-guest.sh" --stop "$work/$1" > /dev/null 2>&1 || true; rm -f "$ram"; }
port=$((20000 + RANDOM % 10000))
if [[ ",$runs," == *",1,"* ]]; then
  echo "## Run 1: 512 MiB guest, RAM on /dev/shm (share=on)"
  guest guest1 SHARED_MEM="$ram" GDB_PORT=$port
  bench "$work/guest1/qmp.sock" "$port" layers,capture,paths,bulk
  stop guest1
fi
if [[ ",$runs," == *",2,"* ]]; then
  echo; echo "## Run 2: 512 MiB guest, RAM not shared (process memory through the front door)"
  guest guest2
  bench "$work/guest2/qmp.sock" 0 layers
  stop guest2
fi
if [[ ",$runs," == *",3,"* ]]; then
  echo; echo "## Run 3: ${BIG_MEM:-4096} MiB guest, RAM on /dev/shm (share=on)"
  guest guest3 SHARED_MEM="$ram" MEM="${BIG_MEM:-4096}" TIMEOUT=300
  bench "$work/guest3/qmp.sock" 0 bulk
  stop guest3
fi
