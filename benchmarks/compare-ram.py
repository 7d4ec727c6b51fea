#!/usr/bin/env python3
"""Checks that vmstate's core.elf holds the same guest RAM as the pc.ram file that QEMU's
analyze-migration.py -x wrote, and (optionally) that the random data loaded into the guest is there.

Usage: compare-ram.py CORE_ELF PC_RAM [RANDOM_FILE RANDOM_GUEST_ADDR]

Compares, by guest-physical address through core.elf's PT_LOAD program headers (p_paddr, p_offset,
p_filesz), the low range [0, 0xA0000) and [0xC0000, end of pc.ram below 4 GiB) with pc.ram at the same
offsets. Prints one line per range and exits 1 on any mismatch. With RANDOM_FILE, also counts the pages of
core.elf at RANDOM_GUEST_ADDR that still hold that file's bytes (informational). Reads in 16 MiB chunks: memory stays small.
"""
import os
import struct
import sys

PT_LOAD = 1
CHUNK = 16 << 20


def load_segments(path):
    with open(path, "rb") as f:
        eh = f.read(64)
        if eh[:4] != b"\x7fELF" or eh[4] != 2 or eh[5] != 1:
            raise SystemExit("%s: not a little-endian ELF64 file" % path)
        e_phoff, = struct.unpack_from("<Q", eh, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", eh, 54)
        if e_phnum == 0xFFFF:  # PN_XNUM: the real count is section header 0's sh_info
            e_shoff, = struct.unpack_from("<Q", eh, 40)
            f.seek(e_shoff)
            sh0 = f.read(64)
            e_phnum, = struct.unpack_from("<I", sh0, 44)
        f.seek(e_phoff)
        table = f.read(e_phentsize * e_phnum)
    segs = []
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", table, i * e_phentsize)
        if p_type == PT_LOAD and p_filesz:
            segs.append((p_paddr, p_filesz, p_offset))
    return segs


def read_pa(core, segs, pa, length):
    """Bytes [pa, pa+length) of guest-physical memory from the core, or None where no segment has them."""
    out = bytearray()
    while length > 0:
        for paddr, size, off in segs:
            if paddr <= pa < paddr + size:
                n = min(length, paddr + size - pa)
                core.seek(off + pa - paddr)
                data = core.read(n)
                if len(data) != n:
                    return None
                out += data
                pa += n
                length -= n
                break
        else:
            return None
    return bytes(out)


def compare(core, segs, ram, lo, hi, label):
    pa = lo
    while pa < hi:
        n = min(CHUNK, hi - pa)
        ram.seek(pa)
        want = ram.read(n)
        got = read_pa(core, segs, pa, n)
        if got is None:
            print("  %-34s MISSING in core.elf at 0x%x" % (label, pa))
            return False
        if got != want:
            bad = next(i for i in range(n) if got[i] != want[i])
            print("  %-34s MISMATCH at guest-physical 0x%x" % (label, pa + bad))
            return False
        pa += n
    print("  %-34s match (%d bytes)" % (label, hi - lo))
    return True


def main():
    if len(sys.argv) not in (3, 5):
        raise SystemExit(__doc__)
    core_path, ram_path = sys.argv[1], sys.argv[2]
    segs = load_segments(core_path)
    ram_size = os.path.getsize(ram_path)
    # pc (i440fx) maps RAM below 4 GiB up to 0xE0000000 when it all fits, else up to 3 GiB (gigabyte_align).
    below_4g = ram_size if ram_size < 0xE0000000 else 0xC0000000
    ok = True
    with open(core_path, "rb") as core, open(ram_path, "rb") as ram:
        ok &= compare(core, segs, ram, 0, 0xA0000, "pc.ram [0, 0xa0000)")
        ok &= compare(core, segs, ram, 0xC0000, below_4g, "pc.ram [0xc0000, 0x%x)" % below_4g)
        if len(sys.argv) == 5:
            rand_path, rand_addr = sys.argv[3], int(sys.argv[4], 0)
            rand_size = os.path.getsize(rand_path)
            with open(rand_path, "rb") as rnd:
                # Informational only: the guest firmware writes into some of these pages after the loader
                # put them there, and both tools see those writes.
                same = pages = 0
                pa = 0
                while pa < rand_size:
                    n = min(CHUNK, rand_size - pa)
                    rnd.seek(pa)
                    want = rnd.read(n)
                    got = read_pa(core, segs, rand_addr + pa, n) or b""
                    for i in range(0, n, 4096):
                        pages += 1
                        same += got[i:i + 4096] == want[i:i + 4096]
                    pa += n
                print("  %-34s %d of %d pages as loaded (the rest written by the guest firmware)"
                      % ("loader data (random file)", same, pages))
    print("RAM check: %s" % ("MATCH" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
