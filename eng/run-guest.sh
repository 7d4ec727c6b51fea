#!/usr/bin/env bash
# Starts the VmState guest fixture in QEMU (daemonized) for manual use and
# demos, waits until the guest prints VMSTATE-READY, then prints the
# ground-truth lines.
#
# Usage:
#   eng/run-guest.sh DIR          start a guest; state files go to DIR
#   eng/run-guest.sh --stop DIR   stop the guest started with DIR (via its pidfile)
#
# DIR receives serial.log (guest console), qmp.sock (QMP, unix socket),
# qemu.pid, qemu.log (QEMU's own stderr), truth.txt (the VMSTATE-TRUTH lines,
# CR stripped) and cmdline.txt (the QEMU command line).
#
# Environment:
#   CPU=qemu64          -cpu model (e.g. max)
#   ACCEL=tcg           -accel (this project's tests use tcg)
#   MEM=512             -m, MiB (above 8192: a memory-backend-ram with reserve=off, so a guest larger than the
#                       host starts; QEMU allocates only what the guest touches)
#   SMP=2               -smp
#   EXTRA_APPEND=       extra kernel command-line arguments (e.g. pti=on)
#   SHARED_MEM=         put guest RAM on this file (memory-backend-file share=on, id
#                       pc.ram), e.g. /dev/shm/vmstate-ram, for the shared-memory path
#   GDB_PORT=           start QEMU's gdbstub on 127.0.0.1:PORT
#   DISK=               qcow2 image to attach as IDE disk (node-name disk0);
#                       created (64 MiB) when it does not exist. Needed for
#                       savevm/loadvm internal snapshots.
#   TIMEOUT=120         seconds to wait for VMSTATE-READY
#   QEMU=qemu-system-x86_64
#   FIXTURE_KERNEL=6.1  kernel series of the guest (6.1 or 6.12; see eng/fixture.sh --kernel)
#   FIXTURE_ENV=        fixture env file (default: built/located by eng/fixture.sh)
set -euo pipefail

ENG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "run-guest: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,29p' "$0" >&2; exit 2; }

