#!/usr/bin/env bash
# Builds the VmState NuGet package (library, XML docs, package README) and its symbol package (.snupkg).
# Usage: eng/pack.sh [output-dir]     (default: artifacts/packages)
# Set CI=true for a CI build (ContinuousIntegrationBuild: normalised source paths in the PDBs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/artifacts/packages}"
mkdir -p "$out"
# --locked-mode: the package is built from exactly the dependencies in the lock file.
dotnet restore --locked-mode "$root/src/VmState/VmState.csproj"
dotnet pack "$root/src/VmState/VmState.csproj" -c Release --no-restore -warnaserror -o "$out"
ls "$out"/VmState.*.nupkg "$out"/VmState.*.snupkg
