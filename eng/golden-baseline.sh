#!/usr/bin/env bash
# Builds the vmstate CLI of the commit pinned in eng/golden-baseline.txt into artifacts/golden-baseline/bin/ and
# prints the path of its vmstate.dll (the value of VMSTATE_GOLDEN_BASELINE for CliGoldenTests).
# Skips the build when that directory already holds a build of the same commit.
# Usage: eng/golden-baseline.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pin="$(grep -v '^[[:space:]]*#' eng/golden-baseline.txt | grep -m1 -o '[0-9a-fA-F]\{7,40\}' || true)"
if [ -z "$pin" ]; then
    echo "golden-baseline: eng/golden-baseline.txt names no commit" >&2
    exit 1
fi
if ! commit="$(git rev-parse --verify --quiet "$pin^{commit}")"; then
    shallow=""
    if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = "true" ]; then
        shallow=" This is a shallow clone: fetch the history (git fetch --unshallow) or clone without --depth."
    fi
    echo "golden-baseline: commit $pin (eng/golden-baseline.txt) is not in this repository.$shallow" >&2
    exit 1
fi

out="$root/artifacts/golden-baseline"
dll="$out/bin/vmstate.dll"
if [ -f "$dll" ] && [ "$(cat "$out/commit" 2>/dev/null)" = "$commit" ]; then
    echo "$dll"
    exit 0
fi

# The source is exported with git archive rather than added as a git worktree: nothing is registered in the
# repository's shared .git, so parallel clones and worktrees never see (or have to prune) it.
rm -rf "$out"
mkdir -p "$out/src"
git archive "$commit" | tar -x -C "$out/src"
# The pinned commit's own lock files, in locked mode: the restore uses the NuGet cache CI already has and fails
# rather than resolve different package versions than that commit was tested with.
# Everything goes to stderr, so stdout is only the path.
(
    cd "$out/src"
    dotnet restore --locked-mode src/VmState.Cli/VmState.Cli.csproj
    dotnet build src/VmState.Cli/VmState.Cli.csproj -c Release --no-restore -o "$out/bin"
) >&2
echo "$commit" > "$out/commit"
echo "$dll"