pid_alive() {   # pid_alive PIDFILE -> prints the pid when that process runs
  local pid
  [[ -s "$1" ]] || return 1
  pid=$(<"$1")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

stop_guest() {  # stop_guest DIR
  local pidfile=$1/qemu.pid pid i
  if ! pid=$(pid_alive "$pidfile"); then
    rm -f "$pidfile"
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  --stop)
    [[ $# -eq 2 ]] || usage
    stop_guest "$2"
    echo "run-guest: stopped guest in $2"
    exit 0
    ;;
  -h|--help|"") usage ;;
esac
[[ $# -eq 1 ]] || usage

mkdir -p "$1"
DIR=$(cd "$1" && pwd)
CPU=${CPU:-qemu64}
ACCEL=${ACCEL:-tcg}
MEM=${MEM:-512}
SMP=${SMP:-2}
EXTRA_APPEND=${EXTRA_APPEND:-}
DISK=${DISK:-}
SHARED_MEM=${SHARED_MEM:-}
GDB_PORT=${GDB_PORT:-}
TIMEOUT=${TIMEOUT:-120}
QEMU=${QEMU:-qemu-system-x86_64}
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"
command -v "$QEMU" >/dev/null 2>&1 || die "$QEMU not found; run eng/install-deps.sh"

if pid=$(pid_alive "$DIR/qemu.pid"); then
  die "a guest is already running from $DIR (pid $pid); stop it with: $0 --stop $DIR"
fi

# Fixture: KERNEL, INITRD, ... (fixture.sh is a fast no-op when built).
if [[ -z "${FIXTURE_ENV:-}" ]]; then
  # fixture.sh prints the env lines of the series FIXTURE_KERNEL selects.
  FIXTURE_ENV=$DIR/fixture.env
  "$ENG_DIR/fixture.sh" >"$FIXTURE_ENV" || die "eng/fixture.sh failed"
fi
[[ -r "$FIXTURE_ENV" ]] || die "fixture env file $FIXTURE_ENV not found"
KERNEL='' INITRD=''
# shellcheck source=/dev/null
. "$FIXTURE_ENV"
[[ -r "$KERNEL" && -r "$INITRD" ]] || die "KERNEL/INITRD from $FIXTURE_ENV do not exist"

SERIAL=$DIR/serial.log
QMP=$DIR/qmp.sock
PIDFILE=$DIR/qemu.pid
((${#QMP} < 108)) || die "QMP socket path too long for a unix socket (${#QMP} chars): $QMP"
rm -f "$SERIAL" "$QMP" "$PIDFILE" "$DIR/truth.txt"

# shellcheck disable=SC2054  # commas inside QEMU option values
args=(
  -M pc -accel "$ACCEL" -m "$MEM" -smp "$SMP" -cpu "$CPU"
  -display none -vga std -no-reboot
  -kernel "$KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check${EXTRA_APPEND:+ $EXTRA_APPEND}"
  # Two NICs; user-mode netdevs with restrict=on cannot reach anything
  # outside QEMU (and the guest configures no addresses anyway).
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56
  -netdev user,id=n1,restrict=on -device e1000,netdev=n1,mac=52:54:00:ab:cd:ef
  -device vmcoreinfo
  -serial "file:$SERIAL"
  -qmp "unix:$QMP,server=on,wait=off"
  -pidfile "$PIDFILE"
  -daemonize
)
if [[ -n "$SHARED_MEM" ]]; then
  args+=(-object "memory-backend-file,id=pc.ram,size=${MEM}M,mem-path=$SHARED_MEM,share=on" -machine memory-backend=pc.ram)
elif ((MEM > 8192)); then
  # A big guest on a small host: RAM without a swap reservation (MAP_NORESERVE) passes the host's overcommit check,
  # and QEMU touches only what the guest writes; the backend id keeps the usual block name, pc.ram.
  args+=(-object "memory-backend-ram,id=pc.ram,size=${MEM}M,reserve=off" -machine memory-backend=pc.ram)
fi
if [[ -n "$GDB_PORT" ]]; then
  args+=(-gdb "tcp:127.0.0.1:$GDB_PORT")
fi
if [[ -n "$DISK" ]]; then
  if [[ ! -e "$DISK" ]]; then
    qemu-img create -q -f qcow2 "$DISK" 64M || die "qemu-img create $DISK failed"
  fi
  args+=(-drive "file=$DISK,format=qcow2,if=ide,node-name=disk0")
fi

printf '%q ' "$QEMU" "${args[@]}" >"$DIR/cmdline.txt"
echo >>"$DIR/cmdline.txt"

start=$(date +%s.%N)
if ! "$QEMU" "${args[@]}" 2>"$DIR/qemu.log"; then
  cat "$DIR/qemu.log" >&2
  die "QEMU failed to start (command line in $DIR/cmdline.txt)"
fi
qpid=$(pid_alive "$PIDFILE") || die "QEMU started but $PIDFILE names no running process"

deadline=$(($(date +%s) + TIMEOUT))
ready=0
while (($(date +%s) < deadline)); do
  if grep -q '^VMSTATE-READY' "$SERIAL" 2>/dev/null; then
    ready=1
    break
  fi
  if ! kill -0 "$qpid" 2>/dev/null; then
    echo "run-guest: QEMU (pid $qpid) exited before the guest became ready" >&2
    cat "$DIR/qemu.log" >&2 || true
    echo "run-guest: --- last 40 lines of $SERIAL ---" >&2
    tail -n 40 "$SERIAL" 2>/dev/null | tr -d '\r' >&2 || true
    exit 1
  fi
  sleep 0.2
done
now=$(date +%s.%N)

if ((!ready)); then
  echo "run-guest: no VMSTATE-READY within ${TIMEOUT}s; killing QEMU (pid $qpid)" >&2
  stop_guest "$DIR"
  echo "run-guest: --- last 40 lines of $SERIAL ---" >&2
  tail -n 40 "$SERIAL" 2>/dev/null | tr -d '\r' >&2 || true
  exit 1
fi

tr -d '\r' <"$SERIAL" | grep '^VMSTATE-TRUTH ' >"$DIR/truth.txt" || true
cat "$DIR/truth.txt"
awk -v s="$start" -v e="$now" -v c="$CPU" 'BEGIN { printf "run-guest: READY after %.1f s (cpu=%s)\n", e - s, c }' >&2
echo "run-guest: QEMU pid $qpid, QMP $QMP, serial $SERIAL" >&2
echo "run-guest: stop with: $0 --stop $DIR" >&2
