using System.Buffers;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Formats.Migration;

/// <summary>
/// Guest-physical memory served from the page index of a migration stream: each read goes to the stream
/// offsets of the pages it covers; runs of consecutive page records are read with one positional read.
/// </summary>
internal sealed class MigrationRamMemory : IPhysicalMemory, ISparseMemory, IGatherMemory
{
    private readonly byte[]?[] _fillPages = new byte[]?[256];
    private readonly IRandomAccessSource _source;
    private readonly MemoryRange[] _ranges;
    private readonly (RamBlock Block, ulong BlockOffset)[] _backing;
    private readonly int _pageSize;

    /// <summary>Builds the memory from the blocks and their mappings (overlapping mappings: the first wins).</summary>
    public MigrationRamMemory(IRandomAccessSource source, IReadOnlyList<RamBlock> blocks, IReadOnlyList<RamBlockInfo> mapped, int pageSize)
    {
        _source = source;
        _pageSize = pageSize;
        var items = new List<(MemoryRange Range, RamBlock Block, ulong Offset)>();
        for (int i = 0; i < blocks.Count; i++)
        {
            foreach (BlockMapping m in mapped[i].Mappings)
            {
                if (m.Length > 0)
                {
                    items.Add((new MemoryRange(m.GuestPhysicalAddress, m.Length, blocks[i].Name), blocks[i], m.BlockOffset));
                }
            }
        }

        items.Sort((a, b) => a.Range.Start.CompareTo(b.Range.Start));
        var ranges = new List<MemoryRange>();
        var backing = new List<(RamBlock, ulong)>();
        foreach ((MemoryRange range, RamBlock block, ulong offset) in items)
        {
            if (ranges.Count > 0 && range.Start < ranges[^1].End)
            {
                continue;
            }

            ranges.Add(range);
            backing.Add((block, offset));
        }

        _ranges = [.. ranges];
        _backing = [.. backing];
    }

    /// <inheritdoc />
    public string Name => _source.Name;

