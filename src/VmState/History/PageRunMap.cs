namespace VmState.History;

/// <summary>
/// One RAM block's page map (per page a <see cref="PageMap"/> entry: a content id, a fill entry or
/// <see cref="PageMap.NotSent"/>) held as runs, the way the capture file stores it: run i covers its pages from
/// <see cref="PageRun.Start"/> to the next run's start, and page p of it has the entry
/// <see cref="PageRun.Value"/> + <see cref="PageRun.Step"/> × (p − start), the step being 1 (consecutive content
/// ids) or 0 (one entry repeated). Memory is 16 bytes a run, not 8 bytes a page: a first capture numbers its pages in
/// stream order and later captures keep the ids of unchanged pages, so a map is a few runs per region that changed,
/// whatever the size of the guest. Immutable; built by <see cref="PageRunMapBuilder"/> or decoded by
/// <see cref="PageMap.Decode"/>.
/// </summary>
internal sealed class PageRunMap
{
    /// <summary>Per run, its first page shifted left by one, the step in the low bit; ascending, the first start 0.</summary>
    private readonly long[] _heads;
    private readonly long[] _values;

    /// <summary>Takes the first <paramref name="count"/> runs of the arrays (owned from now on); they must cover the block.</summary>
    internal PageRunMap(long pages, long[] heads, long[] values, int count)
    {
        Pages = pages;
        if (heads.Length != count)
        {
            Array.Resize(ref heads, count);
            Array.Resize(ref values, count);
        }

        _heads = heads;
        _values = values;
    }

    /// <summary>The block's page count.</summary>
    public long Pages { get; }

    /// <summary>How many runs the map has (0 only for a block of no pages).</summary>
    public int RunCount => _heads.Length;

    /// <summary>The managed memory the runs take, in bytes.</summary>
    public long RunBytes => (long)_heads.Length * 16;

    /// <summary>A map of <paramref name="pages"/> pages none of which was sent.</summary>
    public static PageRunMap NotSent(long pages) =>
        pages == 0 ? new PageRunMap(0, [], [], 0) : new PageRunMap(pages, [0], [PageMap.NotSent], 1);

    /// <summary>The map of <paramref name="entries"/> (one per page).</summary>
    public static PageRunMap FromEntries(ReadOnlySpan<long> entries)
    {
        var b = new PageRunMapBuilder(entries.Length);
        for (int p = 0; p < entries.Length; p++)
        {
            b.Set(p, entries[p]);
        }

        return b.Build();
    }

    /// <summary>Run <paramref name="index"/> (0 ≤ index &lt; <see cref="RunCount"/>).</summary>
    public PageRun Run(int index)
    {
        long start = _heads[index] >> 1;
        long end = index + 1 < _heads.Length ? _heads[index + 1] >> 1 : Pages;
        return new PageRun(start, end - start, _values[index], (int)(_heads[index] & 1));
    }

    /// <summary>The entry of page <paramref name="page"/> (a binary search: iterate <see cref="Run"/> to walk a whole block).</summary>
    public long this[long page]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfNegative(page);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(page, Pages);
            int r = RunOf(page);
            return _values[r] + ((_heads[r] & 1) * (page - (_heads[r] >> 1)));
        }
    }

    /// <summary>One entry per page (8 bytes a page: for readers that walk a capture page by page).</summary>
    public long[] ToArray()
    {
        long[] entries = new long[Pages];
        for (int i = 0; i < _heads.Length; i++)
        {
            PageRun run = Run(i);
            Span<long> span = entries.AsSpan((int)run.Start, (int)run.Count);
            if (run.Step == 0)
            {
                span.Fill(run.Value);
            }
            else
            {
                for (int k = 0; k < span.Length; k++)
                {
                    span[k] = run.Value + k;
                }
            }
        }

        return entries;
    }

    /// <summary>How many pages have a content id (<paramref name="data"/>) and how many a fill entry (<paramref name="fills"/>).</summary>
    public void Count(out long data, out long fills)
    {
        data = 0;
        fills = 0;
        for (int i = 0; i < _heads.Length; i++)
        {
            PageRun run = Run(i);
            if (run.Value >= 0)
            {
                data += run.Count;
            }
            else if (run.Value != PageMap.NotSent)
            {
                fills += run.Count;
            }
        }
    }

    /// <summary>
    /// How many pages have another entry in <paramref name="before"/> (the previous capture's map of the block, or null
    /// when it had no such block: then the pages sent count). Pages past the end of a shorter
    /// <paramref name="before"/> count as not sent there. Runs are compared as lines, never page by page.
    /// </summary>
    public long CountChanged(PageRunMap? before)
    {
        if (before is null)
        {
            long changed = 0;
            for (int i = 0; i < _heads.Length; i++)
            {
                PageRun run = Run(i);
                changed += run.Value == PageMap.NotSent && run.Step == 0 ? 0 : run.Count;
            }

            return changed;
        }

        long total = 0;
        int a = 0;
        int b = 0;
        long p = 0;
        while (p < Pages)
        {
            PageRun ra = Run(a);
            long end = ra.Start + ra.Count;
            // This page's entry is ca + sa·p; the previous one's cb + sb·p (not sent past its end).
            long ca = ra.Value - (ra.Step * ra.Start);
            long sa = ra.Step;
            long cb = PageMap.NotSent;
            long sb = 0;
            if (p < before.Pages)
            {
                PageRun rb = before.Run(b);
                end = Math.Min(end, rb.Start + rb.Count);
                cb = rb.Value - (rb.Step * rb.Start);
                sb = rb.Step;
            }
            else
            {
                end = Math.Min(end, Pages);
            }

            long n = end - p;
            if (sa == sb)
            {
                total += ca == cb ? 0 : n;
            }
            else
            {
                // Two lines of slopes 0 and 1 meet at one page at most.
                long meet = (cb - ca) / (sa - sb);
                total += meet >= p && meet < end ? n - 1 : n;
            }

            p = end;
            if (p >= ra.Start + ra.Count)
            {
                a++;
            }

            if (b < before.RunCount && p < before.Pages && p >= before.Run(b).Start + before.Run(b).Count)
            {
                b++;
            }
        }

        return total;
    }

    /// <summary>Whether both maps give every page the same entry (runs may be cut differently).</summary>
    public bool SameEntries(PageRunMap other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Pages == other.Pages && CountChanged(other) == 0;
    }

    private int RunOf(long page)
    {
        int lo = 0;
        int hi = _heads.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (_heads[mid] >> 1 <= page)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return lo;
    }
}

/// <summary>
/// A run of a <see cref="PageRunMap"/>: <see cref="Count"/> pages from <see cref="Start"/>, page
/// <see cref="Start"/> + k having the entry <see cref="Value"/> + <see cref="Step"/> × k.
/// </summary>
internal readonly record struct PageRun(long Start, long Count, long Value, int Step)
{
    /// <summary>The entry of the run's page <paramref name="k"/> (0 ≤ k &lt; <see cref="Count"/>).</summary>
    public long Entry(long k) => Value + (Step * k);
}
