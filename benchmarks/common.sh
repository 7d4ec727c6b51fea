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
