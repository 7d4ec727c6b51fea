#!/usr/bin/env bash
# Old build against new build, same snapshot, same run: the "performance does not regress" check of a refactor.
#   1. cold `vmstate ps` (a fresh `dotnet vmstate.dll ps SNAPSHOT` per run; old and new alternate run by run, so
#      machine noise hits both alike; median wall time of RUNS runs each after one untimed run of each); the two
#      outputs must be byte-identical;
#   2. translation rates of benchmarks/VmState.TranslateBench built from each tree (same snapshot, same seed, same
#      address sets; every translation checked by the bench itself): ROUNDS alternating runs each, the median of
#      each set's per-run median.
# Goal: new within 10 % of old (ps wall time <= 1.10 x old; each translation rate >= 0.90 x old).
# Prints a markdown report and writes it to benchmarks/results/compare-DATE.md.
#
# Usage: benchmarks/compare-builds.sh [BASE [SNAPSHOT]]
#   BASE       the old commit (default: 50fb645, the last commit before issue 10's library refactor)
#   SNAPSHOT   a migration stream of the fixture guest (default: boot it with eng/run-guest.sh, MEM=512, take one)
# Environment: RUNS=11, ROUNDS=3, ADDRESSES=2000000, OUT=benchmarks/results/compare-DATE.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE=${1:-50fb645}
RUNS=${RUNS:-11}
ROUNDS=${ROUNDS:-3}
ADDRESSES=${ADDRESSES:-2000000}
today=$(date +%F)
OUT=${OUT:-$root/benchmarks/results/compare-$today.md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-compare.XXXXXX")
cleanup() {
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "compare-builds: $*" >&2; }
die() { echo "compare-builds: ERROR: $*" >&2; exit 1; }

base=$(git -C "$root" rev-parse --verify --quiet "$BASE^{commit}") || die "commit $BASE is not in this repository"
head=$(git -C "$root" rev-parse HEAD)
dirty=$(git -C "$root" status --porcelain -- src benchmarks | wc -l)

build_tree() { # SRC_DIR OUT_DIR
  (
    cd "$1"
    dotnet restore --locked-mode src/VmState.Cli/VmState.Cli.csproj -v quiet
    dotnet restore --locked-mode benchmarks/VmState.TranslateBench/VmState.TranslateBench.csproj -v quiet
    dotnet build src/VmState.Cli/VmState.Cli.csproj -c Release --no-restore -nologo -v quiet -o "$2/cli"
    dotnet build benchmarks/VmState.TranslateBench/VmState.TranslateBench.csproj -c Release --no-restore -nologo -v quiet -o "$2/bench"
  ) >&2
}

log "building old ($base) and new (working tree at $head)"
mkdir -p "$work/old-src"
git -C "$root" archive "$base" | tar -x -C "$work/old-src"
build_tree "$work/old-src" "$work/old"
build_tree "$root" "$work/new"

if (($# >= 2)); then
  snap=$(realpath "$2")
else
  log "booting the fixture guest (MEM=512)"
  MEM=512 bash "$root/eng/run-guest.sh" "$work/guest" > /dev/null
  dotnet "$work/new/cli/vmstate.dll" snapshot --qmp "$work/guest/qmp.sock" -o "$work/snap.bin" >&2
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null
  snap=$work/snap.bin
fi
cat "$snap" > /dev/null # warm page cache for both

log "cold ps: $RUNS alternating runs each"
python3 - "$work" "$snap" "$RUNS" > "$work/ps.json" << 'PY'
import json, subprocess, sys, time
work, snap, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
builds = {"old": f"{work}/old/cli/vmstate.dll", "new": f"{work}/new/cli/vmstate.dll"}
out, times = {}, {k: [] for k in builds}
for k, dll in builds.items():  # untimed run of each
    out[k] = subprocess.run(["dotnet", dll, "ps", snap], check=True, capture_output=True).stdout
for i in range(runs):
    order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
    for k in order:
        t = time.perf_counter()
        subprocess.run(["dotnet", builds[k], "ps", snap], check=True, capture_output=True)
        times[k].append(time.perf_counter() - t)
med = lambda xs: sorted(xs)[len(xs) // 2]
o, n = out["old"].decode(errors="replace").splitlines(), out["new"].decode(errors="replace").splitlines()
changed = [(a, b) for a, b in zip(o, n) if a != b] + [("", b) for b in n[len(o):]] + [(a, "") for a in o[len(n):]]
json.dump({"identical": out["old"] == out["new"], "lines": out["new"].count(b"\n"), "changed": changed,
           "old": med(times["old"]), "new": med(times["new"]), "oldRuns": times["old"], "newRuns": times["new"]}, sys.stdout)
PY

log "translation: $ROUNDS alternating rounds of VmState.TranslateBench ($ADDRESSES addresses a set)"
for ((r = 0; r < ROUNDS; r++)); do
  for k in old new; do
    dotnet "$work/$k/bench/VmState.TranslateBench.dll" "$snap" "$work/tr-$k-$r" "$ADDRESSES" 1000 > "$work/tr-$k-$r.log" 2>&1 ||
      die "TranslateBench ($k) failed: $(tail -3 "$work/tr-$k-$r.log")"
  done
done

python3 - "$work" "$ROUNDS" "$base" "$head" "$dirty" "$snap" "$OUT" << 'PY'
import glob, json, os, statistics, sys
work, rounds, base, head, dirty, snap, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
ps = json.load(open(f"{work}/ps.json"))
L = [f"# Old build against new build ({os.popen('date +%F').read().strip()})", "",
     f"Old: `{base[:12]}`. New: `{head[:12]}`" + (f" plus {dirty} uncommitted files in src/ or benchmarks/" if dirty else "") + ".",
     f"Snapshot: `{os.path.basename(snap)}`, {os.path.getsize(snap)} bytes. Host: {os.cpu_count()} cores, load at end "
     f"{open('/proc/loadavg').read().split()[0]}. Goal: new within 10 % of old.", "",
     "| measure | old | new | new/old | within 10 % |", "|---|---|---|---|---|"]
ok = True
r = ps["new"] / ps["old"]
good = r <= 1.10
ok &= good
L.append(f"| cold `vmstate ps` wall, median s ({len(ps['oldRuns'])} runs each; outputs {'identical' if ps['identical'] else 'differ: lines below'}) "
         f"| {ps['old']:.3f} | {ps['new']:.3f} | {r:.2f} | {'PASS' if good else 'FAIL'} |")
def rates(k):
    acc = {}
    for i in range(rounds):
        for s in json.load(open(f"{work}/tr-{k}-{i}/vmstate.json"))["sets"]:
            for m in ("translatePerSecond", "read8PerSecond", "fullyColdPerSecond"):
                if m in s:
                    acc.setdefault((s["name"], m), []).append(s[m]["median"])
    return {key: statistics.median(v) for key, v in acc.items()}
old, new = rates("old"), rates("new")
for key in sorted(old):
    if key not in new:
        continue
    o, n = old[key], new[key]
    good = n >= 0.90 * o
    ok &= good
    L.append(f"| translation {key[0]} {key[1]}, M/s | {o / 1e6:.2f} | {n / 1e6:.2f} | {n / o:.2f} | {'PASS' if good else 'FAIL'} |")
L += ["", "Verdict (speed): " + ("PASS" if ok else "FAIL") + f". Produced by `benchmarks/compare-builds.sh {base[:12]}`."]
if not ps["identical"]:
    # Output changes made on purpose after BASE (e.g. process names as /proc shows them) show here, to be judged.
    L += ["", f"`ps` lines that differ ({len(ps['changed'])}; old, then new):", "", "```"]
    for a, b in ps["changed"][:40]:
        L += [f"- {a}", f"+ {b}"]
    L += ["```"]
text = "\n".join(L) + "\n"
sys.stdout.write(text)
open(out, "w").write(text)
sys.exit(0 if ok else 1)
PY
