using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.Memory;

namespace VmState.Tests.Support;

/// <summary>Builds x86 page tables of any paging mode in a sparse synthetic physical memory.</summary>
public sealed class PageTableBuilder : IPhysicalMemory
{
    private readonly Dictionary<ulong, byte[]> _pages = new();
    private readonly PagingMode _mode;
    private ulong _next = 0x100000;

    public PageTableBuilder(PagingMode mode, ulong memorySize = 1UL << 36)
    {
        _mode = mode;
        Ranges = [new MemoryRange(0, memorySize, "synthetic")];
        Root = Allocate();
        if (mode == PagingMode.Pae)
        {
            // The PDPT is 4 entries (32 bytes); put it inside the allocated page.
            Root += 0x20;
        }
    }

    public ulong Root { get; }

    public string Name => "page tables";

    public IReadOnlyList<MemoryRange> Ranges { get; }

    public ulong Allocate()
    {
        ulong a = _next;
        _next += 0x1000;
        _pages[a] = new byte[4096];
        return a;
    }

    /// <summary>Maps [va, va+size) to pa with a page of <paramref name="size"/> (4K, 2M/4M, 1G).</summary>
    public void Map(ulong va, ulong pa, ulong size, bool writable = true, bool user = true, bool nx = false)
    {
        (int Shift, int Bits, int Size)[] levels = _mode switch
        {
            PagingMode.Level5 => [(48, 9, 8), (39, 9, 8), (30, 9, 8), (21, 9, 8), (12, 9, 8)],
            PagingMode.Level4 => [(39, 9, 8), (30, 9, 8), (21, 9, 8), (12, 9, 8)],
            PagingMode.Pae => [(30, 2, 8), (21, 9, 8), (12, 9, 8)],
            _ => [(22, 10, 4), (12, 10, 4)],
        };
        ulong table = Root;
        for (int i = 0; i < levels.Length; i++)
        {
            (int shift, int bits, int esize) = levels[i];
            ulong index = (va >> shift) & ((1UL << bits) - 1);
            ulong entryAddress = table + (index * (ulong)esize);
            bool leaf = (1UL << shift) == size;
            ulong flags = 1UL | (writable ? 2UL : 0) | (user ? 4UL : 0);
            bool paeTop = _mode == PagingMode.Pae && i == 0;
            if (paeTop)
            {
                flags = 1;
            }

            if (leaf)
            {
                ulong e = pa | flags | (i < levels.Length - 1 ? 0x80UL : 0);
                if (esize == 4 && size == 1UL << 22)
                {
                    e = (pa & 0xFFC00000) | (((pa >> 32) & 0xFF) << 13) | flags | 0x80;
                }

                if (nx && esize == 8)
                {
                    e |= 1UL << 63;
                }

                Write(entryAddress, e, esize);
                return;
            }

            ulong existing = ReadEntry(entryAddress, esize);
            if ((existing & 1) == 0)
            {
                ulong next = Allocate();
                existing = next | (paeTop ? 1UL : 7UL);
                Write(entryAddress, existing, esize);
            }

            table = esize == 8 ? existing & 0x000F_FFFF_FFFF_F000 : existing & 0xFFFFF000;
        }
    }

    public void WritePhysical(ulong address, ReadOnlySpan<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            ulong a = address + (ulong)i;
            Page(a)[a & 0xFFF] = data[i];
        }
    }

    public int Read(ulong address, Span<byte> destination)
    {
        if (address >= Ranges[0].End)
        {
            return 0;
        }

        int n = (int)Math.Min((ulong)destination.Length, Ranges[0].End - address);
        for (int i = 0; i < n;)
        {
            ulong a = address + (ulong)i;
            int inPage = (int)(a & 0xFFF);
            int chunk = Math.Min(4096 - inPage, n - i);
            if (_pages.TryGetValue(a & ~0xFFFUL, out byte[]? p))
            {
                p.AsSpan(inPage, chunk).CopyTo(destination.Slice(i, chunk));
            }
            else
            {
                destination.Slice(i, chunk).Clear();
            }

            i += chunk;
        }

        return n;
    }

    private byte[] Page(ulong a)
    {
        ulong key = a & ~0xFFFUL;
        if (!_pages.TryGetValue(key, out byte[]? p))
        {
            p = new byte[4096];
            _pages[key] = p;
        }

        return p;
    }

    private void Write(ulong address, ulong value, int size)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        WritePhysical(address, b[..size]);
    }

    private ulong ReadEntry(ulong address, int size)
    {
        Span<byte> b = stackalloc byte[8];
        b.Clear();
        Read(address, b[..size]);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }
}
