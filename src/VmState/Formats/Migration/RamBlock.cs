namespace VmState.Formats.Migration;

/// <summary>
/// One RAMBlock of a migration stream with an index of where each of its pages is in the stream. The index is
/// allocated in chunks of 64 pages on first use, so memory follows the records present, not the size claimed.
/// </summary>
public sealed class RamBlock
{
    private const int ChunkShift = 6;
    private const int ChunkSize = 1 << ChunkShift;
    private readonly long[]?[] _chunks;

    /// <summary>Creates a block of <paramref name="length"/> bytes with pages of <paramref name="pageSize"/>.</summary>
    public RamBlock(string name, ulong length, int pageSize, ulong? guestPhysicalAddress)
    {
        Name = name;
        Length = length;
        PageSize = pageSize;
        GuestPhysicalAddress = guestPhysicalAddress;
        PageCount = (long)((length + (ulong)pageSize - 1) / (ulong)pageSize);
        _chunks = new long[]?[(PageCount + ChunkSize - 1) >> ChunkShift];
    }

    /// <summary>The block's idstr, e.g. "pc.ram".</summary>
    public string Name { get; }

    /// <summary>used_length in bytes.</summary>
    public ulong Length { get; }

    /// <summary>Target page size.</summary>
    public int PageSize { get; }

    /// <summary>Number of pages.</summary>
    public long PageCount { get; }

    /// <summary>
    /// The address the stream gave for the block (only with x-ignore-shared), else null: the block's memory region's
    /// offset in its container (QEMU 7.2 <c>migration/ram.c</c> sends <c>mr-&gt;addr</c>), which is the guest-physical
    /// address for most blocks but a NUMA node's offset in main RAM for a node's backend.
    /// </summary>
    public ulong? GuestPhysicalAddress { get; }

    /// <summary>The stream offset of the block's entry in the MEM_SIZE block list (0 when not read from a stream).</summary>
    public long ListOffset { get; init; }

    /// <summary>The block's position in the MEM_SIZE block list (0 when not read from a stream).</summary>
    public int ListIndex { get; init; }

    /// <summary>Pages stored as data records.</summary>
    public long DataPages { get; private set; }

    /// <summary>Pages stored as zero (fill) records.</summary>
    public long ZeroPages { get; private set; }

    /// <summary>
    /// The index entry of a page: 0 = never sent (reads as zeros), &gt; 0 = stream offset of the page's data,
    /// &lt; 0 = the whole page is one fill byte: see <see cref="FillOf"/> and <see cref="RecordOffsetOf"/>.
    /// </summary>
    public long GetEntry(long page)
    {
        long[]? chunk = _chunks[page >> ChunkShift];
        return chunk is null ? 0 : chunk[page & (ChunkSize - 1)];
    }

    /// <summary>Records that a page's data is at <paramref name="streamOffset"/> (a later record replaces an earlier one).</summary>
    public void SetData(long page, long streamOffset)
    {
        ref long e = ref Slot(page);
        Count(e, -1);
        e = streamOffset;
        DataPages++;
    }

    /// <summary>Records that a page is filled with <paramref name="fill"/> by the record at <paramref name="recordOffset"/>.</summary>
    public void SetFill(long page, byte fill, long recordOffset)
    {
        ref long e = ref Slot(page);
        Count(e, -1);
        e = -(((recordOffset << 8) | fill) + 1);
        ZeroPages++;
    }

    /// <summary>The fill byte of a negative (zero-page) entry.</summary>
    public static byte FillOf(long entry) => (byte)((-entry - 1) & 0xFF);

    /// <summary>The stream offset of the record (its address word) of a negative (zero-page) entry.</summary>
    public static long RecordOffsetOf(long entry) => (-entry - 1) >> 8;

    private void Count(long entry, int delta)
    {
        if (entry > 0)
        {
            DataPages += delta;
        }
        else if (entry < 0)
        {
            ZeroPages += delta;
        }
    }

    private ref long Slot(long page)
    {
        ref long[]? chunk = ref _chunks[page >> ChunkShift];
        chunk ??= new long[ChunkSize];
        return ref chunk[page & (ChunkSize - 1)];
    }
}
