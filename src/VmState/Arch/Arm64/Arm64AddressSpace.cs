using System.Buffers.Binary;
using VmState.Memory;

namespace VmState.Arch.Arm64;

/// <summary>
/// The EL1&amp;0 stage 1 virtual address space of an AArch64 guest: TCR_EL1 and the two table bases, TTBR0_EL1 for the
/// lower half (addresses with bit 55 clear) and TTBR1_EL1 for the upper half (Arm ARM D8 "The AArch64 Virtual Memory
/// System Architecture"). Supported: the 4 KiB granule, 25- to 48-bit virtual addresses (4 levels at 40–48 bits,
/// 3 at 31–39), 1 GiB and 2 MiB blocks, top-byte-ignore. The 16 KiB and 64 KiB granules and 52-bit addresses
/// (FEAT_LPA2, TCR_EL1.DS) are refused with <see cref="NotSupportedException"/>.
/// </summary>
public sealed class Arm64AddressSpace : IPageTranslator
{
    // Output address bits 47:12 of a table or page descriptor (48-bit PA; LPA2 is refused).
    private const ulong OutputMask = 0x0000_FFFF_FFFF_F000UL;
    private const int MaxVaBits = 48;
    private const int MinVaBits = 25;

    /// <summary>Creates the address space from TCR_EL1 and the two table bases.</summary>
    /// <exception cref="NotSupportedException">TCR_EL1 selects a granule other than 4 KiB, or LPA2 (DS).</exception>
    public Arm64AddressSpace(IPhysicalMemory memory, ulong tcr, ulong ttbr0, ulong ttbr1)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Memory = memory;
        Tcr = tcr;
        Ttbr0 = ttbr0;
        Ttbr1 = ttbr1;
        if ((tcr & (1UL << 59)) != 0)
        {
            throw new NotSupportedException("TCR_EL1.DS is set (52-bit addresses with FEAT_LPA2): not supported yet");
        }