    /// <inheritdoc />
    public IReadOnlyList<MemoryRange> Ranges => _ranges;

    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination)
    {
        int done = 0;
        foreach (RangePiece p in _ranges.Pieces(address, destination.Length))
        {
            (RamBlock block, ulong blockOffset) = _backing[p.RangeIndex];
            ReadBlock(block, blockOffset + (p.Address - _ranges[p.RangeIndex].Start), destination.Slice(p.Offset, p.Length));
            done = p.Offset + p.Length;
        }

        return done;
    }

    /// <inheritdoc />
    public bool IsZero(ulong address, ulong length)
    {
        ulong done = 0;
        while (done < length)
        {
            if (!TryLocate(address + done, out RamBlock block, out ulong offset, out ulong contiguous))
            {
                return false;
            }

            ulong n = Math.Min(length - done, contiguous);
            long first = (long)(offset / (ulong)_pageSize);
            long last = (long)((offset + n - 1) / (ulong)_pageSize);
            for (long p = first; p <= last; p++)
            {
                long e = p < block.PageCount ? block.GetEntry(p) : 0;
                if (e > 0 || (e < 0 && RamBlock.FillOf(e) != 0))
                {
                    return false;
                }
            }

            done += n;
        }

        return true;
    }

    /// <summary>
    /// The RAM block and offset behind guest-physical <paramref name="address"/>, and how many bytes from there are
    /// contiguous in that block; false when the address is not RAM.
    /// </summary>
    public bool TryLocate(ulong address, out RamBlock block, out ulong blockOffset, out ulong contiguous)
    {
        int ri = _ranges.FindRange(address);
        if (ri < 0)
        {
            block = null!;
            blockOffset = 0;
            contiguous = 0;
            return false;
        }

        block = _backing[ri].Block;
        blockOffset = _backing[ri].BlockOffset + (address - _ranges[ri].Start);
        contiguous = _ranges[ri].End - address;
        return true;
    }

    /// <summary>Reads <c>destination.Length</c> bytes of <paramref name="block"/> at <paramref name="offset"/>.</summary>
    public void ReadBlock(RamBlock block, ulong offset, Span<byte> destination)
    {
        int pageSize = _pageSize;
        int done = 0;
        byte[]? scratch = null;
        try
        {
            while (done < destination.Length)
            {
                ulong o = offset + (ulong)done;
                long page = (long)(o / (ulong)pageSize);
                int inPage = (int)(o % (ulong)pageSize);
                int n = Math.Min(pageSize - inPage, destination.Length - done);
                long entry = page < block.PageCount ? block.GetEntry(page) : 0;
                if (entry == 0)
                {
                    destination.Slice(done, n).Clear();
                }
                else if (entry < 0)
                {
                    destination.Slice(done, n).Fill(RamBlock.FillOf(entry));
                }
                else if (inPage == 0 && n == pageSize && destination.Length - done >= 2 * pageSize)
                {
                    // Coalesce a run of page records that follow each other in the stream (8-byte header + page).
                    long stride = pageSize + 8;
                    int maxPages = Math.Min((destination.Length - done) / pageSize, 256);
                    int run = 1;
                    while (run < maxPages && page + run < block.PageCount && block.GetEntry(page + run) == entry + (stride * run))
                    {
                        run++;
                    }

                    if (run == 1)
                    {
                        ReadExact(entry, destination.Slice(done, n));
                    }
                    else
                    {
                        int span = (int)(stride * (run - 1)) + pageSize;
                        // Sized for the longest run this read can still take (runs only shrink as it goes on), so a small read
                        // (the VMCOREINFO scan's few pages) does not rent a 1 MiB array.
                        scratch ??= ArrayPool<byte>.Shared.Rent((int)(stride * maxPages));
                        ReadExact(entry, scratch.AsSpan(0, span));
                        for (int i = 0; i < run; i++)
                        {
                            scratch.AsSpan((int)(i * stride), pageSize).CopyTo(destination.Slice(done + (i * pageSize), pageSize));
                        }

                        n = run * pageSize;
                    }
                }
                else
                {
                    ReadExact(entry + inPage, destination.Slice(done, n));
                }

                done += n;
            }
        }
        finally
        {
            if (scratch is not null)
            {
                ArrayPool<byte>.Shared.Return(scratch);
            }
        }
    }

    /// <inheritdoc />
    public int GatherBufferSize(int length) => ((length / _pageSize) + 1) * (_pageSize + 8);

    /// <inheritdoc />
    public bool TryGather(ulong address, int length, byte[] buffer, List<GatherPiece> pieces)
    {
        pieces.Clear();
        int pageSize = _pageSize;
        if (!TryLocate(address, out RamBlock block, out ulong offset, out ulong contiguous) || contiguous < (ulong)length
            || offset % (ulong)pageSize != 0 || length % pageSize != 0 || buffer.Length < GatherBufferSize(length))
        {
            return false;
        }

        long stride = pageSize + 8;
        long first = (long)(offset / (ulong)pageSize);
        int count = length / pageSize;
        int used = 0;
        int i = 0;
        while (i < count)
        {
            long page = first + i;
            long entry = page < block.PageCount ? block.GetEntry(page) : 0;
            if (entry == 0)
            {
                i++;
                continue;
            }

            if (entry < 0)
            {
                byte fill = RamBlock.FillOf(entry);
                if (fill != 0)
                {
                    pieces.Add(new GatherPiece(i * pageSize, pageSize, FillPage(fill)));
                }

                i++;
                continue;
            }

            // A run of page records that follow each other in the stream (8-byte header + page): one read.
            int run = 1;
            while (i + run < count && page + run < block.PageCount && block.GetEntry(page + run) == entry + (stride * run))
            {
                run++;
            }

            int bytes = (int)(stride * (run - 1)) + pageSize;
            ReadExact(entry, buffer.AsSpan(used, bytes));
            for (int k = 0; k < run; k++)
            {
                var data = new ReadOnlyMemory<byte>(buffer, used + (int)(stride * k), pageSize);
                if (data.Span.ContainsAnyExcept((byte)0))
                {
                    pieces.Add(new GatherPiece((i + k) * pageSize, pageSize, data));
                }
            }

            used += bytes;
            i += run;
        }

        return true;
    }

    private byte[] FillPage(byte fill)
    {
        byte[]? page = Volatile.Read(ref _fillPages[fill]);
        if (page is null)
        {
            page = new byte[_pageSize];
            page.AsSpan().Fill(fill);
            Volatile.Write(ref _fillPages[fill], page);
        }

        return page;
    }

    private void ReadExact(long offset, Span<byte> destination)
    {
        int n = _source.Read(offset, destination);
        if (n != destination.Length)
        {
            throw new VmStateFormatException(offset, "RAM page", $"the stream ends before the page's {destination.Length} bytes");
        }
    }
}
