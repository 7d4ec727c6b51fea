using VmState.Replay;

namespace VmState.Tests.Replay;

/// <summary>
/// The search for the last hit before a count (<c>rr find --break --before</c>) over simulated replays: each scan
/// starts where <see cref="ReplayFinder"/> would (a checkpoint at or before 50 M instructions below its end) and
/// skips ahead exactly as <see cref="ReplayGdb.SkipTo"/> says, seeing only the hits it does not skip.
/// </summary>
public sealed class ReplayLastHitTests
{
    private sealed class Simulated(IReadOnlyList<ulong> hits, IReadOnlyList<ulong> checkpoints)
    {
        public int Scans { get; private set; }

        public int Stops { get; private set; }

        public Task<ReplayScan> ScanAsync(ulong lowest, ulong hi)
        {
            Scans++;
            ulong wanted = hi - Math.Min(hi, ReplayFinder.ScanSpan);
            ulong start = Math.Max(lowest, checkpoints.Where(c => c <= wanted).DefaultIfEmpty(0UL).Max());
            ulong position = start;
            ulong? first = null, last = null;
            int seen = 0;
            ReplayGap? gap = null;
            foreach (ulong h in hits)
            {
                if (h < position || h >= hi)
                {
                    continue;
                }

                Stops++;
                (last, first, seen) = (h, first ?? h, seen + 1);
                if (ReplayGdb.SkipTo(first.Value, h, seen, hi) is ulong to)
                {
                    Assert.True(to > h && to < hi);
                    gap = new ReplayGap(h + 1, to, h);
                    (position, first, seen, last) = (to, null, 0, null);
                }
            }

            return Task.FromResult(new ReplayScan(start, last, last is null ? gap : null));
        }
    }

    private static async Task<(ulong? Last, Simulated Sim)> Find(ulong[] hits, ulong end, ulong[] checkpoints)
    {
        var sim = new Simulated([.. hits.Order()], checkpoints);
        (ulong? last, _) = await ReplayFinder.LastHitAsync(end, sim.ScanAsync);
        return (last, sim);
    }

    [Fact]
    public async Task EvenlySpacedHitsAreFoundInOneScanWithAFewStops()
    {
        ulong[] hits = [.. Enumerable.Range(1, 10_000).Select(i => (ulong)i * 100_000)];
        (ulong? last, Simulated sim) = await Find(hits, 987_654_321, [0, 500_000_000, 900_000_000]);
        Assert.Equal(987_600_000UL, last);
        Assert.Equal(1, sim.Scans);
        Assert.True(sim.Stops < 30, $"{sim.Stops} stops");
    }

    [Fact]
    public async Task AWindowThatHoldsNoHitSendsTheSearchIntoThePartItSkipped()
    {
        // Dense at first (the rate says: skip), then one lone hit and none in the window near the end.
        ulong[] hits = [.. Enumerable.Range(0, 20).Select(i => 900_000_000 + (ulong)i * 1_000), 930_000_000];
        (ulong? last, Simulated sim) = await Find(hits, 980_000_000, [0, 900_000_000]);
        Assert.Equal(930_000_000UL, last);
        Assert.True(sim.Scans >= 2);
    }

    [Fact]
    public async Task NoHitBeforeTheCountIsNone()
    {
        (ulong? last, _) = await Find([5_000_000_000], 4_000_000_000, [0, 1_000_000_000, 3_990_000_000]);
        Assert.Null(last);
    }

    [Fact]
    public async Task AHitAtTheCountItselfIsNotOneBeforeIt()
    {
        (ulong? last, _) = await Find([10, 20, 30], 30, [0]);
        Assert.Equal(20UL, last);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public async Task BurstyHitsGiveTheTrueLastHit(int seed)
    {
        // Bursts of hits close together with long quiet stretches between, as a syscall's entry is hit.
        var random = new Random(seed);
        var hits = new List<ulong>();
        ulong at = (ulong)random.Next(1, 50_000_000);
        while (hits.Count < 400)
        {
            int burst = random.Next(1, 12);
            for (int i = 0; i < burst; i++)
            {
                at += (ulong)random.Next(1, 20_000);
                hits.Add(at);
            }

            at += (ulong)random.Next(1, 80_000_000);
        }

        ulong end = at - (ulong)random.Next(0, 100_000_000);
        ulong[] checkpoints = [0, .. Enumerable.Range(1, 40).Select(i => (ulong)i * (at / 40))];
        (ulong? last, _) = await Find([.. hits], end, checkpoints);
        Assert.Equal(hits.Where(h => h < end).Cast<ulong?>().LastOrDefault(), last);
    }
}
