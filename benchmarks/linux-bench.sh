#!/usr/bin/env bash
# Benchmark: Linux introspection of the fixture guest (512 MiB RAM), same snapshot, same run, against the peers:
#   1. cold `vmstate ps` (a fresh process per run, wall time, phase times from --timings; page cache warm, and with
#      the snapshot evicted) against the reference checker's process listing (Python, profile-free, run through its
#      own functions) and drgn (Debian python3-drgn) with the kernel's DWARF (linux-image-KVER-dbg);
#   2. virtual-to-physical translation through VmState.Arch.X86.AddressSpace (benchmarks/VmState.TranslateBench:
#      cached, larger than the cache, cold, fully cold; every result checked) against the reference checker's
#      page-table walker and drgn's read through a page table, on the same addresses.
# Goals (issue): cold ps <= 250 ms wall on a 512 MiB snapshot; translation >= 20 M/s cached, >= 2 M/s cold.
# Prints a markdown report and writes it to benchmarks/results/linux-DATE.md.
#
# Usage: benchmarks/linux-bench.sh [SNAPSHOT]
#   SNAPSHOT   a migration stream of the fixture guest (default: boot it with eng/run-guest.sh, MEM=512, and take one)
# Environment:
#   RUNS=5                 timed runs per ps measurement (after one untimed run); the median is reported
#   ADDRESSES=4000000      addresses per cached translation set (vmstate)
#   PEER_ADDRESSES=300000  the peers translate this prefix of each set
#   REF_SCRIPT=/work/shared/research/profile-free-linux-verify.py   the reference checker ("" skips it)
#   VMLINUX=               vmlinux with DWARF for drgn (default: linux-image-KVER-dbg, fetched with apt-get download
#                          into ${VMSTATE_CACHE:-~/.cache/vmstate}/bench/dbg/ when missing; NO_DBG=1 skips drgn's ps)
#   OUT=benchmarks/results/linux-DATE.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=${RUNS:-5}
ADDRESSES=${ADDRESSES:-4000000}
PEER_ADDRESSES=${PEER_ADDRESSES:-300000}
REF_SCRIPT=${REF_SCRIPT-/work/shared/research/profile-free-linux-verify.py}
NO_DBG=${NO_DBG:-0}
PY=/usr/bin/python3 # Debian's interpreter: python3-drgn installs its module there
cache=${VMSTATE_CACHE:-$HOME/.cache/vmstate}
today=$(date +%F)
OUT=${OUT:-$root/benchmarks/results/linux-$today.md}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmstate-linuxbench.XXXXXX") # short path: the QMP socket path is limited
cleanup() {
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "linux-bench: $*" >&2; }
die() { echo "linux-bench: ERROR: $*" >&2; exit 1; }
[[ -x $PY ]] || die "$PY not found"
meta() { printf '%s=%s\n' "$1" "$2" >> "$work/meta.txt"; }

if ! $PY -c 'import drgn' 2> /dev/null && ((EUID == 0)); then
  log "installing python3-drgn"
  apt-get install -y -qq python3-drgn > /dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-drgn > /dev/null; } || true
fi
have_drgn=0
if $PY -c 'import drgn' 2> /dev/null; then
  have_drgn=1
  meta drgn_version "$($PY -c 'import drgn; print(drgn.__version__)')"
else
  log "drgn is not available: its columns stay empty"
fi
have_ref=0
if [[ -n $REF_SCRIPT && -f $REF_SCRIPT ]]; then have_ref=1; else log "no reference checker at '$REF_SCRIPT': its columns stay empty"; fi

