using VmState.History;
using VmState.IO;

namespace VmState.Tests.History;

/// <summary>
/// The page map kept as runs (<see cref="PageRunMap"/>, <see cref="PageRunMapBuilder"/>) and its on-disk form
/// (<see cref="PageMap"/>): every map compared with the plain per-page array it stands for.
/// </summary>
public sealed class PageRunMapTests
{
    private const long NotSent = PageMap.NotSent;

    /// <summary>A page map as a guest gives it: stretches of consecutive ids, zero and other fill pages, repeated ids, holes.</summary>
    private static long[] Guest(Random rng, int pages, long ids)
    {
        long[] e = new long[pages];
        int p = 0;
        long next = rng.NextInt64(ids);
        while (p < pages)
        {
            int n = Math.Min(pages - p, 1 + rng.Next(rng.Next(2) == 0 ? 4 : 300));
            int kind = rng.Next(10);
            for (int k = 0; k < n; k++)
            {
                e[p + k] = kind switch
                {
                    0 => NotSent,
                    1 or 2 => PageMap.FillEntry(0),
                    3 => PageMap.FillEntry((byte)rng.Next(256)),
                    4 => next % ids,
                    5 => rng.NextInt64(ids),
                    _ => (next + k) % ids,
                };
            }

            next = rng.NextInt64(ids);
            p += n;
        }

        return e;
    }

    private static byte[] Encode(PageRunMap map)
    {
        var w = new StoreFileWriter();
        PageMap.Encode(w, map);
        return w.ToArray();
    }

    private static PageRunMap Decode(byte[] bytes, long pages, long ids)
    {
        var r = new StoreFileReader(bytes, "capture");
        PageRunMap map = PageMap.Decode(ref r, pages, ids, "block \"pc.ram\" page map");
        r.End();
        return map;
    }

    /// <summary>The encoder before maps were kept as runs (one entry per page in memory), kept as the reference for old stores.</summary>
    private static byte[] EncodeBefore(long[] entries)
    {
        var runs = new List<(int Kind, long Count, long Value)>();
        int i = 0;
        while (i < entries.Length)
        {
            long e = entries[i];
            int n = 1;
            int kind;
            if (e == NotSent || e < 0)
            {
                while (i + n < entries.Length && entries[i + n] == e)
                {
                    n++;
                }

                kind = e == NotSent ? 0 : 1;
            }
            else if (i + 1 < entries.Length && entries[i + 1] == e)
            {
                while (i + n < entries.Length && entries[i + n] == e)
                {
                    n++;
                }

                kind = 3;
            }
            else
            {
                while (i + n < entries.Length && entries[i + n] == e + n)
                {
                    n++;
                }

                kind = 2;
            }

            runs.Add((kind, n, kind == 1 ? -2 - e : e));
            i += n;
        }

        var w = new StoreFileWriter();
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

        return w.ToArray();
    }

    private static void AssertSame(long[] expected, PageRunMap map)
    {
        Assert.Equal(expected.Length, map.Pages);
        Assert.Equal(expected, map.ToArray());
        long covered = 0;
        for (int i = 0; i < map.RunCount; i++)
        {
            PageRun run = map.Run(i);
            Assert.Equal(covered, run.Start);
            Assert.True(run.Count > 0);
            covered += run.Count;
        }

        Assert.Equal(expected.Length, covered);
        var rng = new Random(expected.Length);
        for (int i = 0; i < Math.Min(expected.Length, 500); i++)
        {
            long p = rng.NextInt64(expected.Length);
            Assert.Equal(expected[p], map[p]);
        }
    }

