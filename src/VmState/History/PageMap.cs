namespace VmState.History;

/// <summary>
/// A capture's page map for one RAM block: per page a content id (&gt;= 0, a record of the page index), a fill byte
/// (the whole page is that byte: <see cref="FillEntry"/>) or <see cref="NotSent"/> (the stream had no record).
/// On disk it is run-length compressed (LEB128 numbers): per run (count &lt;&lt; 2 | kind), kind 0 not sent, 1 fill
/// (then the byte), 2 consecutive content ids (then the first id), 3 one content id repeated (then the id). Pages
/// unchanged since a capture keep their ids and a first capture numbers its pages in stream order, so a map is a few
/// runs per changed region, whatever the guest size.
/// </summary>
internal static class PageMap
{
    public const long NotSent = -1;

    public static long FillEntry(byte fill) => -2 - fill;

    public static bool IsFill(long entry, out byte fill)
    {
        fill = entry <= -2 ? (byte)(-2 - entry) : (byte)0;
        return entry <= -2;
    }

    public static void Encode(StoreFileWriter w, ReadOnlySpan<long> entries)
    {
        int i = 0;
        var runs = new List<(int Kind, long Count, long Value)>();
        while (i < entries.Length)
        {
            long e = entries[i];
            int n = 1;
            int kind;
            long value;
            if (e == NotSent)
            {
                while (i + n < entries.Length && entries[i + n] == NotSent)
                {
                    n++;
                }

                kind = 0;
                value = 0;
            }
            else if (e < 0)
            {
                while (i + n < entries.Length && entries[i + n] == e)
                {
                    n++;
                }

                kind = 1;
                value = -2 - e;
            }
            else if (i + 1 < entries.Length && entries[i + 1] == e)
            {
                while (i + n < entries.Length && entries[i + n] == e)
                {
                    n++;
                }

                kind = 3;
                value = e;
            }
            else
            {
                while (i + n < entries.Length && entries[i + n] == e + n)
                {
                    n++;
                }

                kind = 2;
                value = e;
            }

            runs.Add((kind, n, value));
            i += n;
        }

        w.U32((uint)runs.Count);
        foreach ((int kind, long count, long value) in runs)
        {
            w.VarUInt(((ulong)count << 2) | (uint)kind);
            if (kind == 1)
            {
                w.U8((byte)value);
            }
            else if (kind >= 2)
            {
                w.VarUInt((ulong)value);
            }
        }
    }

    /// <summary>Decodes a block's map of <paramref name="pages"/> pages; ids must be below <paramref name="pageCount"/>.</summary>
    public static long[] Decode(ref StoreFileReader r, long pages, long pageCount, string field)
    {
        int at = r.Position;
        uint runs = r.U32($"{field} run count");
        if (runs > pages)
        {
            throw r.Error(at, $"{field} run count", $"{runs} runs for {pages} pages");
        }

        long[] entries = new long[pages];
        long i = 0;
        for (uint k = 0; k < runs; k++)
        {
            at = r.Position;
            ulong head = r.VarUInt($"{field} run {k}");
            int kind = (int)(head & 3);
            ulong count = head >> 2;
            if (count == 0 || count > (ulong)(pages - i))
            {
                throw r.Error(at, $"{field} run {k}", $"{count} pages, but {pages - i} of the block's {pages} are left");
            }

            long n = (long)count;
            switch (kind)
            {
                case 0:
                    entries.AsSpan((int)i, (int)n).Fill(NotSent);
                    break;
                case 1:
                    entries.AsSpan((int)i, (int)n).Fill(FillEntry(r.U8($"{field} run {k} fill")));
                    break;
                default:
                    at = r.Position;
                    ulong first = r.VarUInt($"{field} run {k} content id");
                    ulong last = kind == 2 ? first + count - 1 : first;
                    if (first >= (ulong)pageCount || last >= (ulong)pageCount || last < first)
                    {
                        throw r.Error(at, $"{field} run {k} content id", $"ids {first}-{last}, but the store has {pageCount} pages");
                    }

                    for (long j = 0; j < n; j++)
                    {
                        entries[i + j] = kind == 2 ? (long)first + j : (long)first;
                    }

                    break;
            }

            i += n;
        }

        if (i != pages)
        {
            throw r.Error($"{field} runs", $"the runs cover {i} pages, the block has {pages}");
        }

        return entries;
    }
}