mkdir -p "$work/py"
cat > "$work/py/runner.py" << 'PY'
# Runs a command RUNS times as a fresh process (after one untimed warm-up run), optionally evicting files from the
# page cache first (posix_fadvise DONTNEED on each, before every timed run), and records the wall time of each run,
# the "NAME  N ms" phase lines it prints on stderr, and the stdout of the last run.
# Usage: runner.py OUT.json RUNS EVICT_FILES(comma-separated or "-") CMD...
import json, os, re, statistics, subprocess, sys, time
out, runs, evict, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
files = [] if evict == '-' else evict.split(',')
def drop(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
phase_re = re.compile(r'^(.*?)\s+([0-9]+(?:\.[0-9]+)?) ms$')
res = {'cmd': cmd, 'evict': files, 'walls': [], 'phases': {}, 'order': []}
p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
if p.returncode != 0:
    res.update(rc=p.returncode, error=p.stderr.decode(errors='replace').strip().splitlines()[-1:] or [''])
    json.dump(res, open(out, 'w'), indent=1)
    sys.exit(0)
for _ in range(runs):
    for f in files:
        drop(f)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    res['walls'].append((time.perf_counter() - t0) * 1e3)
    if p.returncode != 0:
        res.update(rc=p.returncode, error=p.stderr.decode(errors='replace').strip().splitlines()[-1:])
        break
    for line in p.stderr.decode(errors='replace').splitlines():
        m = phase_re.match(line.strip())
        if m:
            name = re.sub(r'\s+', ' ', m.group(1))
            if name not in res['phases']:
                res['phases'][name] = []
                res['order'].append(name)
            res['phases'][name].append(float(m.group(2)))
    res['stdout'] = p.stdout.decode(errors='replace')
res['rc'] = res.get('rc', 0)
if res['walls']:
    res['median'] = statistics.median(res['walls'])
json.dump(res, open(out, 'w'), indent=1)
print('%-28s median %7.1f ms  runs %s' % (os.path.basename(out)[:-5], res.get('median', float('nan')),
      ' '.join('%.0f' % w for w in res['walls'])) if res['walls'] else '%s: %s' % (out, res.get('error')), flush=True)
PY
cat > "$work/py/ref_ps.py" << 'PY'
# ps through the reference checker's own functions (Phys, VM, find_kernel_image, find_kallsyms, BTF), in the order
# and with the task walk of its main(): CPU state -> kernel PGD -> image -> kallsyms -> BTF -> init_task.tasks.
# Prints the listing on stdout and the phase times on stderr as "name  N ms".
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('refcheck', sys.argv[1])
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
core = sys.argv[2]
clock = [time.perf_counter()]
report = []
def phase(name):
    now = time.perf_counter()
    report.append('%-48s %8.1f ms' % (name, (now - clock[0]) * 1e3))
    clock[0] = now
phys = ref.Phys(core)
phase('open core')
c0 = phys.qemu_cpus()[0]
la57 = bool(c0['cr4'] & (1 << 12))
vm = None
for pgd in (c0['cr3'] & ref.PAGE_MASK & ~0x1000, c0['cr3'] & ref.PAGE_MASK):
    v = ref.VM(phys, pgd, la57)
    if ref.find_kernel_image(v):
        vm = v
        break
text_va, img_end = ref.find_kernel_image(vm)
phase('locate kernel (CR3, image scan)')
img = vm.read_zf(text_va, img_end - text_va)
ks = ref.find_kallsyms(img, text_va, text_va, lambda s: None)
syms = {}
for (a, ty, nm) in ks['symbols']:
    syms.setdefault(nm, a)
phase('kallsyms (image read + scan + decode)')
btf = ref.BTF(vm.read(syms['__start_BTF'], syms['__stop_BTF'] - syms['__start_BTF']))
o = lambda st, p: btf.member(btf.struct(st), p)[0]
offs = {k: o('task_struct', k) for k in ('tasks', 'pid', 'tgid', 'comm', 'mm', 'real_cred')}
offs['cred.uid'] = o('cred', 'uid')
phase('BTF')
init_task = syms['init_task']
head = init_task + offs['tasks']
rows = []
p = vm.q(head)
while p != head and len(rows) < 10000:
    task = p - offs['tasks']
    cred = vm.q(task + offs['real_cred'])
    rows.append((vm.d(task + offs['pid']), vm.d(task + offs['tgid']), vm.d(cred + offs['cred.uid']),
                 vm.cstr(task + offs['comm'], 16)))
    p = vm.q(p)
phase('walk tasks')
out = ['%7d %7d %6d %s' % r for r in rows]
sys.stdout.write('    PID    TGID    UID COMM\n' + '\n'.join(out) + '\n')
sys.stdout.flush()
phase('print')
sys.stderr.write('\n'.join(report) + '\n')
PY
cat > "$work/py/drgn_ps.py" << 'PY'
# ps with drgn: core dump + vmlinux debug info (DWARF), for_each_task, the fields vmstate ps prints.
# Usage: drgn_ps.py CORE [VMLINUX]; without VMLINUX it tries with no debug info and reports the error.
import sys, time
clock = [time.perf_counter()]
report = []
def phase(name):
    now = time.perf_counter()
    report.append('%-48s %8.1f ms' % (name, (now - clock[0]) * 1e3))
    clock[0] = now
import drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.mm import cmdline
from drgn.helpers.linux.sched import task_state_to_char
phase('import drgn')
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
phase('open core (set_core_dump)')
if len(sys.argv) > 2:
    prog.load_debug_info([sys.argv[2]])
    phase('load debug info (vmlinux DWARF)')
rows = []
for t in for_each_task(prog):
    pid = t.pid.value_()
    if pid != t.tgid.value_():
        continue
    kthread = bool(t.flags.value_() & 0x00200000)
    cl = None
    if not kthread and t.mm:
        try:
            cl = b' '.join(cmdline(t)).decode(errors='replace')
        except drgn.FaultError:
            cl = None
    rows.append((pid, t.real_parent.tgid.value_(), t.real_cred.uid.val.value_(), task_state_to_char(t),
                 t.comm.string_().decode(errors='replace'), cl if cl is not None else ''))
rows.sort()
phase('walk tasks (for_each_task)')
sys.stdout.write('    PID   PPID    UID S COMM             COMMAND\n' +
                 ''.join('%7d %6d %6d %s %-16s %s\n' % r for r in rows))
sys.stdout.flush()
phase('print')
sys.stderr.write('\n'.join(report) + '\n')
PY
cat > "$work/py/translate_peers.py" << 'PY'
# Translation peers on the address sets VmState.TranslateBench wrote (DIR/SET.bin: u64 triples va, expected pa,
# expected u64 value; DIR/vmstate.json: the sets and each space's page-table root).
#   ref:  the reference checker's VM.v2p (4/5-level walk with a per-entry dict cache) over its Phys (QEMU-style
#         ELF core, physical PT_LOADs only). Cached sets: one warm-up pass, then timed passes. Cold sets: a new VM
#         (empty cache) each pass; "fully cold": its cache cleared before every translation.
#   drgn: _drgn._linux_helper_read_vm(prog, pgd, va, 8) (drgn 0.0.22's read through a given page table; it keeps
#         no translation cache between calls) on the ELF core with VMCOREINFO, without debug info.
#   With SLOW_CORE (vmstate extract's default core: a PT_LOAD per kernel mapping), also times drgn there on the
#   first 2,000 addresses of each cold set.
# Usage: translate_peers.py REF_SCRIPT CORE_PHYS CORE_DRGN DIR OUT.json [SLOW_CORE]  (REF_SCRIPT or CORE_DRGN may be "-")
import array, importlib.util, json, statistics, sys, time
ref_path, core_phys, core_full, d, out_path = sys.argv[1:6]
meta = json.load(open(d + '/vmstate.json'))
res = {'sets': {}}
ref = phys = None
if ref_path != '-':
    spec = importlib.util.spec_from_file_location('refcheck', ref_path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    phys = ref.Phys(core_phys)
prog = read_vm = None
if core_full != '-':
    try:
        import drgn
        from _drgn import _linux_helper_read_vm as read_vm
        prog = drgn.Program()
        prog.set_core_dump(core_full)
        res['drgn'] = drgn.__version__
    except Exception as e:  # no drgn: report it
        res['drgnError'] = '%s: %s' % (type(e).__name__, e)
        prog = None

def timed(fn, passes):
    rates, out = [], None
    for _ in range(passes):
        t0 = time.perf_counter()
        out = fn()
        rates.append(n / (time.perf_counter() - t0))
    return rates, out

for s in meta['sets']:
    name, kind = s['name'], s['kind']
    space = meta['spaces'][s['space']]
    a = array.array('Q')
    with open('%s/%s.bin' % (d, name), 'rb') as f:
        a.frombytes(f.read())
    va, pa, val = list(a[0::3]), list(a[1::3]), list(a[2::3])
    n = len(va)
    r = {'addresses': n}
    pgd_pa, pgd_va, la57 = int(space['pgdPa'], 16), int(space['pgdVa'], 16), space['la57']
    cold = kind == 'cold'
    if ref:
        if cold:
            def one_pass():
                v2p = ref.VM(phys, pgd_pa, la57).v2p
                return [v2p(x) for x in va]
            rates, got = timed(one_pass, 3)
        else:
            v2p = ref.VM(phys, pgd_pa, la57).v2p
            got = [v2p(x) for x in va]
            r['refFirstPassMismatches'] = sum(1 for x, y in zip(got, pa) if x != y)
            rates, got = timed(lambda: [v2p(x) for x in va], 3)
        r['ref'] = {'median': statistics.median(rates), 'passes': rates,
                    'mismatches': sum(1 for x, y in zip(got, pa) if x != y)}
        if cold:
            vm = ref.VM(phys, pgd_pa, la57)
            def fully_cold():
                o = []
                for x in va:
                    vm.cache.clear()
                    o.append(vm.v2p(x))
                return o
            rates, got = timed(fully_cold, 3)
            r['refFullyCold'] = {'median': statistics.median(rates), 'passes': rates,
                                 'mismatches': sum(1 for x, y in zip(got, pa) if x != y)}
    if prog is not None:
        def drgn_pass():
            o = []
            for x in va:
                try:
                    o.append(int.from_bytes(read_vm(prog, pgd_va, x, 8), 'little'))
                except drgn.FaultError:
                    o.append(None)
            return o
        drgn_pass()
        rates, got = timed(drgn_pass, 3)
        r['drgn'] = {'median': statistics.median(rates), 'passes': rates,
                     'mismatches': sum(1 for x, y in zip(got, val) if x != y)}
    res['sets'][name] = r
    print('%-14s %7d addresses: %s' % (name, n, ', '.join(
        '%s %.3f M/s (%d mismatches)' % (k, r[k]['median'] / 1e6, r[k]['mismatches'])
        for k in ('ref', 'refFullyCold', 'drgn') if k in r)), flush=True)
if prog is not None and len(sys.argv) > 6:
    per_call = {}
    for space in ('kernel', 'user'):
        if space not in meta['spaces']:
            continue
        a = array.array('Q')
        with open('%s/%s-cold.bin' % (d, space), 'rb') as f:
            a.frombytes(f.read(24 * 2000))
        va = list(a[0::3])
        pgd_va = int(meta['spaces'][space]['pgdVa'], 16)
        for label, core in (('compact', core_full), ('full', sys.argv[6])):
            p2 = drgn.Program()
            p2.set_core_dump(core)
            t0 = time.perf_counter()
            for x in va:
                read_vm(p2, pgd_va, x, 8)
            per_call['%s-%s' % (space, label)] = (time.perf_counter() - t0) / len(va) * 1e6
    res['slowCore'] = per_call
    print('drgn read_vm, microseconds per call: ' + ', '.join('%s %.1f' % kv for kv in per_call.items()))
json.dump(res, open(out_path, 'w'), indent=1)
PY
cat > "$work/py/compact_core.py" << 'PY'
# Writes a copy of a physical-only ELF core (QEMU dump-guest-memory layout) with two linear virtual views of every
# RAM PT_LOAD added: the direct map (page_offset_base + pa) and the kernel image map (__START_KERNEL_map - phys_base
# + pa). The new PT_LOADs point at the same file bytes. drgn 0.0.22 reads the top-level page table through its
# virtual address, so it needs such views; this core has a handful of PT_LOADs instead of one per kernel mapping.
# Usage: compact_core.py CORE_PHYS OUT PAGE_OFFSET_BASE(hex)
import shutil, struct, sys
src, out, pob = sys.argv[1], sys.argv[2], int(sys.argv[3], 16)
START_KERNEL_MAP = 0xffffffff80000000
with open(src, 'rb') as f:
    hdr = f.read(64)
    phoff, = struct.unpack_from('<Q', hdr, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', hdr, 0x36)
    f.seek(phoff)
    phdrs = [struct.unpack('<IIQQQQQQ', f.read(phentsize)) for _ in range(phnum)]
    phys_base = None
    for (t, fl, off, va, pa, fsz, msz, al) in phdrs:
        if t == 4:
            f.seek(off)
            notes = f.read(fsz)
            o = 0
            while o + 12 <= len(notes):
                nsz, dsz, typ = struct.unpack_from('<III', notes, o)
                name = notes[o + 12:o + 12 + nsz].rstrip(b'\0')
                d0 = o + 12 + ((nsz + 3) & ~3)
                if name == b'VMCOREINFO':
                    for line in notes[d0:d0 + dsz].decode('latin-1').splitlines():
                        if line.startswith('NUMBER(phys_base)='):
                            phys_base = int(line.split('=')[1])
                o = d0 + ((dsz + 3) & ~3)
if phys_base is None:
    sys.exit('compact_core: no NUMBER(phys_base) in a VMCOREINFO note')
extra = []
for (t, fl, off, va, pa, fsz, msz, al) in phdrs:
    if t != 1:
        continue
    extra.append((1, fl, off, pob + pa, pa, fsz, msz, al))
    kva = START_KERNEL_MAP - phys_base + pa
    if pa < (1 << 30) and kva + msz <= (1 << 64):
        extra.append((1, fl, off, kva, pa, fsz, msz, al))
shutil.copyfile(src, out)
with open(out, 'r+b') as f:
    f.seek(0, 2)
    end = (f.tell() + 7) & ~7
    f.seek(end)
    for p in phdrs + extra:
        f.write(struct.pack('<IIQQQQQQ', *p))
    f.seek(0x20)
    f.write(struct.pack('<Q', end))
    f.seek(0x38)
    f.write(struct.pack('<H', len(phdrs) + len(extra)))
print('%s: %d program headers (%d added), phys_base %#x' % (out, len(phdrs) + len(extra), len(extra), phys_base & (2**64 - 1)))
PY
cat > "$work/py/report.py" << 'PY'
# Builds the markdown report of linux-bench.sh from the JSON files in WORK; prints it and writes OUT.
# Usage: report.py WORK OUT
import json, os, re, statistics, sys
work, out = sys.argv[1], sys.argv[2]
meta = dict(l.rstrip('\n').split('=', 1) for l in open(work + '/meta.txt') if '=' in l)
def load(name):
    p = '%s/%s.json' % (work, name)
    return json.load(open(p)) if os.path.exists(p) else None
def ms(x): return '%.0f ms' % x
def rate(x): return '%.2f M/s' % (x / 1e6) if x >= 1e5 else '%.3f M/s' % (x / 1e6)
def ratio(a, b): return '%.2f×' % (a / b) if a / b < 10 else '%.0f×' % (a / b)
L = []
P = L.append
GOAL_PS, GOAL_CACHED, GOAL_COLD = 250.0, 20e6, 2e6

P('## Linux introspection: translation and cold ps')
P('')
P('Run of %s (`benchmarks/linux-bench.sh`), %s. Fixture guest: Debian kernel %s, %s MiB RAM, booted with '
  '`eng/run-guest.sh` (TCG, `-cpu qemu64`, 2 vCPUs) and saved with `vmstate snapshot` as a migration stream '
  '(%s bytes, zero pages compressed). Machine: %s cores, load average %s at the start and %s at the end '
  '(other builds were running: expect noise; every number is a median).' % (
    meta['date'], meta['host'], meta['kver'], meta['mem'], meta['snapshot_bytes'], meta['cores'],
    meta['load_start'], meta.get('load_end', '?')))
P('')
P('Inputs, all from the one snapshot: `snap.bin` (the migration stream, what `vmstate` reads natively); '
  '`core-phys.elf` (`vmstate extract --no-kernel-vaddr`: physical PT_LOADs only, the layout of QEMU\'s '
  '`dump-guest-memory`, which the reference checker reads); `core-drgn.elf` (core-phys.elf plus two linear '
  'virtual views of RAM, the direct map and the kernel image map, %s PT_LOADs in all: drgn %s cannot walk page '
  'tables without a virtual view of the top-level table, and its segment lookup is slow on the %s PT_LOADs of '
  '`vmstate extract`\'s default core, see below).' % (meta.get('drgn_core_loads', '?'), meta.get('drgn_version', '?'),
                                                     meta.get('full_core_loads', '?')))
P('')

# ---- ps
P('### Cold `vmstate ps` (a fresh process each run; wall time, median of %s runs after one untimed run)' % meta['runs'])
P('')
P('| input | vmstate ps | peer | peer wall | vmstate/peer (time) | goal ≤ 250 ms |')
P('|---|---|---|---|---|---|')
rows = [
    ('ps-vmstate-stream', None, 'migration stream (`snap.bin`), page cache warm', '—'),
    ('ps-vmstate-stream-cold', None, 'migration stream, `snap.bin` evicted from the page cache before each run (posix_fadvise DONTNEED; runtime files stay cached)', '—'),
    ('ps-vmstate-phys', 'ps-ref', '`core-phys.elf`, page cache warm', 'reference checker (Python; its own functions: CR3 → kernel image → kallsyms scan → BTF → `init_task.tasks`)'),
    ('ps-vmstate-drgncore', 'ps-drgn', '`core-drgn.elf`, page cache warm', 'drgn %s + vmlinux DWARF (`%s`), `for_each_task` + `cmdline()`' % (meta.get('drgn_version', '?'), meta.get('vmlinux_name', '?'))),
    ('ps-vmstate-drgncore-cold', 'ps-drgn-cold', '`core-drgn.elf`, the core (and for drgn the vmlinux) evicted before each run', 'drgn, same, cold page cache'),
]
for (mine, peer, label, peer_label) in rows:
    m = load(mine)
    if not m or 'median' not in m:
        continue
    pr = load(peer) if peer else None
    goal = 'PASS' if m['median'] <= GOAL_PS else 'FAIL'
    if pr and 'median' in pr:
        P('| %s | %s | %s | %s | %s | %s |' % (label, ms(m['median']), peer_label, ms(pr['median']), ratio(m['median'], pr['median']), goal))
    elif pr:
        P('| %s | %s | %s | failed: `%s` | — | %s |' % (label, ms(m['median']), peer_label, (pr.get('error') or [''])[0], goal))
    else:
        P('| %s | %s | %s | — | — | %s |' % (label, ms(m['median']), peer_label, goal))
P('')
P('Runs (ms): ' + '; '.join('%s %s' % (n, '/'.join('%.0f' % w for w in load(n)['walls']))
                            for n in ('ps-vmstate-stream', 'ps-vmstate-stream-cold', 'ps-vmstate-phys', 'ps-ref',
                                      'ps-vmstate-drgncore', 'ps-drgn', 'ps-vmstate-drgncore-cold', 'ps-drgn-cold')
                            if load(n) and load(n).get('walls')) + '.')
P('')
P('Phases (median ms; vmstate from `--timings`, which starts counting after the runtime has started; '
  'the wall time above includes process start):')
P('')
for name, title in (('ps-vmstate-stream', 'vmstate, `snap.bin`, warm'), ('ps-vmstate-stream-cold', 'vmstate, `snap.bin`, evicted'),
                    ('ps-vmstate-phys', 'vmstate, `core-phys.elf`'), ('ps-ref', 'reference checker, `core-phys.elf`'),
                    ('ps-vmstate-drgncore', 'vmstate, `core-drgn.elf`'), ('ps-drgn', 'drgn + DWARF, `core-drgn.elf`'),
                    ('ps-drgn-cold', 'drgn + DWARF, evicted')):
    r = load(name)
    if r and r.get('phases'):
        P('- %s: %s; wall %s' % (title, ', '.join('%s %.1f' % (k, statistics.median(r['phases'][k])) for k in r['order']), ms(r['median'])))
P('')
# cross-check of the listings
def parse_vmstate(txt):
    d = {}
    for line in txt.splitlines()[1:]:
        f = line.split(None, 6)
        if len(f) >= 6:
            d[int(f[0])] = (int(f[1]), int(f[2]), f[3], f[5])
    return d
def parse_drgn(txt):
    d = {}
    for line in txt.splitlines()[1:]:
        f = line.split(None, 5)
        if len(f) >= 5:
            d[int(f[0])] = (int(f[1]), int(f[2]), f[3], f[4])
    return d
def parse_ref(txt):
    d = {}
    for line in txt.splitlines()[1:]:
        f = line.split(None, 3)
        if len(f) >= 4:
            d[int(f[0])] = (int(f[2]), f[3].strip())
    return d
v = load('ps-vmstate-stream')
checks = []
if v and v.get('stdout'):
    mine = parse_vmstate(v['stdout'])
    dr = load('ps-drgn')
    if dr and dr.get('stdout'):
        theirs = parse_drgn(dr['stdout'])
        same = sum(1 for p in mine if theirs.get(p) == mine[p])
        checks.append('drgn lists %d processes, vmstate %d; %d identical in pid, ppid, uid, state and comm' % (len(theirs), len(mine), same))
    rf = load('ps-ref')
    if rf and rf.get('stdout'):
        theirs = parse_ref(rf['stdout'])
        same = sum(1 for p in mine if p in theirs and theirs[p] == (mine[p][1], mine[p][3]))
        checks.append('the reference checker lists %d, %d identical in pid, uid and comm' % (len(theirs), same))
if checks:
    P('Same answer: ' + '; '.join(checks) + '. The reference checker reads no ppid, state or command line; drgn and vmstate read the command line from each process\'s memory.')
    P('')
if meta.get('drgn_nodebug_error'):
    P('drgn without debug info (`for_each_task` on `core-drgn.elf`, no vmlinux): `%s` — drgn %s has no kallsyms or BTF '
      'support, so it cannot list processes from the image alone; it needs the %s MB `%s` package (%s MB vmlinux).' % (
        meta['drgn_nodebug_error'], meta.get('drgn_version', '?'), meta.get('dbg_deb_mb', '?'), meta.get('dbg_pkg', '?'), meta.get('vmlinux_mb', '?')))
    P('')
if meta.get('ref_full_wall'):
    P('The whole reference script (`profile-free-linux-verify.py core-phys.elf`: also banner and VMCOREINFO scans, '
      'modules, module BTF and a kallsyms scan of raw physical memory) %s.' % (
        'took %s s once' % meta['ref_full_wall'] if meta['ref_full_wall'][0].isdigit()
        else 'did not finish within 120 s and was stopped (informational only; the ps row above is its process listing)'))
    P('')

# ---- translation
t = load('vmstate')
pe = load('peers') or {'sets': {}}
if t:
    P('### Address translation (`VmState.Arch.X86.AddressSpace`, `benchmarks/VmState.TranslateBench`)')
    P('')
    sp = t['spaces']
    P('Address sets: every 4 KiB page of every mapping that the snapshot backs, from `AddressSpace.Mappings()`: %s: %d pages (%s); %s: %d pages (%s). '
      'Addresses are 8-byte aligned at a random offset in a random page (seed %d). Translation cache: %d pages, table cache: %d page-table pages (AddressSpace.cs). '
      'vmstate runs %d addresses per cached set; the peers run the first %d of the same list (all of a cold set up to that). '
      'Rates are medians of the passes; ratios are vmstate ÷ peer (higher: vmstate faster).' % (
        sp['kernel']['description'], sp['kernel']['pages'], sp['kernel']['pageSizes'],
        sp['user']['description'] if 'user' in sp else '-', sp.get('user', {}).get('pages', 0), sp.get('user', {}).get('pageSizes', ''),
        t['seed'], t['translationCachePages'], t['tableCachePages'], t['addresses'], t['peerAddresses']))
    P('')
    P('| set | vmstate TryTranslate | goal | result | reference walker `VM.v2p` | vmstate/ref | vmstate translate + 8-byte read | drgn `read_vm` 8 bytes | vmstate/drgn |')
    P('|---|---|---|---|---|---|---|---|---|')
    for s in t['sets']:
        name, kind = s['name'], s['kind']
        pr = pe['sets'].get(name, {})
        tr = s['translatePerSecond']['median']
        rd = s['read8PerSecond']['median']
        if kind == 'cached':
            label, goal, res = '%s, cached: %d pages, %d addresses, after a warm-up pass' % (s['space'], s['distinctPages'], s['addresses']), '≥ 20 M/s', 'PASS' if tr >= GOAL_CACHED else 'FAIL'
        elif kind == 'cold':
            label, goal, res = '%s, cold: `Invalidate()`, then each of %d pages once' % (s['space'], s['distinctPages']), '≥ 2 M/s', 'PASS' if tr >= GOAL_COLD else 'FAIL'
        else:
            label, goal, res = '%s, %d pages (beyond the %d-page cache: mostly misses), %d addresses' % (s['space'], s['distinctPages'], t['translationCachePages'], s['addresses']), 'cached ≥ 20 M/s / cold ≥ 2 M/s', ('PASS' if tr >= GOAL_CACHED else 'FAIL') + ' / ' + ('PASS' if tr >= GOAL_COLD else 'FAIL')
        ref = pr.get('ref')
        drgn = pr.get('drgn')
        P('| %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            label, rate(tr), goal, res,
            rate(ref['median']) if ref else '—', ratio(tr, ref['median']) if ref else '—',
            rate(rd), rate(drgn['median']) if drgn else '—', ratio(rd, drgn['median']) if drgn else '—'))
        if 'fullyColdPerSecond' in s:
            fc = s['fullyColdPerSecond']['median']
            rfc = pr.get('refFullyCold')
            P('| %s, fully cold: `Invalidate()` before every translation (every level read from guest memory), %d addresses | %s | (≥ 2 M/s if cold means this) | %s | %s | %s | — | — | — |' % (
                s['space'], s['peerAddresses'], rate(fc), 'PASS' if fc >= GOAL_COLD else 'FAIL',
                rate(rfc['median']) if rfc else '—', ratio(fc, rfc['median']) if rfc else '—'))
            al = s['translateAllLevelsPerSecond']['median']
            P('| %s, `Translate()` (every level reported; no translation cache, page-table pages cached), %d addresses | %s | — | — | — | — | — | — | — |' % (s['space'], s['peerAddresses'], rate(al)))
    P('')
    bad = sum(s['mismatches'] for s in t['sets'])
    chk = sum(s['checkedTranslations'] for s in t['sets'])
    pbad = sum(v2['mismatches'] for r in pe['sets'].values() for k, v2 in r.items() if isinstance(v2, dict))
    pchk = sum(r['addresses'] for r in pe['sets'].values())
    P('Correctness: %d vmstate results (every pass: cached, cold, fully cold, `Translate()`, 8-byte reads) compared with a full walk '
      'of each page on a separate `AddressSpace` (itself checked against the `Mappings()` enumeration): %d mismatches. '
      'The peers\' results on the same addresses (physical address for the reference walker, the 8 bytes for drgn) differ from vmstate\'s in %d cases.' % (chk, bad, pbad))
    P('')
    P('Passes (M/s): ' + '; '.join('%s %s' % (s['name'], '/'.join('%.1f' % (x / 1e6) for x in s['translatePerSecond']['passes'][:8]) + ('…' if len(s['translatePerSecond']['passes']) > 8 else ''))
                                   for s in t['sets']) + '.')
    P('')
    sc = pe.get('slowCore')
    if sc:
        P('drgn on `vmstate extract`\'s default core instead (%s PT_LOADs: one per kernel mapping), microseconds per `read_vm` '
          '(first 2,000 addresses of each cold set): kernel %.1f (compact core: %.1f), user %.1f (compact core: %.1f). '
          'drgn 0.0.22 reads the top-level table through its virtual address and finds the segment by walking a '
          'search tree that the ordered insertion of that many PT_LOADs degrades (perf: ~90%% of the time in one '
          'tree-search loop in `_drgn.so` when reading at a direct-map address); a user pgd (a direct-map address) is hit hardest.' % (
            meta.get('full_core_loads', '?'), sc.get('kernel-full', 0), sc.get('kernel-compact', 0), sc.get('user-full', 0), sc.get('user-compact', 0)))
        P('')
P('How to run: `bash benchmarks/linux-bench.sh` (boots the fixture guest, ~2–4 min; `benchmarks/linux-bench.sh SNAPSHOT` reuses a '
  'migration stream of it). Needs `python3-drgn` (installed with apt-get when missing) and, for drgn\'s process list, '
  '`%s` (fetched with `apt-get download` into `${VMSTATE_CACHE:-~/.cache/vmstate}/bench/dbg/` when missing; `NO_DBG=1` skips it), '
  'and the reference checker at `REF_SCRIPT` (default `/work/shared/research/profile-free-linux-verify.py`).' % meta.get('dbg_pkg', 'linux-image-KVER-dbg'))
text = '\n'.join(L) + '\n'
sys.stdout.write(text)
open(out, 'w').write(text)
PY

meta date "$today"
meta host "$(nproc) cores, $(uname -r), .NET $(dotnet --version)"
meta cores "$(nproc)"
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta runs "$RUNS"

log "building (Release)"
# The tool as users get it (eng/publish.sh: Release, Native AOT); VMSTATE_BIN overrides it.
if [[ -n "${VMSTATE_BIN:-}" ]]; then
  vmstate=$VMSTATE_BIN
else
  vmstate=$(bash "$root/eng/publish.sh" "${VMSTATE_CACHE:-$HOME/.cache/vmstate}/bench/vmstate-publish")
fi
dotnet build "$root/benchmarks/VmState.TranslateBench" -c Release -nologo -v quiet > /dev/null
bench=$root/benchmarks/VmState.TranslateBench/bin/Release/net10.0/VmState.TranslateBench.dll

bash "$root/eng/fixture.sh" > /dev/null
KVER=''
# shellcheck source=/dev/null
. "$cache/fixture/env"
meta kver "$KVER"
if (($# >= 1)); then
  snap=$(realpath "$1")
  meta mem "${MEM:-512}"
else
  log "booting the fixture guest (MEM=512)"
  MEM=512 bash "$root/eng/run-guest.sh" "$work/guest" > /dev/null
  "$vmstate" snapshot --qmp "$work/guest/qmp.sock" -o "$work/snap.bin" >&2
  bash "$root/eng/run-guest.sh" --stop "$work/guest" > /dev/null
  snap=$work/snap.bin
  meta mem 512
fi
meta snapshot_bytes "$(stat -c %s "$snap")"

log "translation: VmState.TranslateBench ($ADDRESSES addresses a set)"
dotnet "$bench" "$snap" "$work/tr" "$ADDRESSES" "$PEER_ADDRESSES" >&2 || die "VmState.TranslateBench failed (mismatches?)"
cp "$work/tr/vmstate.json" "$work/vmstate.json"
pob=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["pageOffsetBase"])' "$work/vmstate.json")

log "extracting ELF cores"
"$vmstate" extract "$snap" -o "$work/full" > /dev/null
"$vmstate" extract "$snap" -o "$work/phys" --no-kernel-vaddr > /dev/null
full=$work/full/core.elf
phys=$work/phys/core.elf
dcore=$work/core-drgn.elf
$PY "$work/py/compact_core.py" "$phys" "$dcore" "$pob" >&2
loads() { readelf -lW "$1" | grep -c ' LOAD '; }
meta full_core_loads "$(loads "$full")"
meta drgn_core_loads "$(loads "$dcore")"

log "translation peers (first $PEER_ADDRESSES addresses of each set)"
$PY "$work/py/translate_peers.py" "$( ((have_ref)) && echo "$REF_SCRIPT" || echo -)" "$phys" \
  "$( ((have_drgn)) && echo "$dcore" || echo -)" "$work/tr" "$work/peers.json" "$full" >&2

vmlinux=${VMLINUX:-}
if [[ -z $vmlinux ]] && ((have_drgn)) && [[ $NO_DBG != 1 ]]; then
  dbg=$cache/bench/dbg
  vmlinux=$dbg/usr/lib/debug/boot/vmlinux-$KVER
  if [[ ! -s $vmlinux ]]; then
    mkdir -p "$dbg"
    log "fetching linux-image-$KVER-dbg (about 860 MB) for drgn's debug info"
    (cd "$dbg" && apt-get download "linux-image-$KVER-dbg" > /dev/null 2>&1) || die "apt-get download linux-image-$KVER-dbg failed (NO_DBG=1 skips drgn's ps)"
    deb=$(ls "$dbg"/linux-image-"$KVER"-dbg_*.deb)
    stat -c %s "$deb" > "$dbg/deb-size"
    # tar stops reading once the member is out; dpkg-deb then reports a broken pipe.
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dbg" "./usr/lib/debug/boot/vmlinux-$KVER" || true
    [[ -s $vmlinux ]] || die "could not extract vmlinux-$KVER from $deb"
    rm -f "$deb"
  fi
  meta dbg_pkg "linux-image-$KVER-dbg"
  [[ -s $dbg/deb-size ]] && meta dbg_deb_mb "$(($(cat "$dbg/deb-size") / 1000000))"
fi
if [[ -n $vmlinux ]]; then
  meta vmlinux_name "$(basename "$vmlinux")"
  meta vmlinux_mb "$(($(stat -c %s "$vmlinux") / 1000000))"
fi

log "cold ps: $RUNS runs each"
run() {
  local name=$1 evict=$2
  shift 2
  $PY "$work/py/runner.py" "$work/$name.json" "$RUNS" "$evict" "$@" >&2
}
run ps-vmstate-stream - "$vmstate" ps "$snap" --timings --no-cache
run ps-vmstate-stream-cold "$snap" "$vmstate" ps "$snap" --timings --no-cache
run ps-vmstate-phys - "$vmstate" ps "$phys" --timings
if ((have_ref)); then
  run ps-ref - "$PY" "$work/py/ref_ps.py" "$REF_SCRIPT" "$phys"
  # Informational: the whole script once, bounded (it scans raw RAM for kallsyms, which can take long).
  start=$(date +%s.%N)
  if timeout 120 $PY "$REF_SCRIPT" "$phys" > "$work/ref-full.txt" 2>&1; then
    meta ref_full_wall "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
  else
    meta ref_full_wall "did not finish in 120"
  fi
fi
run ps-vmstate-drgncore - "$vmstate" ps "$dcore" --timings
if ((have_drgn)); then
  meta drgn_nodebug_error "$($PY "$work/py/drgn_ps.py" "$dcore" 2>&1 > /dev/null | tail -n 1 || true)"
  if [[ -n $vmlinux ]]; then
    run ps-drgn - "$PY" "$work/py/drgn_ps.py" "$dcore" "$vmlinux"
    run ps-drgn-cold "$dcore,$vmlinux" "$PY" "$work/py/drgn_ps.py" "$dcore" "$vmlinux"
    run ps-vmstate-drgncore-cold "$dcore" "$vmstate" ps "$dcore" --timings
  fi
fi
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$(dirname "$OUT")"
$PY "$work/py/report.py" "$work" "$OUT"
log "wrote $OUT"
