using VmState.Arch.Arm64;

namespace VmState.Tests.Arm64;

/// <summary>
/// The AArch64 stage 1 walker on synthetic tables: random pages and blocks in both halves with 3 and 4 levels read
/// back where they were mapped, unmapped and out-of-range addresses fail naming why, and granules or address sizes
/// the walker does not handle are refused as not supported.
/// </summary>
public class Arm64AddressSpaceTests
{
    public static TheoryData<int, int> Cases()
    {
        var d = new TheoryData<int, int>();
        foreach (int bits in new[] { 39, 48 })
        {
            for (int seed = 1; seed <= 4; seed++)
            {
                d.Add(bits, seed);
            }
        }

        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Mapped_pages_and_blocks_translate_and_read_back(int vaBits, int seed)
    {
        var r = new Random(seed);
        var t = new Arm64TableBuilder(vaBits);
        var made = new List<(ulong Va, ulong Pa, ulong Size)>();
        var usedSlots = new HashSet<ulong>();
        ulong nextPa = 0x1_0000_0000UL;
        ulong[] sizes = [0x1000, 0x20_0000, 0x4000_0000];
        for (int i = 0; i < 40; i++)
        {
            ulong size = sizes[r.Next(sizes.Length)];
            bool upper = r.Next(2) == 0;
            ulong va = (ulong)r.NextInt64(0, 1L << vaBits) & ~(size - 1) & ~(0x4000_0000UL - 1);
            va |= (ulong)r.NextInt64(0, 0x4000_0000) & ~(size - 1);
            if (upper)
            {
                va |= ~((1UL << vaBits) - 1);
            }

            // One mapping per 1 GiB region keeps pages, 2 MiB and 1 GiB blocks from overlapping.
            if (!usedSlots.Add(va >> 30 << 1 | (upper ? 1UL : 0)))
            {
                continue;
            }

            ulong pa = (nextPa + size - 1) & ~(size - 1);
            nextPa = pa + size;
            t.Map(va, pa, size, user: !upper, readOnly: (i & 1) == 0);
            made.Add((va, pa, size));
        }

        var space = new Arm64AddressSpace(t, t.Tcr, t.Ttbr0, t.Ttbr1);
        Span<byte> got = stackalloc byte[8];
        Assert.Equal(vaBits, space.LowerVaBits);
        Assert.Equal(vaBits, space.UpperVaBits);
        foreach ((ulong va, ulong pa, ulong size) in made)
        {
            ulong offset = (ulong)r.NextInt64(0, (long)size) & ~7UL;
            ulong marker = va ^ 0x5A5A_0000_0000_0000UL;
            t.WriteU64(pa + offset, marker);
            Arm64Translation tr = space.Translate(va + offset);
            Assert.True(tr.Success, tr.Failure);
            Assert.Equal(pa + offset, tr.PhysicalAddress);
            Assert.Equal(size, tr.PageSize);
            Assert.Equal(((va >> 55) & 1) != 0 ? "TTBR1_EL1" : "TTBR0_EL1", tr.TableBase);
            int levels = (size == 0x1000 ? 3 : size == 0x20_0000 ? 2 : 1) - t.FirstLevel + 1;
            Assert.Equal(levels, tr.Entries.Count);
            Assert.Equal(t.FirstLevel, tr.Entries[0].Level);
            Assert.Equal(((va >> 55) & 1) == 0, tr.User);
            Assert.Equal(8, space.Read(va + offset, got));
            Assert.Equal(marker, BitConverter.ToUInt64(got));
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Mappings_list_what_was_mapped_in_each_half(int vaBits, int seed)
    {
        var r = new Random(seed);
        var t = new Arm64TableBuilder(vaBits);
        var made = new List<(ulong Va, ulong Pa, ulong Size)>();
        var usedSlots = new HashSet<ulong>();
        ulong nextPa = 0x1_0000_0000UL;
        ulong[] sizes = [0x1000, 0x20_0000, 0x4000_0000];
        for (int i = 0; i < 40; i++)
        {
            ulong size = sizes[r.Next(sizes.Length)];
            bool upper = r.Next(2) == 0;
            ulong va = ((ulong)r.NextInt64(0, 1L << vaBits) & ~(0x4000_0000UL - 1)) | ((ulong)r.NextInt64(0, 0x4000_0000) & ~(size - 1));
            if (upper)
            {
                va |= ~((1UL << vaBits) - 1);
            }

            if (!usedSlots.Add(va >> 30 << 1 | (upper ? 1UL : 0)))
            {
                continue;
            }

            // Every other mapping gets a gap in physical memory, so runs only merge where both sides are contiguous.
            ulong pa = ((nextPa + size - 1) & ~(size - 1)) + (i % 2 == 0 ? 0 : 0x4000_0000UL);
            nextPa = pa + size;
            t.Map(va, pa, size, user: !upper, readOnly: false);
            made.Add((va, pa, size));
        }

        var space = new Arm64AddressSpace(t, t.Tcr, t.Ttbr0, t.Ttbr1);
        ulong upperStart = ~((1UL << vaBits) - 1);
        List<Arm64Mapping> lower = [.. space.Mappings(0, (1UL << 55) - 1)];
        List<Arm64Mapping> upperHalf = [.. space.Mappings(upperStart, ulong.MaxValue)];
        foreach ((List<Arm64Mapping> got, bool isUpper) in new[] { (lower, false), (upperHalf, true) })
        {
            var want = made.Where(m => ((m.Va >> 55) & 1) == (isUpper ? 1UL : 0)).ToList();
            Assert.Equal(want.Sum(m => (decimal)m.Size), got.Sum(m => (decimal)m.Size));
            Assert.True(got.Zip(got.Skip(1)).All(p => p.First.VirtualAddress + p.First.Size <= p.Second.VirtualAddress), "ranges are not in address order");
            foreach ((ulong va, ulong pa, ulong size) in want)
            {
                Arm64Mapping m = Assert.Single(got, g => va >= g.VirtualAddress && va + size <= g.VirtualAddress + g.Size);
                Assert.Equal(pa, m.PhysicalAddress + (va - m.VirtualAddress));
                Assert.Equal(!isUpper, m.User);
            }
        }

        // A sub-range lists only what meets it, cut to whole descriptors.
        (ulong fva, ulong fpa, ulong fsize) = made.First(m => ((m.Va >> 55) & 1) == 0);
        Arm64Mapping only = Assert.Single(space.Mappings(fva, fva + fsize - 1), m => m.VirtualAddress <= fva && m.VirtualAddress + m.Size >= fva + fsize);
        Assert.Equal(fpa, only.PhysicalAddress + (fva - only.VirtualAddress));
        Assert.Throws<ArgumentException>(() => space.Mappings(0, ulong.MaxValue).ToList());
    }

    [Fact]
    public void Unmapped_addresses_fail_naming_the_level()
    {
        var t = new Arm64TableBuilder(48);
        t.Map(0xffff_8000_1000_0000UL, 0x8000_0000UL, 0x1000);
        var space = new Arm64AddressSpace(t, t.Tcr, t.Ttbr0, t.Ttbr1);
        Arm64Translation miss = space.Translate(0xffff_8000_1000_1000UL);
        Assert.False(miss.Success);
        Assert.Equal("level 3 descriptor invalid", miss.Failure);
        Assert.Equal(4, miss.Entries.Count);
        Arm64Translation low = space.Translate(0x1000);
        Assert.Equal("level 0 descriptor invalid", low.Failure);
        Assert.Single(low.Entries);
    }

    [Fact]
    public void Addresses_outside_both_ranges_fail_and_top_byte_is_ignored_when_tbi_is_set()
    {
        var t = new Arm64TableBuilder(39);
        t.Map(0x40_0000, 0x9000_0000UL, 0x20_0000, user: true);
        var space = new Arm64AddressSpace(t, t.Tcr, t.Ttbr0, t.Ttbr1);
        Arm64Translation outside = space.Translate(0x0040_0000_0040_0000UL);
        Assert.False(outside.Success);
        Assert.Contains("outside the 39-bit range of TTBR0_EL1", outside.Failure, StringComparison.Ordinal);
        Assert.False(space.TryTranslate(0x1200_0000_0040_0000UL, out _));

        // TCR_EL1.TBI0 (bit 37): a tagged user pointer translates like the untagged one.
        var tbi = new Arm64AddressSpace(t, t.Tcr | (1UL << 37), t.Ttbr0, t.Ttbr1);
        Assert.True(tbi.TryTranslate(0x1200_0000_0040_1234UL, out ulong pa));
        Assert.Equal(0x9000_1234UL, pa);
    }

    [Fact]
    public void Disabled_walks_fail()
    {
        var t = new Arm64TableBuilder(48);
        t.Map(0x1000, 0x8000_0000UL, 0x1000);
        var space = new Arm64AddressSpace(t, t.Tcr | (1UL << 7), t.Ttbr0, t.Ttbr1);
        Arm64Translation tr = space.Translate(0x1000);
        Assert.False(tr.Success);
        Assert.Contains("EPD0", tr.Failure, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1UL << 14, 0x1000UL, "64 KiB")]                       // TG0 = 01
    [InlineData(2UL << 14, 0x1000UL, "16 KiB")]                       // TG0 = 10
    [InlineData((1UL << 30) ^ (2UL << 30), 0xffff_0000_0000_1000UL, "16 KiB")]   // TG1 = 01
    [InlineData((3UL << 30) ^ (2UL << 30), 0xffff_0000_0000_1000UL, "64 KiB")]   // TG1 = 11
    public void Other_granules_are_not_supported_yet(ulong tcrXor, ulong va, string granule)
    {
        var t = new Arm64TableBuilder(48);
        var space = new Arm64AddressSpace(t, t.Tcr ^ tcrXor, t.Ttbr0, t.Ttbr1);
        NotSupportedException e = Assert.Throws<NotSupportedException>(() => space.Translate(va));
        Assert.Contains(granule, e.Message, StringComparison.Ordinal);
        Assert.Contains("not supported yet", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Lpa2_and_52_bit_addresses_are_not_supported_yet()
    {
        var t = new Arm64TableBuilder(48);
        NotSupportedException ds = Assert.Throws<NotSupportedException>(() => new Arm64AddressSpace(t, t.Tcr | (1UL << 59), t.Ttbr0, t.Ttbr1));
        Assert.Contains("LPA2", ds.Message, StringComparison.Ordinal);
        ulong tcr52 = (t.Tcr & ~0x3F_003FUL) | 12 | (12UL << 16);
        var space = new Arm64AddressSpace(t, tcr52, t.Ttbr0, t.Ttbr1);
        NotSupportedException big = Assert.Throws<NotSupportedException>(() => space.Translate(0x1000));
        Assert.Contains("52-bit", big.Message, StringComparison.Ordinal);
    }
}
