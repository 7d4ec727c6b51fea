#!/usr/bin/env bash
# Builds libvmstate.so, the C ABI of the library (include/vmstate.h; python/vmstate wraps it), with Native AOT into
# OUTDIR and prints the path of the shared library. Needs clang and zlib1g-dev (eng/install-deps.sh installs them).
# Usage: eng/native.sh [OUTDIR]     (default OUTDIR: ./artifacts/native)
# The RID-specific restore writes its lock file under obj/, so the committed lock files stay as they are.
# Trim and AOT warnings are errors (Directory.Build.props sets TreatWarningsAsErrors): the code reachable from the
# exports must be AOT-clean.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/artifacts/native}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
dotnet publish "$root/src/VmState.Native" -c Release -r linux-x64 -o "$out" -nologo -v quiet \
  -p:PublishAot=true -p:NuGetLockFilePath=obj/publish-aot-linux-x64.lock.json >&2
lib="$out/libvmstate.so"
if [[ ! -f "$lib" ]]; then
  echo "native.sh: the publish gave no $lib" >&2
  exit 1
fi
echo "$lib"
