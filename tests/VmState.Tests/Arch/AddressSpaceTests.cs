using VmState.Arch.X86;
using VmState.Tests.Support;

namespace VmState.Tests.Arch;

/// <summary>
/// Property tests on synthetic page tables: for random sets of mappings in every paging mode, every mapped address
/// reads back what was written at its physical address, unmapped addresses fail naming the level, and the
/// enumeration returns exactly the mappings made.
/// </summary>
public class AddressSpaceTests
{
    public static TheoryData<PagingMode, int> Cases()
    {
        var d = new TheoryData<PagingMode, int>();
        foreach (PagingMode m in new[] { PagingMode.Bits32, PagingMode.Pae, PagingMode.Level4, PagingMode.Level5 })
        {
            for (int seed = 1; seed <= 5; seed++)
            {
                d.Add(m, seed);
            }
        }

        return d;
    }

    private static ulong[] PageSizes(PagingMode m) => m switch
    {
        PagingMode.Bits32 => [0x1000, 0x400000],
        PagingMode.Pae => [0x1000, 0x200000],
        _ => [0x1000, 0x200000, 0x40000000],
    };

    private static ulong RandomVa(Random r, PagingMode m, ulong size)
    {
        ulong va = m switch
        {
            PagingMode.Bits32 or PagingMode.Pae => (ulong)r.NextInt64(0, 1L << 32),
            PagingMode.Level4 => (ulong)r.NextInt64(0, 1L << 48),
            _ => (ulong)r.NextInt64(0, 1L << 57),
        };
        va &= ~(size - 1);
        int bits = m switch { PagingMode.Level4 => 48, PagingMode.Level5 => 57, _ => 64 };
        if (bits < 64)
        {
            va = (ulong)((long)(va << (64 - bits)) >> (64 - bits));
        }

        return va;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MappedAddressesReadBackAndUnmappedOnesFail(PagingMode mode, int seed)
    {
        var r = new Random(seed);
        var pt = new PageTableBuilder(mode);
        var made = new List<(ulong Va, ulong Pa, ulong Size)>();
        ulong nextPa = 1UL << 31;
        for (int i = 0; i < 60; i++)
        {
            ulong[] sizes = PageSizes(mode);
            ulong size = sizes[r.Next(sizes.Length)];
            ulong va = RandomVa(r, mode, size);
            if (made.Any(x => va < x.Va + x.Size && x.Va < va + size) || made.Any(x => (x.Va >> 30) == (va >> 30) && (x.Size == 0x40000000 || size == 0x40000000))
                || made.Any(x => (x.Va >> 21) == (va >> 21) && (x.Size != size)) || made.Any(x => (x.Va >> 22) == (va >> 22) && mode == PagingMode.Bits32 && x.Size != size))
            {
                continue;
            }

            nextPa = (nextPa + size - 1) & ~(size - 1);
            pt.Map(va, nextPa, size);
            made.Add((va, nextPa, size));
            nextPa += size;
        }

        var space = new AddressSpace(pt, mode, mode == PagingMode.Pae ? pt.Root : pt.Root | 0x18);
        foreach ((ulong va, ulong pa, ulong size) in made)
        {
            ulong offset = (ulong)r.NextInt64(0, (long)size - 8) & ~7UL;
            byte[] value = BitConverter.GetBytes(va ^ 0x5A5A5A5A5A5A5A5AUL);
            pt.WritePhysical(pa + offset, value);
            Translation t = space.Translate(va + offset);
            Assert.True(t.Success, $"{mode} VA 0x{va + offset:x}: {t.Failure}");
            Assert.Equal(pa + offset, t.PhysicalAddress);
            Assert.Equal(size, t.PageSize);
            byte[] back = new byte[8];
            Assert.Equal(8, space.Read(va + offset, back));
            Assert.Equal(value, back);
            Assert.True(space.TryTranslate(va + offset, out ulong cached));
            Assert.Equal(pa + offset, cached);
        }

        for (int i = 0; i < 200; i++)
        {
            ulong va = RandomVa(r, mode, 0x1000);
            if (made.Any(x => va >= x.Va && va < x.Va + x.Size))
            {
                continue;
            }

            Translation t = space.Translate(va);
            Assert.False(t.Success);
            Assert.Matches("(PML5E|PML4E|PDPTE|PDE|PTE) not present", t.Failure);
            Assert.Equal(t.Entries[^1].Level + " not present", t.Failure);
            Assert.False(t.Entries[^1].Present);
        }

        var enumerated = space.Mappings().ToList();
        ulong total = 0;
        foreach (VirtualMapping m in enumerated)
        {
            total += m.Size;
            Assert.True(space.TryTranslate(m.VirtualAddress, out ulong pa));
            Assert.Equal(m.PhysicalAddress, pa);
        }

        Assert.Equal(made.Aggregate(0UL, (s, x) => s + x.Size), total);

        // A window enumerates exactly the mappings that overlap it (the page-table subtrees outside are skipped).
        foreach ((ulong va, _, ulong size) in made.Take(10))
        {
            ulong lo = va + (size / 4);
            ulong hi = va + size + (ulong)r.NextInt64(0, 1L << 24);
            if (hi < lo || (mode is PagingMode.Level4 or PagingMode.Level5 && (long)lo < 0 != (long)hi < 0))
            {
                continue; // wrapped past the top or across the non-canonical hole
            }

            var window = space.Mappings(lo, hi).ToList();
            var expected = enumerated.Where(m => m.VirtualAddress <= hi && m.VirtualAddress + m.Size - 1 >= lo).ToList();
            Assert.Equal(Pages(expected, lo, hi), Pages(window, lo, hi));
            Assert.Contains(window, m => m.VirtualAddress <= lo && lo < m.VirtualAddress + m.Size);
        }
    }

    /// <summary>The (VA, PA) of each 4 KiB page of <paramref name="runs"/> inside [lo, hi].</summary>
    private static List<(ulong, ulong)> Pages(IEnumerable<VirtualMapping> runs, ulong lo, ulong hi)
    {
        var pages = new List<(ulong, ulong)>();
        foreach (VirtualMapping m in runs)
        {
            ulong from = Math.Max(m.VirtualAddress, lo & ~0xFFFUL);
            ulong to = Math.Min(m.VirtualAddress + m.Size - 1, hi);
            for (ulong va = from; va <= to && va >= from; va += 0x1000)
            {
                pages.Add((va, m.PhysicalAddress + (va - m.VirtualAddress)));
                if (pages.Count > 1 << 20)
                {
                    throw new InvalidOperationException("window too large for a page list");
                }
            }
        }

        return pages;
    }

    [Fact]
    public void NonCanonicalAddressesFailWithoutAWalk()
    {
        var pt = new PageTableBuilder(PagingMode.Level4);
        var space = new AddressSpace(pt, PagingMode.Level4, pt.Root);
        Translation t = space.Translate(0x0000_8000_0000_0000);
        Assert.False(t.Success);
        Assert.Contains("non-canonical", t.Failure);
    }

    [Fact]
    public void PcidBitsInCr3AreIgnoredAndNxIsReported()
    {
        var pt = new PageTableBuilder(PagingMode.Level4);
        pt.Map(0xffff_8880_0000_0000, 0x200000, 0x200000, writable: true, user: false, nx: true);
        var space = new AddressSpace(pt, PagingMode.Level4, pt.Root | 0x8000_0000_0000_0001);
        Translation t = space.Translate(0xffff_8880_0000_1234);
        Assert.True(t.Success);
        Assert.Equal(0x201234UL, t.PhysicalAddress);
        Assert.True(t.NoExecute);
        Assert.False(t.User);
        Assert.Equal(["PML4E", "PDPTE", "PDE"], t.Entries.Select(e => e.Level));
    }

    [Fact]
    public void SelfReferencingTablesDoNotHangOrCrash()
    {
        var pt = new PageTableBuilder(PagingMode.Pae);
        // PDPTE 0 points at the page holding the PDPT itself; its entries are then read as PDEs.
        pt.WritePhysical(pt.Root, BitConverter.GetBytes((pt.Root & ~0xFFFUL) | 1));
        var space = new AddressSpace(pt, PagingMode.Pae, pt.Root);
        _ = space.Translate(0x1000);
        _ = space.Mappings().Take(10_000).ToList();
    }
}
