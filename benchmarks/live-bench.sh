#!/usr/bin/env bash
# Benchmark: reading a running guest's memory through each path, same guest, same run: vmstate's shared-memory
# and process-memory paths against QMP/HMP xp, QMP pmemsave and QEMU's gdbstub (8-byte random reads and bulk).
# Goals (issue): shared memory <= 100 ns per 8-byte read through the public API and >= 10 GB/s bulk;
# process memory <= 2 us per read. Then bulk reads beside memcpy, the page hash of all RAM (1 core, all cores)
# beside a plain buffer and xxhsum (Debian package xxhash, if installed), and the pattern search beside grep -c
# over a pmemsave dump of the same RAM.
# Usage: benchmarks/live-bench.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-livebench.XXXXXX")
ram="/dev/shm/vmstate-livebench-$$"
trap 'bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true; rm -rf "$work" "$ram"' EXIT
dotnet build "$root/benchmarks/VmState.LiveBench" -c Release -nologo -v quiet > /dev/null
port=$((20000 + RANDOM % 10000))
SHARED_MEM="$ram" GDB_PORT=$port bash "$root/eng/run-guest.sh" "$work/guest" > /dev/null
dotnet "$root/benchmarks/VmState.LiveBench/bin/Release/net10.0/VmState.LiveBench.dll" "$work/guest/qmp.sock" "$port"
