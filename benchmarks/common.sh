# Sourced by the benchmark scripts (after they define log, die and root).
# shellcheck shell=bash

# bench_vmstate WORK: prints the vmstate executable to measure: $VMSTATE_BIN when set, else the Native AOT build
# eng/publish.sh makes in WORK/bin (its log in WORK/publish.log, shown when it fails).
bench_vmstate() {
  local work=$1
  if [[ -n "${VMSTATE_BIN:-}" ]]; then
    printf '%s\n' "$VMSTATE_BIN"
    return
  fi
  log "publishing vmstate (Native AOT)"
  bash "$root/eng/publish.sh" "$work/bin" 2> "$work/publish.log" || { cat "$work/publish.log" >&2; die "eng/publish.sh failed"; }
}

# vmstate_release_command: sets the array `vmstate` to the command to measure: $VMSTATE_BIN when set, else dotnet on
# the Release build of the CLI (dies when it is not built).
vmstate_release_command() {
  if [[ -n "${VMSTATE_BIN:-}" ]]; then
    vmstate=("$VMSTATE_BIN")
    return
  fi
  local dll="$root/src/VmState.Cli/bin/Release/net10.0/vmstate.dll"
  [[ -f "$dll" ]] || die "build first: dotnet build VmState.slnx -c Release"
  vmstate=(dotnet "$dll")
}

# now_ms: the wall clock in milliseconds.
now_ms() { echo $(($(date +%s%N) / 1000000)); }
