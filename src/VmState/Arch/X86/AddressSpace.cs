using System.Buffers.Binary;
using VmState.Memory;

namespace VmState.Arch.X86;

/// <summary>
/// A virtual address space of an x86 guest: physical memory, a paging mode and a root (CR3). Translates with the
/// paging levels described as data (Intel SDM vol. 3A §4.3–4.5), caches page-table pages and translations, and
/// enumerates every mapping. Call <see cref="Invalidate"/> when the guest may have changed its page tables.
/// </summary>
public sealed class AddressSpace : IPageTranslator
{
    private const ulong PhysMask = 0x000F_FFFF_FFFF_F000UL;
    private const int MaxCachedTables = 4096;
    private const int MaxCachedTranslations = 1 << 16;
    private const int SmallCache = 256;
    private static readonly int[] s_largeShifts = [21, 30, 22];

    private readonly Level[] _levels;
    private Dictionary<ulong, ulong[]> _tables = new();
    private Dictionary<ulong, (ulong Base, ulong Size)> _tlb = new();

    // Page-table pages read once entry by entry; a table is read and cached whole on its second use (one walk to
    // a cold address then reads 8 bytes per level, not 4 KiB).
    private HashSet<ulong> _touchedTables = new();

    // Large pages are cached once per large page (va >> 21, va >> 22 or va >> 30), not once per 4 KiB page in them:
    // the direct map and the kernel image are mostly 2 MiB and 1 GiB pages.
    private Dictionary<ulong, ulong> _largeTlb = new();

    /// <summary>Creates the address space.</summary>
    public AddressSpace(IPhysicalMemory memory, PagingMode mode, ulong cr3, bool pse = true)
    {
        Memory = memory;
        Mode = mode;
        Cr3 = cr3;
        _levels = mode switch
        {
            PagingMode.Level5 => [new("PML5E", 48, 9, 8, false), new("PML4E", 39, 9, 8, false), new("PDPTE", 30, 9, 8, true), new("PDE", 21, 9, 8, true), new("PTE", 12, 9, 8, false)],
            PagingMode.Level4 => [new("PML4E", 39, 9, 8, false), new("PDPTE", 30, 9, 8, true), new("PDE", 21, 9, 8, true), new("PTE", 12, 9, 8, false)],
            PagingMode.Pae => [new("PDPTE", 30, 2, 8, false), new("PDE", 21, 9, 8, true), new("PTE", 12, 9, 8, false)],
            PagingMode.Bits32 => [new("PDE", 22, 10, 4, pse), new("PTE", 12, 10, 4, false)],
            _ => [],
        };
        Root = mode switch
        {
            PagingMode.Level4 or PagingMode.Level5 => cr3 & PhysMask,
            PagingMode.Pae => cr3 & 0xFFFF_FFE0UL,
            _ => cr3 & 0xFFFF_F000UL,
        };
    }

    /// <summary>The physical memory the page tables and pages live in.</summary>
    public IPhysicalMemory Memory { get; }

    /// <summary>The paging mode.</summary>
    public PagingMode Mode { get; }

    /// <summary>CR3 as given (PCID and flag bits included).</summary>
    public ulong Cr3 { get; }

    /// <summary>Physical address of the top-level table.</summary>
    public ulong Root { get; }

    /// <summary>The paging mode a vCPU is in, from CR0.PG, CR4.PAE/LA57 and EFER.LMA.</summary>
    public static PagingMode ModeOf(X86CpuState cpu)
    {
        if ((cpu.Cr0 & (1UL << 31)) == 0)
        {
            return PagingMode.None;
        }

        if (cpu.LongMode)
        {
            return (cpu.Cr4 & (1UL << 12)) != 0 ? PagingMode.Level5 : PagingMode.Level4;
        }

        return (cpu.Cr4 & (1UL << 5)) != 0 ? PagingMode.Pae : PagingMode.Bits32;
    }

    /// <summary>The address space a vCPU is using.</summary>
    public static AddressSpace Of(IPhysicalMemory memory, X86CpuState cpu) =>
        new(memory, ModeOf(cpu), cpu.Cr3, (cpu.Cr4 & (1UL << 4)) != 0);

    /// <summary>Forgets cached page-table pages and translations.</summary>
    public void Invalidate()
    {
        // Clear() costs the capacity, not the count: a cache that grew large is replaced instead, so frequent
        // invalidation (live guests) stays cheap.
        _tables = Reset(_tables);
        _tlb = Reset(_tlb);
        _largeTlb = Reset(_largeTlb);
        if (_touchedTables.Count > SmallCache)
        {
            _touchedTables = new();
        }
        else
        {
            _touchedTables.Clear();
        }
    }

