#!/usr/bin/env bash
# Builds the vmstate command-line tool for use: Release, ReadyToRun (precompiled, so a short command such as
# `vmstate ps` does not spend its first ~60 ms in the JIT), framework-dependent, into OUTDIR.
# Usage: eng/publish.sh [OUTDIR]     (default: ./artifacts/vmstate); prints the path of the executable.
# The RID-specific restore writes its lock file under obj/ so the committed lock files stay as they are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/artifacts/vmstate}"
dotnet publish "$root/src/VmState.Cli" -c Release -r linux-x64 --self-contained false \
  -p:PublishReadyToRun=true -p:NuGetLockFilePath=obj/publish-linux-x64.lock.json \
  -o "$out" -nologo -v quiet >&2
echo "$out/vmstate"
