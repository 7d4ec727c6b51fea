namespace VmState.History;

/// <summary>
/// Builds a <see cref="PageRunMap"/> from page entries set in any order, a later entry for a page replacing an earlier
/// one, in memory proportional to the runs and not to the block. A stream sends a block's pages mostly in order
/// (QEMU 7.2 <c>migration/ram.c</c> walks the dirty bitmap upwards), so a page that is the next one after those set so
/// far extends the runs at once; any other (a background snapshot sends a page the guest is about to write ahead of
/// its turn, a precopy stream sends dirtied pages again) waits in a table of at most
/// <see cref="MaxPending"/> pages, which is folded into the runs when it fills up and at the end.
/// </summary>
internal sealed class PageRunMapBuilder
{
    /// <summary>Out-of-order pages held before they are folded into the runs.</summary>
    public const int MaxPending = 1 << 16;

    private readonly Dictionary<long, long> _pending = [];
    private long[] _heads = new long[16];
    private long[] _values = new long[16];
    private int _count;

    /// <summary>The runs cover pages [0, _end).</summary>
    private long _end;

    /// <summary>A map of <paramref name="pages"/> pages, none set yet (a page never set is <see cref="PageMap.NotSent"/>).</summary>
    public PageRunMapBuilder(long pages)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pages);
        Pages = pages;
    }

    /// <summary>The block's page count.</summary>
    public long Pages { get; }

    /// <summary>Runs so far (for tests and memory accounting).</summary>
    public int RunCount => _count;

    /// <summary>Out-of-order pages waiting to be folded in.</summary>
    public int PendingCount => _pending.Count;

    /// <summary>Sets page <paramref name="page"/>'s entry (replacing any earlier one).</summary>
    public void Set(long page, long entry)
    {
        if ((ulong)page >= (ulong)Pages)
        {
            throw new ArgumentOutOfRangeException(nameof(page), page, $"the block has {Pages} pages");
        }

        if (page != _end)
        {
            _pending[page] = entry;
            if (_pending.Count >= MaxPending)
            {
                Fold();
            }

            return;
        }

        if (_pending.Count > 0)
        {
            // An earlier entry waiting for this page is replaced by this one.
            _pending.Remove(page);
        }

        Append(entry, 1, 0);
        // Pages sent ahead of their turn join the runs once the pages before them have come.
        while (_pending.Count > 0 && _pending.Remove(_end, out long ahead))
        {
            Append(ahead, 1, 0);
        }
    }

    /// <summary>Sets <paramref name="count"/> pages from <paramref name="page"/> to <paramref name="value"/> + <paramref name="step"/> × k.</summary>
    public void SetRun(long page, long count, long value, int step)
    {
        if (page == _end && _pending.Count == 0 && count > 0 && page + count <= Pages)
        {
            Append(value, count, step);
            return;
        }

        for (long k = 0; k < count; k++)
        {
            Set(page + k, value + (step * k));
        }
    }

    /// <summary>The map: the runs with every waiting page folded in, pages never set not sent.</summary>
    public PageRunMap Build()
    {
        Fold();
        if (_end < Pages)
        {
            Append(PageMap.NotSent, Pages - _end, 0);
        }

        var map = new PageRunMap(Pages, _heads, _values, _count);
        _heads = [];
        _values = [];
        _count = 0;
        return map;
    }

    /// <summary>
    /// Folds the waiting pages into the runs, which then cover up to the last page set (pages between not sent): one
    /// walk of the runs and the sorted waiting pages.
    /// </summary>
    private void Fold()
    {
        if (_pending.Count == 0)
        {
            return;
        }

        long[] keys = [.. _pending.Keys];
        Array.Sort(keys);
        long[] heads = _heads;
        long[] values = _values;
        int count = _count;
        long covered = _end;
        _heads = new long[Math.Max(16, count + (2 * keys.Length) + 1)];
        _values = new long[_heads.Length];
        _count = 0;
        _end = 0;

        int r = 0;
        long p = 0;
        foreach (long key in keys)
        {
            // The old runs' pages before the key (not sent past what they covered), then the key.
            CopyOldRuns(key);
            Append(_pending[key], 1, 0);
            p = key + 1;
        }

        // The old runs past the last key.
        CopyOldRuns(covered);
        _pending.Clear();

        // Appends the old runs' entries for pages p to until, pages past the old runs as not sent; moves p (and r).
        void CopyOldRuns(long until)
        {
            while (p < until)
            {
                if (p >= covered)
                {
                    Append(PageMap.NotSent, until - p, 0);
                    p = until;
                    return;
                }

                long start = heads[r] >> 1;
                long end = r + 1 < count ? heads[r + 1] >> 1 : covered;
                if (end <= p)
                {
                    r++;
                    continue;
                }

                long step = heads[r] & 1;
                long upTo = Math.Min(end, until);
                Append(values[r] + (step * (p - start)), upTo - p, (int)step);
                p = upTo;
            }
        }
    }

    /// <summary>
    /// Appends <paramref name="n"/> pages after the runs with entries <paramref name="value"/> + <paramref name="step"/>
    /// × k, joined to the last run when they continue it.
    /// </summary>
    private void Append(long value, long n, int step)
    {
        long at = _end;
        if (n == 1)
        {
            step = 0;
        }

        if (_count > 0)
        {
            int last = _count - 1;
            long lastStart = _heads[last] >> 1;
            long lastCount = at - lastStart;
            long lastValue = _values[last];
            int lastStep = (int)(_heads[last] & 1);
            int s = -1;
            if (lastCount > 1 && n > 1)
            {
                s = lastStep == step ? step : -1;
            }
            else if (lastCount > 1)
            {
                s = lastStep;
            }
            else if (n > 1)
            {
                s = step;
            }
            else
            {
                // Two single pages: consecutive ids, or one entry twice.
                s = lastValue >= 0 && value == lastValue + 1 ? 1 : value == lastValue ? 0 : -1;
            }

            if (s >= 0 && (s == 0 || lastValue >= 0) && value == lastValue + (s * lastCount))
            {
                _heads[last] = (lastStart << 1) | (uint)s;
                _end = at + n;
                return;
            }
        }

        if (_count == _heads.Length)
        {
            Array.Resize(ref _heads, _count * 2);
            Array.Resize(ref _values, _count * 2);
        }

        _heads[_count] = (at << 1) | (uint)step;
        _values[_count] = value;
        _count++;
        _end = at + n;
    }
}