    private static Dictionary<TKey, TValue> Reset<TKey, TValue>(Dictionary<TKey, TValue> cache)
        where TKey : notnull
    {
        if (cache.EnsureCapacity(0) > SmallCache)
        {
            return new Dictionary<TKey, TValue>();
        }

        cache.Clear();
        return cache;
    }

    /// <summary>Translates <paramref name="virtualAddress"/> (cached, allocation-free when cached).</summary>
    public bool TryTranslate(ulong virtualAddress, out ulong physicalAddress)
    {
        if (Mode == PagingMode.None)
        {
            physicalAddress = virtualAddress;
            return true;
        }

        ulong page = virtualAddress >> 12;
        if (_tlb.TryGetValue(page, out (ulong Base, ulong Size) hit))
        {
            physicalAddress = hit.Base + (virtualAddress & 0xFFF);
            return true;
        }

        if (_largeTlb.Count != 0)
        {
            // Key: the large-page number tagged with its shift (21, 22 or 30) in the top byte.
            foreach (int shift in s_largeShifts)
            {
                if (_largeTlb.TryGetValue(((ulong)shift << 56) | (virtualAddress >> shift), out ulong largeBase))
                {
                    physicalAddress = largeBase + (virtualAddress & ((1UL << shift) - 1));
                    if (_tlb.Count < MaxCachedTranslations)
                    {
                        // Promote while there is room; never evict for a page the large-page cache already covers.
                        _tlb[page] = (physicalAddress & ~0xFFFUL, 0x1000);
                    }

                    return true;
                }
            }
        }

        Translation t = Walk(virtualAddress, recordEntries: false);
        if (t.PhysicalAddress is ulong pa)
        {
            if (t.PageSize > 0x1000)
            {
                int shift = System.Numerics.BitOperations.TrailingZeroCount(t.PageSize);
                if (_largeTlb.Count >= MaxCachedTranslations)
                {
                    _largeTlb.Clear();
                }

                _largeTlb[((ulong)shift << 56) | (virtualAddress >> shift)] = pa & ~(t.PageSize - 1);
            }

            CachePage(page, pa);
            physicalAddress = pa;
            return true;
        }

        physicalAddress = 0;
        return false;
    }

    /// <summary>Caches the 4 KiB page translation (hot pages then cost one lookup, whatever their page size).</summary>
    private void CachePage(ulong page, ulong physicalAddress)
    {
        if (_tlb.Count >= MaxCachedTranslations)
        {
            _tlb.Clear();
        }

        _tlb[page] = (physicalAddress & ~0xFFFUL, 0x1000);
    }

    /// <summary>Translates with the entry at every level reported.</summary>
    public Translation Translate(ulong virtualAddress) => Walk(virtualAddress, recordEntries: true);

    /// <summary>Reads virtual memory; returns the bytes read before the first unmapped or unbacked byte.</summary>
    public int Read(ulong virtualAddress, Span<byte> destination) => VirtualMemoryReader.Read(this, virtualAddress, destination);

    /// <summary>
    /// Writes <paramref name="source"/> at virtual address <paramref name="virtualAddress"/>: each page is translated
    /// through this address space and written to <paramref name="memory"/> (the physical memory behind it that can be
    /// written, e.g. a live VM's from <c>Vm.TryGet&lt;IWritableMemory&gt;</c>). As a debugger does, a page's
    /// write-protect bit does not stop the write. Translations cached before the write are kept: after writing page
    /// tables, call <see cref="Invalidate"/>.
    /// </summary>
    /// <returns>The bytes written before the first unmapped or unbacked byte.</returns>
    public int Write(ulong virtualAddress, ReadOnlySpan<byte> source, IWritableMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        int done = 0;
        while (done < source.Length)
        {
            ulong va = virtualAddress + (ulong)done;
            if (!TryTranslate(va, out ulong pa))
            {
                break;
            }

            int n = (int)Math.Min((ulong)(source.Length - done), 0x1000 - (va & 0xFFF));
            int put = memory.Write(pa, source.Slice(done, n));
            done += put;
            if (put < n)
            {
                break;
            }
        }

        return done;
    }

    /// <summary>Every mapping of the address space, merged into runs, in virtual address order.</summary>
    public IEnumerable<VirtualMapping> Mappings() => Mappings(0, ulong.MaxValue);

