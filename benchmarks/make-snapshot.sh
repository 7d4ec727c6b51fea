#!/usr/bin/env bash
# Makes a QEMU migration stream of a pc guest with SIZE_MIB MiB of RAM, (SIZE_MIB - 32) MiB of which hold
# random data (loaded at guest-physical 16 MiB with -device loader, from files of at most 2016 MiB), so the stream carries almost every page
# in full and neither tool can take a shortcut over zero pages. The guest boots no OS: the firmware finds
# nothing to boot and idles, which is enough for a stream that has every RAM block and device section.
# The random data file is cached under ${VMSTATE_CACHE:-$HOME/.cache/vmstate}/bench/.
# Usage: benchmarks/make-snapshot.sh SIZE_MIB OUT [DATA_MIB]
#   DATA_MIB: how much random data to load instead of SIZE_MIB - 32 (0: none, a mostly-zero guest). The data
#   always goes below 4 GiB (at most 3040 MiB), so guests larger than 3 GiB work too: QEMU allocates guest RAM
#   lazily, and the pages nothing writes stay unallocated (a 64 GiB guest with little data runs here).
set -euo pipefail

die() { echo "make-snapshot: $*" >&2; exit 1; }
(($# == 2 || $# == 3)) || die "usage: $0 SIZE_MIB OUT [DATA_MIB]"
size=$1
out=$2
if ! [[ "$size" =~ ^[0-9]+$ ]] || ((size < 64)); then die "SIZE_MIB must be an integer >= 64, got '$size'"; fi
rand_mib=${3:-$((size - 32))}
[[ "$rand_mib" =~ ^[0-9]+$ ]] || die "DATA_MIB must be an integer, got '$rand_mib'"
((rand_mib <= size - 32 && rand_mib <= 3040)) || die "DATA_MIB must be at most SIZE_MIB - 32 and at most 3040 (below 4 GiB)"
command -v qemu-system-x86_64 > /dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

cache="${VMSTATE_CACHE:-$HOME/.cache/vmstate}/bench"
mkdir -p "$cache" "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

loader=()
# Above 8 GiB, guest RAM is a memory backend without a swap reservation (MAP_NORESERVE), so the host's overcommit
# check lets a guest larger than the host's memory start; its id keeps the RAM block's usual name, pc.ram.
if ((size > 8192)); then loader+=(-object "memory-backend-ram,id=pc.ram,size=${size}M,reserve=off" -machine memory-backend=pc.ram); fi
# The data: random files of at most 2016 MiB each (QEMU's loader reads at most 2 GiB from one file), loaded one
# after the other from guest-physical 16 MiB.
left=$rand_mib
addr_mib=16
while ((left > 0)); do
  part=$((left > 2016 ? 2016 : left))
  rand="$cache/random-${part}MiB.bin"
  if [[ ! -f "$rand" || $(stat -c %s "$rand") -ne $((part * 1048576)) ]]; then
    echo "make-snapshot: writing $part MiB of random data to $rand" >&2
    head -c $((part * 1048576)) /dev/urandom > "$rand.tmp"
    mv "$rand.tmp" "$rand"
  fi
  loader+=(-device "loader,file=$rand,addr=$((addr_mib * 1048576)),force-raw=on")
  addr_mib=$((addr_mib + part))
  left=$((left - part))
done

work=$(mktemp -d /tmp/vmstate-snap.XXXXXX) # short path: a unix socket path is limited to 107 bytes
sock="$work/qmp.sock"
pidfile="$work/qemu.pid"
cleanup() {
  local rc=$?
  if [[ -s "$pidfile" ]]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2> /dev/null; then
      kill "$pid" 2> /dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2> /dev/null || true
    fi
  fi
  rm -rf "$work"
  if ((rc != 0)); then rm -f "$out.partial"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -f "$out.partial"
qemu-system-x86_64 -M pc -accel tcg -m "$size" -smp 2 -display none -vga std -nic none \
  "${loader[@]}" \
  -qmp "unix:$sock,server=on,wait=off" -daemonize -pidfile "$pidfile"
sleep 2

# A tiny QMP client: stop, raise the bandwidth cap, migrate into the file, wait, quit.
python3 - "$sock" "$out.partial" << 'EOF'
import json, shlex, socket, sys, time

sock_path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
f = s.makefile("rwb", buffering=0)

def recv():
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("make-snapshot: QMP connection closed")
        msg = json.loads(line)
        if "event" not in msg:
            return msg

def cmd(name, **args):
    req = {"execute": name}
    if args:
        req["arguments"] = args
    f.write(json.dumps(req).encode() + b"\n")
    msg = recv()
    if "error" in msg:
        raise SystemExit("make-snapshot: %s failed: %s" % (name, msg["error"]))
    return msg["return"]

recv()  # greeting
cmd("qmp_capabilities")
cmd("stop")
cmd("migrate-set-parameters", **{"max-bandwidth": 107374182400})
cmd("migrate", uri="exec:cat > " + shlex.quote(out))
deadline = time.time() + 600
while True:
    st = cmd("query-migrate")
    status = st.get("status")
    if status == "completed":
        break
    if status in ("failed", "cancelled"):
        raise SystemExit("make-snapshot: migration %s: %s" % (status, st.get("error-desc", "")))
    if time.time() > deadline:
        raise SystemExit("make-snapshot: migration did not complete in 600 s (status %s)" % status)
    time.sleep(0.1)
ram = st.get("ram", {})
print("make-snapshot: migration completed in %s ms, %s bytes of RAM transferred"
      % (st.get("total-time"), ram.get("transferred")), file=sys.stderr)
try:
    cmd("quit")
except SystemExit:
    pass
EOF

# QEMU exits after quit; the cleanup trap kills it if it did not.
for _ in $(seq 50); do
  if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2> /dev/null; then sleep 0.1; else break; fi
done
mv "$out.partial" "$out"
echo "make-snapshot: $out ($(stat -c %s "$out") bytes, ${size} MiB guest, ${rand_mib} MiB of data)" >&2