    private static long ChangedBrute(long[] now, long[]? before)
    {
        long changed = 0;
        for (int p = 0; p < now.Length; p++)
        {
            long old = before is not null && p < before.Length ? before[p] : NotSent;
            if (now[p] != old && !(now[p] == NotSent && before is null))
            {
                changed++;
            }
        }

        return changed;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void RoundTripsThroughTheBuilderAndTheDiskForm(int seed)
    {
        var rng = new Random(seed);
        int pages = seed == 1 ? 1 : rng.Next(1, 20_000);
        long ids = 1 + rng.Next(50_000);
        long[] entries = Guest(rng, pages, ids);

        PageRunMap inOrder = PageRunMap.FromEntries(entries);
        AssertSame(entries, inOrder);
        AssertSame(entries, Decode(Encode(inOrder), pages, ids));

        // A store written before maps were kept as runs reads as it did.
        byte[] before = EncodeBefore(entries);
        AssertSame(entries, Decode(before, pages, ids));
        Assert.True(Encode(inOrder).Length <= before.Length, "the runs are never more than the old encoder's");
    }

    [Theory]
    [InlineData(11, 3_000)]
    [InlineData(12, 200_000)]
    public void PagesSetInAnyOrderWithLaterRecordsWinningGiveTheSameMap(int seed, int pages)
    {
        var rng = new Random(seed);
        long[] expected = Guest(rng, pages, 1 << 40);
        long[] order = [.. Enumerable.Range(0, pages).Select(i => (long)i)];
        // Mostly in order, as a stream sends them; some pages early (a background snapshot's write faults), some
        // twice (a precopy stream's dirty pages), some never (holes stay not sent).
        for (int i = 0; i < pages / 50; i++)
        {
            int a = rng.Next(pages);
            int b = rng.Next(pages);
            (order[a], order[b]) = (order[b], order[a]);
        }

        var builder = new PageRunMapBuilder(pages);
        int maxPending = 0;
        foreach (long p in order)
        {
            bool sent = expected[p] != NotSent || rng.Next(2) == 0;
            if (sent && rng.Next(40) == 0)
            {
                builder.Set(p, rng.NextInt64(1 << 40)); // replaced by the record below
            }

            if (sent)
            {
                builder.Set(p, expected[p]);
            }

            maxPending = Math.Max(maxPending, builder.PendingCount);
        }

        // Pages out of order wait in a bounded table (a page sent late holds back those after it until a fold).
        Assert.InRange(maxPending, 1, PageRunMapBuilder.MaxPending - 1);
        AssertSame(expected, builder.Build());
    }

    [Fact]
    public void MemoryFollowsTheRunsNotTheBlock()
    {
        // A 16 GiB block (4 Mi pages) as a first capture of a mostly idle guest gives it: data in a few places,
        // consecutive ids in stream order, the rest zero pages. Set page by page as the stream would.
        const long Pages = 4L << 20;
        var b = new PageRunMapBuilder(Pages);
        long id = 0;
        for (long p = 0; p < Pages; p++)
        {
            bool data = p < 40_000 || (p >= 1_000_000 && p < 1_010_000) || p % 100_000 == 7;
            b.Set(p, data ? id++ : PageMap.FillEntry(0));
        }

        PageRunMap first = b.Build();
        Assert.True(first.RunCount < 200, $"{first.RunCount} runs");
        Assert.True(first.RunBytes < 4096, $"{first.RunBytes} bytes for {Pages} pages");

        // The next capture: 1,000 pages changed (new ids), 50 of them sent ahead of their turn.
        var next = new PageRunMapBuilder(Pages);
        var changed = new HashSet<long>();
        var rng = new Random(7);
        while (changed.Count < 1000)
        {
            changed.Add(rng.NextInt64(Pages));
        }

        long[] early = [.. changed.Take(50)];
        long fresh = id;
        var expectedNew = new Dictionary<long, long>();
        foreach (long p in early)
        {
            expectedNew[p] = fresh;
            next.Set(p, fresh++);
        }

        for (int i = 0; i < first.RunCount; i++)
        {
            PageRun run = first.Run(i);
            for (long k = 0; k < run.Count; k++)
            {
                long p = run.Start + k;
                if (expectedNew.ContainsKey(p))
                {
                    continue;
                }

                long e = run.Entry(k);
                if (changed.Contains(p))
                {
                    e = fresh++;
                    expectedNew[p] = e;
                }

                next.Set(p, e);
            }
        }

        PageRunMap second = next.Build();
        Assert.Equal(1000, second.CountChanged(first));
        Assert.True(second.RunCount < first.RunCount + (3 * 1000), $"{second.RunCount} runs");
        foreach ((long p, long e) in expectedNew)
        {
            Assert.Equal(e, second[p]);
        }
    }

    [Theory]
    [InlineData(21)]
    [InlineData(22)]
    [InlineData(23)]
    [InlineData(24)]
    public void CountsChangedPagesAsAPageByPageComparisonDoes(int seed)
    {
        var rng = new Random(seed);
        int pages = rng.Next(1, 5000);
        long[] before = Guest(rng, pages, 200);
        long[] now = (long[])before.Clone();
        for (int i = rng.Next(pages / 4); i >= 0; i--)
        {
            int p = rng.Next(pages);
            int n = Math.Min(pages - p, rng.Next(1, 50));
            long v = rng.Next(3) == 0 ? PageMap.FillEntry(0) : rng.NextInt64(200);
            for (int k = 0; k < n; k++)
            {
                now[p + k] = rng.Next(2) == 0 ? v + k : v;
            }
        }

        PageRunMap a = PageRunMap.FromEntries(now);
        Assert.Equal(ChangedBrute(now, before), a.CountChanged(PageRunMap.FromEntries(before)));
        Assert.Equal(ChangedBrute(now, null), a.CountChanged(null));
        // The previous capture's block was shorter or longer.
        long[] shorter = before[..(pages / 2)];
        Assert.Equal(ChangedBrute(now, shorter), a.CountChanged(PageRunMap.FromEntries(shorter)));
        long[] longer = [.. before, .. Guest(rng, 100, 200)];
        Assert.Equal(ChangedBrute(now, longer), a.CountChanged(PageRunMap.FromEntries(longer)));
        // Lines of slope 1 and 0 that meet at one page: ids 5,6,7,8 against 7,7,7,7 differ in three pages.
        Assert.Equal(3, PageRunMap.FromEntries([5, 6, 7, 8]).CountChanged(PageRunMap.FromEntries([7, 7, 7, 7])));
        a.Count(out long data, out long fills);
        Assert.Equal(now.Count(e => e >= 0), data);
        Assert.Equal(now.Count(e => e < -1), fills);
    }

    [Fact]
    public void HostileMapsGiveErrorsNamingTheFieldWithoutAllocatingForTheClaimedSize()
    {
        long[] entries = Guest(new Random(31), 5000, 1000);
        byte[] good = Encode(PageRunMap.FromEntries(entries));

        VmStateFormatException Bad(byte[] bytes, long pages = 5000, long ids = 1000) =>
            Assert.Throws<VmStateFormatException>(() => Decode(bytes, pages, ids));

        // A run count of 4 billion for a 2^40-page block in 9 bytes: refused before anything is allocated.
        var w = new StoreFileWriter();
        w.U32(uint.MaxValue);
        w.VarUInt((1UL << 40) << 2);
        Assert.Contains("run count", Bad(w.ToArray(), pages: 1L << 40).Message, StringComparison.Ordinal);

        // More runs than pages.
        w = new StoreFileWriter();
        w.U32(3);
        w.VarUInt((1 << 2) | 0);
        w.VarUInt((1 << 2) | 0);
        w.VarUInt((1 << 2) | 0);
        Assert.Contains("3 runs for 2 pages", Bad(w.ToArray(), pages: 2).Message, StringComparison.Ordinal);

        // A run of no pages, a run past the block, ids past the store, runs that do not cover the block.
        foreach ((ulong head, ulong? value, string problem) in new (ulong, ulong?, string)[]
        {
            ((0UL << 2) | 0, null, "0 pages"),
            ((5001UL << 2) | 1, 0, "5001 pages"),
            ((10UL << 2) | 2, 995, "ids 995-1004"),
            ((10UL << 2) | 3, 1000, "ids 1000-1000"),
            ((10UL << 2) | 2, ulong.MaxValue - 3, "content id"),
            ((4999UL << 2) | 0, null, "cover 4999 pages"),
        })
        {
            w = new StoreFileWriter();
            w.U32(1);
            w.VarUInt(head);
            if (value is ulong v)
            {
                w.VarUInt(v);
            }
            else if ((head & 3) == 1)
            {
                w.U8(0);
            }

            VmStateFormatException e = Bad(w.ToArray());
            Assert.Contains("block \"pc.ram\" page map", e.Message, StringComparison.Ordinal);
            Assert.Contains(problem, e.Message, StringComparison.Ordinal);
        }

        // Every truncation and random damage: a format error or a map that still covers the block, nothing else.
        var rng = new Random(32);
        for (int i = 0; i < 300; i++)
        {
            Bad(good[..rng.Next(good.Length)]);
            byte[] damaged = (byte[])good.Clone();
            damaged[rng.Next(damaged.Length)] ^= (byte)(1 + rng.Next(255));
            try
            {
                PageRunMap m = Decode(damaged, 5000, 1000);
                Assert.Equal(5000, m.Pages);
                Assert.All(m.ToArray(), e => Assert.True(e < 1000));
            }
            catch (VmStateFormatException)
            {
            }
        }
    }

    [Fact]
    public void TheBuilderRefusesPagesOutsideTheBlock()
    {
        var b = new PageRunMapBuilder(10);
        Assert.Throws<ArgumentOutOfRangeException>(() => b.Set(10, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => b.Set(-1, 0));
        b.SetRun(0, 10, 100, 1);
        PageRunMap m = b.Build();
        Assert.Equal(1, m.RunCount);
        Assert.Equal([100L, 101, 102, 103, 104, 105, 106, 107, 108, 109], m.ToArray());
        Assert.Equal(0, PageRunMap.NotSent(0).RunCount);
        Assert.Equal([NotSent, NotSent], PageRunMap.NotSent(2).ToArray());
    }
}