    /// <summary>
    /// The mappings that overlap [<paramref name="start"/>, <paramref name="end"/>] (inclusive, canonical addresses),
    /// merged into runs, in virtual address order; subtrees of the page tables outside the range are not read, so a
    /// small window of a large, sparse address space costs only the tables that map it. Runs are not clipped.
    /// </summary>
    public IEnumerable<VirtualMapping> Mappings(ulong start, ulong end)
    {
        if (Mode == PagingMode.None)
        {
            foreach (MemoryRange r in Memory.Ranges)
            {
                if (r.Start <= end && r.End - 1 >= start)
                {
                    yield return new VirtualMapping(r.Start, r.Start, r.Length, true, true, false);
                }
            }

            yield break;
        }

        // Page-table index space: canonical addresses with the sign-extension bits dropped.
        int vaBits = Mode switch { PagingMode.Level5 => 57, PagingMode.Level4 => 48, _ => 32 };
        ulong mask = vaBits == 64 ? ulong.MaxValue : (1UL << vaBits) - 1;
        ulong lo = start & mask;
        ulong hi = end & mask;
        if ((start != 0 || end != ulong.MaxValue) && lo > hi)
        {
            yield break; // a range across the non-canonical hole: ask for each half separately
        }

        if (start == 0 && end == ulong.MaxValue)
        {
            lo = 0;
            hi = mask;
        }

        VirtualMapping? pending = null;
        foreach (VirtualMapping m in Enumerate(0, Root, 0, true, true, false, lo, hi))
        {
            if (pending is VirtualMapping p && p.VirtualAddress + p.Size == m.VirtualAddress && p.PhysicalAddress + p.Size == m.PhysicalAddress
                && p.Writable == m.Writable && p.User == m.User && p.NoExecute == m.NoExecute)
            {
                pending = p with { Size = p.Size + m.Size };
                continue;
            }

            if (pending is VirtualMapping done)
            {
                yield return done;
            }

            pending = m;
        }

        if (pending is VirtualMapping last)
        {
            yield return last;
        }
    }

    private IEnumerable<VirtualMapping> Enumerate(int levelIndex, ulong table, ulong vaPrefix, bool writable, bool user, bool nx, ulong lo, ulong hi)
    {
        Level level = _levels[levelIndex];
        ulong[]? entries = Table(table, level);
        if (entries is null)
        {
            yield break;
        }

        for (int i = 0; i < entries.Length; i++)
        {
            ulong e = entries[i];
            if ((e & 1) == 0)
            {
                continue;
            }

            ulong va = vaPrefix | ((ulong)i << level.Shift);
            if (va > hi || va + ((1UL << level.Shift) - 1) < lo)
            {
                continue;
            }

            bool w = writable && (e & 2) != 0;
            bool u = user && (e & 4) != 0;
            bool x = nx || (level.EntrySize == 8 && (e & (1UL << 63)) != 0);
            bool last = levelIndex == _levels.Length - 1;
            if (last || (level.LargePages && (e & 0x80) != 0))
            {
                ulong size = 1UL << level.Shift;
                yield return new VirtualMapping(Canonical(va), PageBase(e, level, last), size, w, u, x);
            }
            else if (Mode == PagingMode.Pae && levelIndex == 0)
            {
                foreach (VirtualMapping m in Enumerate(levelIndex + 1, e & PhysMask, va, true, true, false, lo, hi))
                {
                    yield return m;
                }
            }
            else
            {
                foreach (VirtualMapping m in Enumerate(levelIndex + 1, NextTable(e, level), va, w, u, x, lo, hi))
                {
                    yield return m;
                }
            }
        }
    }

