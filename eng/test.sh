#!/usr/bin/env bash
# Runs every test of the project: format check, unit tests, integration tests against a real QEMU guest, and a
# replay of the fuzz corpora. Prints the plain summary line "N passed, N failed" at the end.
# Usage: eng/test.sh            (installs missing Debian packages and builds the guest fixture first)
#        eng/test.sh --slow     also the integration tests marked [Trait("Category", "Slow")] (rr find over many
#                               replays: minutes each, and QEMU 7.2's replay stalls now and then on a loaded host)
set -euo pipefail
slow=0
if [[ "${1:-}" == --slow ]]; then
    slow=1
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash eng/install-deps.sh
# The kernel matrix: a guest per kernel series (LinuxTests runs on each; the other integration tests use 6.1).
bash eng/fixture.sh --kernel 6.1 > /dev/null
bash eng/fixture.sh --kernel 6.12 > /dev/null

results="$root/artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"
failed_steps=()

echo "== dotnet restore (locked) == (at ${SECONDS} s)"
dotnet restore --locked-mode VmState.slnx

echo "== dotnet format --verify-no-changes == (at ${SECONDS} s)"
if ! dotnet format VmState.slnx --verify-no-changes --no-restore; then
    failed_steps+=("dotnet format")
fi
# examples/ are file-based programs, outside the solution: only their whitespace can be checked without a project.
if ! dotnet format whitespace --folder examples --verify-no-changes; then
    failed_steps+=("dotnet format examples")
fi

echo "== build == (at ${SECONDS} s)"
dotnet build VmState.slnx -c Release --no-restore -warnaserror

# What users run every day is the Native AOT executable (eng/publish.sh): code that breaks AOT (trimming or
# single-file analysis errors) fails here, and the executable must start.
echo "== Native AOT publish (eng/publish.sh --aot-only) == (at ${SECONDS} s)"
if ! aot_exe="$(bash eng/publish.sh --aot-only "$root/artifacts/aot")" || ! "$aot_exe" --help > /dev/null; then
    failed_steps+=("Native AOT publish")
else
    # The integration tests run the CLI as users do: this executable (VmStateCli; tests that need the managed
    # vmstate.dll, such as a background process they signal, still start that). It also starts in milliseconds
    # where `dotnet vmstate.dll` takes a quarter of a second of JIT per run, hundreds of times in the suite.
    export VMSTATE_CLI_EXE="$aot_exe"
fi

run_tests() {
    local project="$1" name="$2" filter=()
    if [[ -n "${3:-}" ]]; then
        filter=(--filter "$3")
    fi
    echo "== tests: $name == (at ${SECONDS} s)"
    # Each test's result is printed as it ends, and a test that runs past 15 minutes (a hang: the slowest test takes
    # about 3) stops the run with the test named, instead of the run waiting until CI's own time limit.
    # And the whole step has a limit (a hang outside any one test, e.g. in a test class's teardown), well inside CI's.
    if ! timeout --kill-after=2m 65m dotnet test "$project" -c Release --no-build "${filter[@]}" --logger "trx;LogFileName=$name.trx" \
        --logger "console;verbosity=normal" --blame-hang-timeout 15m --blame-hang-dump-type none \
        --results-directory "$results"; then
        failed_steps+=("tests: $name")
    fi
}
run_tests tests/VmState.Tests unit

# The CLI of the pinned commit, for CliGoldenTests (CLI output unchanged across the refactor). If it cannot be
# built (e.g. a shallow clone lacks the commit), the step fails here and those tests fail saying why.
echo "== golden baseline CLI (eng/golden-baseline.sh) == (at ${SECONDS} s)"
if baseline_dll="$(bash eng/golden-baseline.sh)"; then
    export VMSTATE_GOLDEN_BASELINE="$baseline_dll"
    echo "$VMSTATE_GOLDEN_BASELINE"
else
    failed_steps+=("golden baseline")
fi
if ((slow)); then
    run_tests tests/VmState.Integration integration
else
    run_tests tests/VmState.Integration integration "Category!=Slow"
fi

if [ -x eng/fuzz.sh ] || [ -f eng/fuzz.sh ]; then
    echo "== fuzz corpus replay == (at ${SECONDS} s)"
    if ! bash eng/fuzz.sh replay > "$results/fuzz-replay.log" 2>&1; then
        failed_steps+=("fuzz replay")
        tail -n 30 "$results/fuzz-replay.log"
    else
        tail -n 3 "$results/fuzz-replay.log"
    fi
fi

# Count test outcomes from the TRX files (dotnet test's own summary is not read by CI).
# The failed tests are named here, with the first line of their message, so that the tail of CI's log says which.
python3 - "$results" <<'PY'
import sys, glob, xml.etree.ElementTree as ET
for path in sorted(glob.glob(sys.argv[1] + "/*.trx")):
    for r in ET.parse(path).getroot().findall(".//{*}UnitTestResult"):
        if r.get("outcome") not in ("Passed", "NotExecuted"):
            message = r.find(".//{*}ErrorInfo/{*}Message")
            first = (message.text or "").strip().splitlines()[0][:300] if message is not None and message.text else ""
            print(f"FAILED {r.get('testName')} ({r.get('duration')}): {first}")
# And where the time went: the test classes that took longest (their tests' own time, fixtures not included).
classes = {}
for path in glob.glob(sys.argv[1] + "/*.trx"):
    for r in ET.parse(path).getroot().findall(".//{*}UnitTestResult"):
        h, m, s = (r.get("duration") or "0:0:0").split(":")
        name = r.get("testName").split("(")[0].rsplit(".", 1)[0].rsplit(".", 1)[-1]
        classes[name] = classes.get(name, 0) + int(h) * 3600 + int(m) * 60 + float(s)
print("slowest test classes: " + ", ".join(f"{n} {t:.0f} s" for n, t in sorted(classes.items(), key=lambda c: -c[1])[:8]))
PY
read -r passed failed < <(python3 - "$results" <<'PY'
import sys, glob, xml.etree.ElementTree as ET
p = f = 0
for path in glob.glob(sys.argv[1] + "/*.trx"):
    c = ET.parse(path).getroot().find(".//{*}ResultSummary/{*}Counters")
    if c is not None:
        p += int(c.get("passed", 0)); f += int(c.get("failed", 0)) + int(c.get("error", 0)) + int(c.get("timeout", 0)) + int(c.get("aborted", 0))
print(p, f)
PY
)
steps_failed=${#failed_steps[@]}
if [ "$steps_failed" -gt 0 ]; then
    echo "failed steps: ${failed_steps[*]}"
fi
# A failed non-test step (format, fuzz replay, a test host crash) counts as one failure.
if [ "$failed" -eq 0 ] && [ "$steps_failed" -gt 0 ]; then
    failed=$steps_failed
fi
echo "total ${SECONDS} s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