        // TG0 (bits 15:14): 00 = 4 KiB, 01 = 64 KiB, 10 = 16 KiB. TG1 (bits 31:30): 10 = 4 KiB, 01 = 16 KiB, 11 = 64 KiB.
        ulong tg0 = (tcr >> 14) & 3, tg1 = (tcr >> 30) & 3;
        Lower = new Half("TTBR0_EL1", (int)(tcr & 0x3F), tg0 == 0 ? null : tg0 == 1 ? "64 KiB" : tg0 == 2 ? "16 KiB" : "reserved", (tcr & (1UL << 7)) != 0, (tcr & (1UL << 37)) != 0, ttbr0);
        Upper = new Half("TTBR1_EL1", (int)((tcr >> 16) & 0x3F), tg1 == 2 ? null : tg1 == 1 ? "16 KiB" : tg1 == 3 ? "64 KiB" : "reserved", (tcr & (1UL << 23)) != 0, (tcr & (1UL << 38)) != 0, ttbr1);
    }

    /// <summary>The physical memory the tables and pages live in.</summary>
    public IPhysicalMemory Memory { get; }

    /// <summary>TCR_EL1 as given.</summary>
    public ulong Tcr { get; }

    /// <summary>TTBR0_EL1 as given (ASID in bits 63:48).</summary>
    public ulong Ttbr0 { get; }

    /// <summary>TTBR1_EL1 as given.</summary>
    public ulong Ttbr1 { get; }

    /// <summary>Virtual address bits of the lower half (64 − T0SZ).</summary>
    public int LowerVaBits => 64 - Lower.TxSz;

    /// <summary>Virtual address bits of the upper half (64 − T1SZ).</summary>
    public int UpperVaBits => 64 - Upper.TxSz;

    private Half Lower { get; }

    private Half Upper { get; }

    /// <summary>The address space of a vCPU, from its TCR_EL1, TTBR0_EL1 and TTBR1_EL1.</summary>
    /// <exception cref="NotSupportedException">The vCPU uses a granule other than 4 KiB, or LPA2.</exception>
    public static Arm64AddressSpace Of(IPhysicalMemory memory, Arm64CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        return new Arm64AddressSpace(memory, cpu.TcrEl1, cpu.Ttbr0El1, cpu.Ttbr1El1);
    }

    /// <summary>The same TCR with another table base for the upper half (e.g. Linux's swapper_pg_dir under KPTI).</summary>
    public Arm64AddressSpace WithTtbr1(ulong ttbr1) => new(Memory, Tcr, Ttbr0, ttbr1);

    /// <summary>The same TCR with another table base for the lower half (a process's page tables).</summary>
    public Arm64AddressSpace WithTtbr0(ulong ttbr0) => new(Memory, Tcr, ttbr0, Ttbr1);

    /// <summary>Translates <paramref name="virtualAddress"/>; false when it is not mapped.</summary>
    /// <exception cref="NotSupportedException">The half it is in uses a granule other than 4 KiB or more than 48 bits.</exception>
    public bool TryTranslate(ulong virtualAddress, out ulong physicalAddress)
    {
        Arm64Translation t = Walk(virtualAddress, record: false);
        physicalAddress = t.PhysicalAddress ?? 0;
        return t.Success;
    }

    /// <summary>Translates <paramref name="virtualAddress"/>, recording the descriptor of every level.</summary>
    /// <exception cref="NotSupportedException">The half it is in uses a granule other than 4 KiB or more than 48 bits.</exception>
    public Arm64Translation Translate(ulong virtualAddress) => Walk(virtualAddress, record: true);

    /// <summary>Reads virtual memory page by page; returns the bytes read before the first unmapped or unbacked byte.</summary>
    public int Read(ulong virtualAddress, Span<byte> destination) => VirtualMemoryReader.Read(this, virtualAddress, destination);

    /// <summary>
    /// The mapped ranges between <paramref name="start"/> and <paramref name="end"/> (inclusive), in address order,
    /// adjacent descriptors with contiguous output and equal permissions merged. Both ends must lie in the same half
    /// (TTBR0_EL1 or TTBR1_EL1); only the tables that map something in the range are read.
    /// </summary>
    /// <exception cref="NotSupportedException">The half uses a granule other than 4 KiB or more than 48 bits.</exception>
    /// <exception cref="ArgumentException">The range crosses from one half into the other.</exception>
    public IEnumerable<Arm64Mapping> Mappings(ulong start, ulong end)
    {
        bool upper = ((start >> 55) & 1) != 0;
        if (upper != (((end >> 55) & 1) != 0) || end < start)
        {
            throw new ArgumentException($"0x{start:x}..0x{end:x} is not a range within one half of the address space");
        }

        Half half = upper ? Upper : Lower;
        if (half.Granule is string granule)
        {
            throw new NotSupportedException($"{half.Name} uses the {granule} granule (TCR_EL1): not supported yet (only the 4 KiB granule is)");
        }

        int vaBits = 64 - half.TxSz;
        if (vaBits > MaxVaBits)
        {
            throw new NotSupportedException($"{half.Name} covers {vaBits}-bit addresses: more than 48 bits is not supported yet");
        }

        if (vaBits < MinVaBits || half.WalksDisabled)
        {
            yield break;
        }

        // Offsets within the half: the bits below vaBits (the upper half's addresses are sign-extended).
        ulong span = 1UL << vaBits;
        ulong baseVa = upper ? ~(span - 1) : 0;
        ulong lo = upper ? Math.Max(start, baseVa) - baseVa : start & (span - 1);
        ulong hi = upper ? end - baseVa : Math.Min(end, span - 1);
        if (upper ? end < baseVa : start >= span)
        {
            yield break;
        }

        int firstLevel = 3 - ((vaBits - 12 - 1) / 9);
        Arm64Mapping? pending = null;
        foreach (Arm64Mapping m in Enumerate(firstLevel, half.Root(vaBits), 0, vaBits, false, lo, hi))
        {
            var at = m with { VirtualAddress = baseVa + m.VirtualAddress };
            if (pending is Arm64Mapping p && p.VirtualAddress + p.Size == at.VirtualAddress && p.PhysicalAddress + p.Size == at.PhysicalAddress
                && p.Writable == at.Writable && p.User == at.User && p.UserExecuteNever == at.UserExecuteNever)
            {
                pending = p with { Size = p.Size + at.Size };
                continue;
            }

            if (pending is Arm64Mapping done)
            {
                yield return done;
            }

            pending = at;
        }

        if (pending is Arm64Mapping last)
        {
            yield return last;
        }
    }

    // One table of the walk: the entries whose range meets [lo, hi] (offsets within the half), recursing into tables.
    private IEnumerable<Arm64Mapping> Enumerate(int level, ulong table, ulong prefix, int vaBits, bool uxnTable, ulong lo, ulong hi)
    {
        int shift = 12 + (9 * (3 - level));
        int bits = Math.Min(9, vaBits - shift);
        ulong entrySize = 1UL << shift;
        byte[] raw = new byte[8 << bits];
        if (Memory.Read(table, raw) != raw.Length)
        {
            yield break;
        }

        ulong first = lo > prefix ? (lo - prefix) >> shift : 0;
        ulong lastIndex = Math.Min((1UL << bits) - 1, (hi - prefix) >> shift);
        for (ulong i = first; i <= lastIndex; i++)
        {
            ulong desc = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan((int)(i * 8)));
            var entry = new Arm64PagingEntry(level, table + (i * 8), desc);
            ulong va = prefix + (i * entrySize);
            if (!entry.Valid)
            {
                continue;
            }

            if (entry.IsTable)
            {
                foreach (Arm64Mapping m in Enumerate(level + 1, desc & OutputMask, va, vaBits, uxnTable || entry.UserExecuteNever, Math.Max(lo, va), Math.Min(hi, va + entrySize - 1)))
                {
                    yield return m;
                }

                continue;
            }

            if (entry.IsPage || (entry.IsBlock && level is 1 or 2))
            {
                yield return new Arm64Mapping(va, desc & OutputMask & ~(entrySize - 1), entrySize, !entry.ReadOnly, entry.User, uxnTable || entry.UserExecuteNever);
            }
        }
    }

    private Arm64Translation Walk(ulong va, bool record)
    {
        bool upper = ((va >> 55) & 1) != 0;
        Half half = upper ? Upper : Lower;
        if (half.Granule is string granule)
        {
            throw new NotSupportedException($"{half.Name} uses the {granule} granule (TCR_EL1): not supported yet (only the 4 KiB granule is)");
        }

        int vaBits = 64 - half.TxSz;
        if (vaBits > MaxVaBits)
        {
            throw new NotSupportedException($"{half.Name} covers {vaBits}-bit addresses (T{(upper ? 1 : 0)}SZ = {half.TxSz}): more than 48 bits is not supported yet");
        }

        var entries = record ? new List<Arm64PagingEntry>(4) : null;
        ulong root = half.Root(vaBits);
        if (vaBits < MinVaBits)
        {
            return Fail(va, half, root, entries, $"T{(upper ? 1 : 0)}SZ = {half.TxSz} gives {vaBits}-bit addresses (fewer than {MinVaBits})");
        }

        // The address bits above the range must all equal bit 55 (bits 63:56 are exempt with top-byte-ignore).
        int top = half.TopByteIgnored ? 56 : 64;
        ulong expected = upper ? ulong.MaxValue : 0;
        ulong rangeMask = (top == 64 ? ulong.MaxValue : (1UL << top) - 1) & ~((1UL << vaBits) - 1);
        if ((va & rangeMask) != (expected & rangeMask))
        {
            return Fail(va, half, root, entries, $"0x{va:x16} is outside the {vaBits}-bit range of {half.Name}");
        }

        if (half.WalksDisabled)
        {
            return Fail(va, half, root, entries, $"walks through {half.Name} are disabled (TCR_EL1.EPD{(upper ? 1 : 0)})");
        }

        // 4 KiB granule: 9 bits per level above the 12-bit page offset; the first level resolves what is left.
        int level = 3 - ((vaBits - 12 - 1) / 9);
        ulong table = root;
        Span<byte> buf = stackalloc byte[8];
        for (; level <= 3; level++)
        {
            int shift = 12 + (9 * (3 - level));
            int bits = Math.Min(9, vaBits - shift);
            ulong index = (va >> shift) & ((1UL << bits) - 1);
            ulong address = table + (index * 8);
            ulong desc = Memory.Read(address, buf) == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(buf) : 0;
            var entry = new Arm64PagingEntry(level, address, desc);
            entries?.Add(entry);
            if (!entry.Valid)
            {
                return Fail(va, half, root, entries, $"level {level} descriptor invalid");
            }

            if (entry.IsTable)
            {
                table = desc & OutputMask;
                continue;
            }

            if (entry.IsPage)
            {
                return new Arm64Translation(va, half.Name, root, (IReadOnlyList<Arm64PagingEntry>?)entries ?? [], (desc & OutputMask) | (va & 0xFFF), 0x1000, null);
            }

            if (entry.IsBlock && level is 1 or 2)
            {
                ulong size = 1UL << shift;
                ulong pa = (desc & OutputMask & ~(size - 1)) | (va & (size - 1));
                return new Arm64Translation(va, half.Name, root, (IReadOnlyList<Arm64PagingEntry>?)entries ?? [], pa, size, null);
            }

            return Fail(va, half, root, entries, $"level {level} descriptor is a block where the 4 KiB granule allows none");
        }

        return Fail(va, half, root, entries, "no page at level 3");
    }

    private static Arm64Translation Fail(ulong va, Half half, ulong root, List<Arm64PagingEntry>? entries, string why) =>
        new(va, half.Name, root, (IReadOnlyList<Arm64PagingEntry>?)entries ?? [], null, 0, why);

    private sealed record Half(string Name, int TxSz, string? Granule, bool WalksDisabled, bool TopByteIgnored, ulong Ttbr)
    {
        // BADDR: bits 47:1 of TTBRn_EL1, aligned to the size of the first-level table (at least 64 bytes).
        public ulong Root(int vaBits)
        {
            int levels = ((Math.Clamp(vaBits, MinVaBits, MaxVaBits) - 12 - 1) / 9) + 1;
            int firstBits = vaBits - 12 - (9 * (levels - 1));
            ulong tableBytes = Math.Max(64UL, 8UL << Math.Clamp(firstBits, 0, 9));
            return Ttbr & 0x0000_FFFF_FFFF_FFFEUL & ~(tableBytes - 1);
        }
    }
}