    private Translation Walk(ulong va, bool recordEntries)
    {
        var entries = recordEntries ? new List<PagingEntry>(_levels.Length) : null;
        if (Mode == PagingMode.None)
        {
            return new Translation(va, [], va, 0x1000, null);
        }

        int vaBits = Mode switch { PagingMode.Level5 => 57, PagingMode.Level4 => 48, _ => 32 };
        if (vaBits == 32 ? va > 0xFFFF_FFFFUL : Canonical(va & ((1UL << vaBits) - 1)) != va)
        {
            return new Translation(va, [], null, 0, vaBits == 32 ? "address above 4 GiB in a 32-bit paging mode" : $"non-canonical address for {vaBits}-bit virtual addresses");
        }

        ulong table = Root;
        for (int li = 0; li < _levels.Length; li++)
        {
            Level level = _levels[li];
            int index = (int)((va >> level.Shift) & ((1UL << level.IndexBits) - 1));
            ulong entryAddress = table + (ulong)(index * level.EntrySize);
            if (!TryEntry(table, level, index, out ulong e))
            {
                entries?.Add(new PagingEntry(level.Name, entryAddress, 0));
                return new Translation(va, (IReadOnlyList<PagingEntry>?)entries ?? [], null, 0, $"{level.Name} at physical 0x{entryAddress:x} is not in guest memory");
            }

            entries?.Add(new PagingEntry(level.Name, entryAddress, e));
            if ((e & 1) == 0)
            {
                return new Translation(va, (IReadOnlyList<PagingEntry>?)entries ?? [], null, 0, $"{level.Name} not present");
            }

            bool last = li == _levels.Length - 1;
            if (last || (level.LargePages && (e & 0x80) != 0))
            {
                ulong size = 1UL << level.Shift;
                ulong pa = PageBase(e, level, last) + (va & (size - 1));
                return new Translation(va, (IReadOnlyList<PagingEntry>?)entries ?? [], pa, size, null);
            }

            table = Mode == PagingMode.Pae && li == 0 ? e & PhysMask : NextTable(e, level);
        }

        return new Translation(va, (IReadOnlyList<PagingEntry>?)entries ?? [], null, 0, "no level mapped the address");
    }

    private ulong NextTable(ulong e, Level level) => level.EntrySize == 8 ? e & PhysMask : e & 0xFFFF_F000UL;

    private static ulong PageBase(ulong e, Level level, bool last)
    {
        if (level.EntrySize == 4)
        {
            if (last)
            {
                return e & 0xFFFF_F000UL;
            }

            // 4 MiB page; PSE-36 puts physical bits 32-39 in entry bits 13-20.
            return (e & 0xFFC0_0000UL) | (((e >> 13) & 0xFF) << 32);
        }

        ulong size = 1UL << level.Shift;
        return e & PhysMask & ~(size - 1);
    }

    private ulong Canonical(ulong va)
    {
        int bits = Mode switch { PagingMode.Level5 => 57, PagingMode.Level4 => 48, _ => 64 };
        if (bits == 64)
        {
            return va;
        }

        int shift = 64 - bits;
        return (ulong)((long)(va << shift) >> shift);
    }

    /// <summary>Entry <paramref name="index"/> of a table: from the cached table, else read alone on the table's first use.</summary>
    private bool TryEntry(ulong table, Level level, int index, out ulong entry)
    {
        ulong key = (table << 4) | (uint)level.IndexBits;
        if (_tables.TryGetValue(key, out ulong[]? cached))
        {
            entry = cached[index];
            return true;
        }

        if (_touchedTables.Add(key))
        {
            if (_touchedTables.Count > MaxCachedTables * 4)
            {
                _touchedTables.Clear();
                _touchedTables.Add(key);
            }

            Span<byte> raw = stackalloc byte[8];
            raw = raw[..level.EntrySize];
            if (Memory.Read(table + (ulong)(index * level.EntrySize), raw) != raw.Length)
            {
                entry = 0;
                return false;
            }

            entry = level.EntrySize == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(raw) : BinaryPrimitives.ReadUInt32LittleEndian(raw);
            return true;
        }

        ulong[]? t = Table(table, level);
        entry = t is null ? 0 : t[index];
        return t is not null;
    }

    private ulong[]? Table(ulong address, Level level)
    {
        // Keyed by address and level shape: a hostile table may be used at two levels of different sizes.
        ulong key = (address << 4) | (uint)level.IndexBits;
        if (_tables.TryGetValue(key, out ulong[]? cached))
        {
            return cached;
        }

        int count = 1 << level.IndexBits;
        Span<byte> raw = stackalloc byte[4096];
        raw = raw[..(count * level.EntrySize)];
        if (Memory.Read(address, raw) != raw.Length)
        {
            return null;
        }

        ulong[] entries = new ulong[count];
        for (int i = 0; i < count; i++)
        {
            entries[i] = level.EntrySize == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(raw[(i * 8)..]) : BinaryPrimitives.ReadUInt32LittleEndian(raw[(i * 4)..]);
        }

        if (_tables.Count >= MaxCachedTables)
        {
            _tables.Clear();
        }

        _tables[key] = entries;
        return entries;
    }

    private readonly record struct Level(string Name, int Shift, int IndexBits, int EntrySize, bool LargePages);
}
