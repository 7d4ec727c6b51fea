namespace VmState.History;

/// <summary>
/// A capture's page map for one RAM block: per page a content id (&gt;= 0, a record of the page index), a fill byte
/// (the whole page is that byte: <see cref="FillEntry"/>) or <see cref="NotSent"/> (the stream had no record).
/// On disk it is run-length compressed (LEB128 numbers): u32 run count, then per run (count &lt;&lt; 2 | kind), kind 0
/// not sent, 1 fill (then the byte), 2 consecutive content ids (then the first id), 3 one content id repeated (then
/// the id). Pages unchanged since a capture keep their ids and a first capture numbers its pages in stream order, so a
/// map is a few runs per changed region, whatever the guest size; in memory it stays in that form
/// (<see cref="PageRunMap"/>).
/// </summary>
internal static class PageMap
{
    public const long NotSent = -1;

    private const int KindNotSent = 0;
    private const int KindFill = 1;
    private const int KindConsecutive = 2;
    private const int KindRepeated = 3;

    public static long FillEntry(byte fill) => -2 - fill;

    public static bool IsFill(long entry, out byte fill)
    {
        fill = entry <= -2 ? (byte)(-2 - entry) : (byte)0;
        return entry <= -2;
    }

    /// <summary>Writes <paramref name="map"/> in the on-disk form (one disk run per run of the map).</summary>
    public static void Encode(StoreFileWriter w, PageRunMap map)
    {
        w.U32((uint)map.RunCount);
        for (int i = 0; i < map.RunCount; i++)
        {
            PageRun run = map.Run(i);
            int kind = run.Value == NotSent ? KindNotSent : run.Value < 0 ? KindFill : run.Step == 1 || run.Count == 1 ? KindConsecutive : KindRepeated;
            w.VarUInt(((ulong)run.Count << 2) | (uint)kind);
            if (kind == KindFill)
            {
                w.U8((byte)(-2 - run.Value));
            }
            else if (kind != KindNotSent)
            {
                w.VarUInt((ulong)run.Value);
            }
        }
    }

    /// <summary>
    /// Decodes a block's map of <paramref name="pages"/> pages; ids must be below <paramref name="pageCount"/>. What is
    /// allocated follows the runs the input holds (each at least one byte), never the page count it claims.
    /// </summary>
    public static PageRunMap Decode(ref StoreFileReader r, long pages, long pageCount, string field)
    {
        int at = r.Position;
        uint runs = r.U32($"{field} run count");
        if (runs > pages)
        {
            throw r.Error(at, $"{field} run count", $"{runs} runs for {pages} pages");
        }

        if (runs > r.Remaining)
        {
            throw r.Error(at, $"{field} run count", $"{runs} runs, but only {r.Remaining} bytes follow (a run takes at least one)");
        }

        long[] heads = new long[runs];
        long[] values = new long[runs];
        long i = 0;
        for (int k = 0; k < runs; k++)
        {
            at = r.Position;
            ulong head = r.VarUInt($"{field} run {k}");
            int kind = (int)(head & 3);
            ulong count = head >> 2;
            if (count == 0 || count > (ulong)(pages - i))
            {
                throw r.Error(at, $"{field} run {k}", $"{count} pages, but {pages - i} of the block's {pages} are left");
            }

            long value;
            int step = 0;
            switch (kind)
            {
                case KindNotSent:
                    value = NotSent;
                    break;
                case KindFill:
                    value = FillEntry(r.U8($"{field} run {k} fill"));
                    break;
                default:
                    at = r.Position;
                    ulong first = r.VarUInt($"{field} run {k} content id");
                    ulong last = kind == KindConsecutive ? first + count - 1 : first;
                    if (first >= (ulong)pageCount || last >= (ulong)pageCount || last < first)
                    {
                        throw r.Error(at, $"{field} run {k} content id", $"ids {first}-{last}, but the store has {pageCount} pages");
                    }

                    value = (long)first;
                    step = kind == KindConsecutive && count > 1 ? 1 : 0;
                    break;
            }

            heads[k] = (i << 1) | (uint)step;
            values[k] = value;
            i += (long)count;
        }

        if (i != pages)
        {
            throw r.Error($"{field} runs", $"the runs cover {i} pages, the block has {pages}");
        }

        return new PageRunMap(pages, heads, values, (int)runs);
    }
}
