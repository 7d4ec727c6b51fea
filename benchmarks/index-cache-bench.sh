#!/usr/bin/env bash
# Benchmark: the snapshot index cache (docs/user-guide.md, "Index cache"). For each input and command, wall time of
# a fresh process (median of RUNS runs) without the cache (--no-cache), the first run with an empty cache (parse +
# write the entry), and later runs with the entry; each page cache warm and with the input evicted
# (posix_fadvise DONTNEED before every run). Checks that the cached output is byte-identical to the uncached one.
# Inputs: `vmstate ps` on a snapshot of the fixture Linux guest (512 MiB; booted with eng/run-guest.sh unless
# LINUX_SNAPSHOT names one), and `vmstate info` on the big streams of extract-bench.sh
# (${VMSTATE_CACHE:-~/.cache/vmstate}/bench/pc-16384MiB-3040data.mig, pc-2048MiB.mig: made there with
# BENCH_SIZES="2048 16384:3040"; missing ones are skipped). The cache directory is a temporary one, never the user's.
# Prints a markdown table and writes it to benchmarks/results/index-cache-DATE.md.
#
# Environment:
#   RUNS=5            timed runs per measurement (median reported)
#   LINUX_SNAPSHOT=   migration stream of the fixture guest for the ps case ("none" skips it)
#   VMSTATE_BIN=      an already built vmstate (default: build src/VmState.Cli in Release)
#   OUT=benchmarks/results/index-cache-DATE.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=${RUNS:-5}
cache=${VMSTATE_CACHE:-$HOME/.cache/vmstate}
OUT=${OUT:-$root/benchmarks/results/index-cache-$(date +%F).md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-idxbench.XXXXXX")
cleanup() {
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "index-cache-bench: $*" >&2; }

if [[ -n "${VMSTATE_BIN:-}" ]]; then
  vmstate=$VMSTATE_BIN
else
  log "building the CLI (Release)"
  dotnet build "$root/src/VmState.Cli" -c Release -warnaserror > "$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
  vmstate="$root/src/VmState.Cli/bin/Release/net10.0/vmstate"
fi

cases=()
snap=${LINUX_SNAPSHOT:-}
if [[ -z $snap ]]; then
  log "booting the fixture guest (MEM=512)"
  MEM=512 bash "$root/eng/run-guest.sh" "$work/guest" > /dev/null
  "$vmstate" snapshot --qmp "$work/guest/qmp.sock" -o "$work/linux.mig" >&2
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null
  snap=$work/linux.mig
fi
[[ $snap == none ]] || cases+=("ps|$snap")
for f in pc-16384MiB-3040data.mig pc-2048MiB.mig; do
  if [[ -f $cache/bench/$f ]]; then cases+=("info|$cache/bench/$f"); else log "no $cache/bench/$f: skipped"; fi
done

python3 - "$vmstate" "$work" "$RUNS" "$OUT" "${cases[@]}" << 'PY'
import os, statistics, subprocess, sys, time
vmstate, work, runs, out, cases = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]

def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)

def run(cmd, path, cold):
    if cold:
        evict(path)
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"index-cache-bench: {' '.join(cmd)} failed: {p.stderr.decode(errors='replace')}")
    return wall, p.stdout, p.stderr.decode()

def median(cmd, path, cold):
    return statistics.median(run(cmd, path, cold)[0] for _ in range(runs))

rows = []
for case in cases:
    command, path = case.split('|', 1)
    name = os.path.basename(path)
    size = os.path.getsize(path)
    cdir = os.path.join(work, 'index-' + name)
    base = [vmstate, command, path] + (['--timings'] if command == 'ps' else [])
    nocache = base + ['--no-cache']
    cached = base + ['--cache-dir', cdir]
    print(f'index-cache-bench: {command} {name} ({size} bytes)', file=sys.stderr)
    _, plain_out, _ = run(nocache, path, False)  # also warms the page cache
    warm_plain = median(nocache, path, False)
    cold_plain = median(nocache, path, True)
    evict(path)
    first, first_out, first_err = run(cached, path, False)
    entry = sum(os.path.getsize(os.path.join(cdir, f)) for f in os.listdir(cdir))
    warm_cached = median(cached, path, False)
    cold_cached = median(cached, path, True)
    _, hit_out, hit_err = run(cached, path, False)
    note = [l for l in hit_err.splitlines() if l.startswith('index cache:')]
    same = plain_out == first_out == hit_out
    rows.append((command, name, size, warm_plain, cold_plain, first, warm_cached, cold_cached, entry, note[0] if note else '', same))

lines = ['| command | input (bytes) | no cache, warm | no cache, evicted | first run (evicted; parse + write) | cached, warm | cached, evicted | speed-up warm / evicted | entry | same output |',
         '|---|---|---|---|---|---|---|---|---|---|']
for c, n, size, wp, cp, first, wc, cc, entry, note, same in rows:
    lines.append(f'| `{c}` | `{n}` ({size}) | {wp:.3f} s | {cp:.3f} s | {first:.3f} s | {wc:.3f} s | {cc:.3f} s | {wp / wc:.1f}× / {cp / cc:.1f}× | {entry} B | {"yes" if same else "NO"} |')
load = open('/proc/loadavg').read().split()[:3]
lines.append('')
lines.append(f'Median of {runs} runs each, fresh process per run; load average at the end {" ".join(load)}; {os.cpu_count()} cores.')
text = '\n'.join(lines) + '\n'
print(text)
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, 'w').write(text)
if not all(r[-1] for r in rows):
    sys.exit('index-cache-bench: cached output differs from the uncached one')
PY
