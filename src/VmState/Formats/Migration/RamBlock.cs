namespace VmState.Formats.Migration;

/// <summary>
/// One RAMBlock of a migration stream with an index of where each of its pages is in the stream. The index is
/// allocated in chunks of 64 pages on first use, so memory follows the records present, not the size claimed. A
/// chunk whose pages so far are a run of zero records that follow each other in the stream (9 bytes each: address
/// word with CONTINUE, fill byte 0), as most of a big guest with little touched memory is, is kept as one number
/// (where the run starts and how long it is) until a record breaks the pattern: 8 bytes per 64 pages instead of 512.
/// </summary>
public sealed class RamBlock
{
    private const int ChunkShift = 6;
    private const int ChunkSize = 1 << ChunkShift;
    /// <summary>The size of a zero record with CONTINUE: the address word and the fill byte.</summary>
    private const int ZeroRecordSize = 9;

    private readonly long[]?[] _chunks;

    /// <summary>
    /// Per chunk without a table: 0, or a run of zero records for its first pages, as
    /// (stream offset of the first record &lt;&lt; 7) | page count (1-64).
    /// </summary>
    private readonly long[] _zeroRuns;

    /// <summary>Creates a block of <paramref name="length"/> bytes with pages of <paramref name="pageSize"/>.</summary>
    public RamBlock(string name, ulong length, int pageSize, ulong? guestPhysicalAddress)
    {
        Name = name;
        Length = length;
        PageSize = pageSize;
        GuestPhysicalAddress = guestPhysicalAddress;
        PageCount = (long)((length + (ulong)pageSize - 1) / (ulong)pageSize);
        _chunks = new long[]?[(PageCount + ChunkSize - 1) >> ChunkShift];
        _zeroRuns = new long[_chunks.Length];
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
        if (chunk is not null)
        {
            return chunk[page & (ChunkSize - 1)];
        }

        long run = _zeroRuns[page >> ChunkShift];
        int k = (int)(page & (ChunkSize - 1));
        return k < (run & 0x7F) ? ZeroEntry((run >> 7) + ((long)k * ZeroRecordSize), 0) : 0;
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
        long c = page >> ChunkShift;
        if (fill == 0 && _chunks[c] is null)
        {
            // Extend the chunk's run when this is its next page and its record follows the previous one.
            long run = _zeroRuns[c];
            int n = (int)(run & 0x7F);
            if ((page & (ChunkSize - 1)) == n && (n == 0 || recordOffset == (run >> 7) + ((long)n * ZeroRecordSize)))
            {
                _zeroRuns[c] = n == 0 ? (recordOffset << 7) | 1 : run + 1;
                ZeroPages++;
                return;
            }
        }

        ref long e = ref Slot(page);
        Count(e, -1);
        e = ZeroEntry(recordOffset, fill);
        ZeroPages++;
    }

    /// <summary>
    /// Records a run of <paramref name="count"/> fill records: page <paramref name="firstPage"/> + i is filled with
    /// <paramref name="fill"/> by the record at <paramref name="firstRecord"/> + i × <paramref name="stride"/> (as
    /// <see cref="SetFill"/> one by one would; whole untouched chunks of consecutive zero records cost one store).
    /// </summary>
    public void SetFillRun(long firstPage, long count, byte fill, long firstRecord, long stride)
    {
        long i = 0;
        while (i < count)
        {
            long page = firstPage + i;
            long c = page >> ChunkShift;
            if (fill == 0 && stride == ZeroRecordSize && (page & (ChunkSize - 1)) == 0 && count - i >= ChunkSize
                && _chunks[c] is null && _zeroRuns[c] == 0)
            {
                _zeroRuns[c] = ((firstRecord + (i * stride)) << 7) | ChunkSize;
                ZeroPages += ChunkSize;
                i += ChunkSize;
                continue;
            }

            SetFill(page, fill, firstRecord + (i * stride));
            i++;
        }
    }

    /// <summary>Whether none of the <paramref name="count"/> pages from <paramref name="firstPage"/> has been sent yet.</summary>
    public bool AllUnset(long firstPage, long count)
    {
        long end = firstPage + count;
        long page = firstPage;
        while (page < end)
        {
            long c = page >> ChunkShift;
            long chunkEnd = Math.Min(end, (c + 1) << ChunkShift);
            long[]? chunk = _chunks[c];
            if (chunk is null)
            {
                // The chunk's run covers its first (run & 0x7F) pages.
                if ((page & (ChunkSize - 1)) < (_zeroRuns[c] & 0x7F))
                {
                    return false;
                }
            }
            else
            {
                for (long p = page; p < chunkEnd; p++)
                {
                    if (chunk[p & (ChunkSize - 1)] != 0)
                    {
                        return false;
                    }
                }
            }

            page = chunkEnd;
        }

        return true;
    }

    /// <summary>
    /// For whole-chunk runs (64 pages from a chunk-aligned <paramref name="page"/>) kept in compact form: 0 when the
    /// chunk has no pages sent, the stream offset of its first zero record when all 64 are consecutive zero records,
    /// else -1 (look page by page). Lets an encoder skip 64 pages in one step.
    /// </summary>
    internal long WholeChunk(long page)
    {
        if ((page & (ChunkSize - 1)) != 0 || page + ChunkSize > PageCount)
        {
            return -1;
        }

        long c = page >> ChunkShift;
        if (_chunks[c] is not null)
        {
            return -1;
        }

        long run = _zeroRuns[c];
        return run == 0 ? 0 : (run & 0x7F) == ChunkSize ? run >> 7 : -1;
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

    private static long ZeroEntry(long recordOffset, byte fill) => -(((recordOffset << 8) | fill) + 1);

    /// <summary>The page's entry in its chunk's table, which is made (from the chunk's run, if any) on first use.</summary>
    private ref long Slot(long page)
    {
        long c = page >> ChunkShift;
        ref long[]? chunk = ref _chunks[c];
        if (chunk is null)
        {
            chunk = new long[ChunkSize];
            long run = _zeroRuns[c];
            for (int k = 0; k < (int)(run & 0x7F); k++)
            {
                chunk[k] = ZeroEntry((run >> 7) + ((long)k * ZeroRecordSize), 0);
            }

            _zeroRuns[c] = 0;
        }

        return ref chunk[page & (ChunkSize - 1)];
    }
}
