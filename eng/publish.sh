#!/usr/bin/env bash
# Builds the vmstate command-line tool for use into OUTDIR and prints the path of the executable.
#   default  Native AOT: one native executable, no JIT and no runtime start-up (a short command such as
#            `vmstate ps` on a 512 MiB snapshot: ~0.1 s instead of ~0.2 s); needs clang and zlib1g-dev (eng/install-deps.sh installs them)
#   --r2r    ReadyToRun: precompiled IL on the installed .NET runtime (also the fallback when AOT fails)
#   --aot-only  Native AOT or fail (no ReadyToRun fallback): what CI runs, so code that breaks AOT is caught
# Usage: eng/publish.sh [--r2r | --aot-only] [OUTDIR]     (default OUTDIR: ./artifacts/vmstate)
# The RID-specific restore writes its lock file under obj/, so the committed lock files stay as they are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=aot
fallback=1
if [[ "${1:-}" == "--r2r" ]]; then
  mode=r2r
  shift
elif [[ "${1:-}" == "--aot-only" ]]; then
  fallback=0
  shift
fi
out="${1:-$root/artifacts/vmstate}"
common=(-c Release -r linux-x64 -o "$out" -nologo -v quiet)
if [[ "$mode" == aot ]]; then
  if dotnet publish "$root/src/VmState.Cli" "${common[@]}" -p:PublishAot=true \
       -p:NuGetLockFilePath=obj/publish-aot-linux-x64.lock.json >&2; then
    echo "$out/vmstate"
    exit 0
  fi
  if ((!fallback)); then
    echo "publish.sh: Native AOT failed (see above)" >&2
    exit 1
  fi
  echo "publish.sh: Native AOT failed (see above); building ReadyToRun instead" >&2
fi
dotnet publish "$root/src/VmState.Cli" "${common[@]}" --self-contained false -p:PublishReadyToRun=true \
  -p:NuGetLockFilePath=obj/publish-linux-x64.lock.json >&2
echo "$out/vmstate"
