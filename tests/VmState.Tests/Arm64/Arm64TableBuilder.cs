using System.Buffers.Binary;
using VmState.Memory;

namespace VmState.Tests.Arm64;

/// <summary>
/// Builds AArch64 stage 1 translation tables (4 KiB granule) in a sparse synthetic physical memory: pages, 2 MiB and
/// 1 GiB blocks for either half, with 3 or 4 levels; tables are allocated from a bump allocator.
/// </summary>
internal sealed class Arm64TableBuilder : IPhysicalMemory
{
    // AF | SH inner | AttrIndx 0: a normal page; AP[2:1] and XN bits as asked.
    private const ulong LeafAttributes = (1UL << 10) | (3UL << 8);
    private readonly Dictionary<ulong, byte[]> _pages = new();
    private ulong _nextTable = 0x4000_0000UL;

    public Arm64TableBuilder(int vaBits)
    {
        VaBits = vaBits;
        Ttbr0 = NewTable() | 0x0001_0000_0000_0000UL; // ASID 1 in bits 63:48
        Ttbr1 = NewTable() | 1;                          // CnP
    }

    public int VaBits { get; }

    public ulong Ttbr0 { get; }

    public ulong Ttbr1 { get; }

    /// <summary>TCR_EL1 for 4 KiB granules in both halves (TG0 = 0, TG1 = 2), T0SZ = T1SZ = 64 − VaBits.</summary>
    public ulong Tcr => (uint)(64 - VaBits) | ((ulong)(uint)(64 - VaBits) << 16) | (2UL << 30);

    public string Name => "arm64 tables";

    public IReadOnlyList<MemoryRange> Ranges => [new MemoryRange(0, 1UL << 48, "all")];

    public int FirstLevel => 3 - ((VaBits - 12 - 1) / 9);

    /// <summary>Maps <paramref name="va"/> (aligned to <paramref name="size"/>) to <paramref name="pa"/>.</summary>
    public void Map(ulong va, ulong pa, ulong size, bool user = false, bool readOnly = false)
    {
        bool upper = ((va >> 55) & 1) != 0;
        ulong table = (upper ? Ttbr1 : Ttbr0) & 0x0000_FFFF_FFFF_F000UL;
        int leafLevel = size switch { 0x1000 => 3, 0x20_0000 => 2, 0x4000_0000 => 1, _ => throw new ArgumentOutOfRangeException(nameof(size)) };
        for (int level = FirstLevel; ; level++)
        {
            int shift = 12 + (9 * (3 - level));
            int bits = Math.Min(9, VaBits - shift);
            ulong slot = table + (((va >> shift) & ((1UL << bits) - 1)) * 8);
            if (level == leafLevel)
            {
                ulong desc = pa | LeafAttributes | (user ? 1UL << 6 : 0) | (readOnly ? 1UL << 7 : 0) | (level == 3 ? 3UL : 1UL);
                WriteU64(slot, desc);
                return;
            }

            ulong existing = ReadU64(slot);
            if ((existing & 3) != 3)
            {
                existing = NewTable() | 3;
                WriteU64(slot, existing);
            }

            table = existing & 0x0000_FFFF_FFFF_F000UL;
        }
    }

    public void WriteU64(ulong address, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Page(address).AsSpan((int)(address & 0xFFF)), value);

    public ulong ReadU64(ulong address) => _pages.TryGetValue(address & ~0xFFFUL, out byte[]? p) ? BinaryPrimitives.ReadUInt64LittleEndian(p.AsSpan((int)(address & 0xFFF))) : 0;

    public void WriteBytes(ulong address, ReadOnlySpan<byte> bytes)
    {
        for (int i = 0; i < bytes.Length; i++)
        {
            ulong a = address + (ulong)i;
            Page(a)[a & 0xFFF] = bytes[i];
        }
    }

    public int Read(ulong address, Span<byte> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            ulong a = address + (ulong)i;
            destination[i] = _pages.TryGetValue(a & ~0xFFFUL, out byte[]? p) ? p[a & 0xFFF] : (byte)0;
        }

        return destination.Length;
    }

    private ulong NewTable()
    {
        ulong t = _nextTable;
        _nextTable += 0x1000;
        Page(t);
        return t;
    }

    private byte[] Page(ulong address)
    {
        ulong key = address & ~0xFFFUL;
        if (!_pages.TryGetValue(key, out byte[]? p))
        {
            p = new byte[0x1000];
            _pages[key] = p;
        }

        return p;
    }
}
