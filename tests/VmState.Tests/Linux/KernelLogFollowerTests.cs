using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary><c>dmesg --follow</c>'s polling, in the library: new records once each, overwritten ones counted.</summary>
public sealed class KernelLogFollowerTests
{
    private readonly List<KernelLogRecord> _ring = [];

    private static KernelLogRecord R(ulong seq) => new(seq, seq * 1000, 6, 0, "T1", $"line {seq}");

    private void Ring(params ulong[] seqs)
    {
        _ring.Clear();
        _ring.AddRange(seqs.Select(R));
    }

    [Fact]
    public void TheFirstPollIsTheRingThenOnlyNewRecords()
    {
        var f = new KernelLogFollower(() => [.. _ring]);
        Ring(3, 4, 5);
        KernelLogUpdate first = f.Poll();
        Assert.True(first.IsFirst);
        Assert.Equal([3UL, 4UL, 5UL], first.Records.Select(r => r.Sequence));
        Assert.Equal(0UL, first.Missed);
        Assert.Equal(5UL, f.LastSequence);

        KernelLogUpdate none = f.Poll();
        Assert.False(none.IsFirst);
        Assert.Empty(none.Records);

        Ring(4, 5, 6, 7);
        KernelLogUpdate next = f.Poll();
        Assert.Equal([6UL, 7UL], next.Records.Select(r => r.Sequence));
        Assert.Equal(0UL, next.Missed);
    }

    [Fact]
    public void RecordsTheRingOverwroteBetweenPollsAreCounted()
    {
        var f = new KernelLogFollower(() => [.. _ring]);
        Ring(1, 2);
        f.Poll();
        Ring(9, 10, 11);
        KernelLogUpdate u = f.Poll();
        Assert.Equal([9UL, 10UL, 11UL], u.Records.Select(r => r.Sequence));
        Assert.Equal(6UL, u.Missed); // 3..8
    }

    [Fact]
    public void AnEmptyRingKeepsTheNextPollTheFirst()
    {
        var f = new KernelLogFollower(() => [.. _ring]);
        Assert.True(f.Poll().IsFirst);
        Assert.Null(f.LastSequence);
        Ring(1);
        KernelLogUpdate u = f.Poll();
        Assert.True(u.IsFirst);
        Assert.Single(u.Records);
    }

    [Fact]
    public void FollowYieldsAtOnceAndStopsWhenCancelled()
    {
        Ring(1);
        int reads = 0;
        var f = new KernelLogFollower(() =>
        {
            reads++;
            return [.. _ring];
        });
        using var cts = new CancellationTokenSource();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var seen = new List<KernelLogUpdate>();
        foreach (KernelLogUpdate u in f.Follow(TimeSpan.FromMilliseconds(20), cts.Token))
        {
            seen.Add(u);
            if (seen.Count == 1)
            {
                Assert.Equal(1, reads); // yielded before any wait
                Ring(1, 2);
            }

            if (seen.Count == 3)
            {
                cts.Cancel();
            }
        }

        Assert.Equal(3, seen.Count);
        Assert.Equal([2UL], seen[1].Records.Select(r => r.Sequence));
        Assert.Empty(seen[2].Records);
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(40));
    }

    [Theory]
    [InlineData(0, 0, "emerg", "kern")]
    [InlineData(7, 1, "debug", "user")]
    [InlineData(4, 23, "warn", "local7")]
    [InlineData(12, 24, "warn", null)]
    public void LevelsAndFacilitiesHaveTheirSyslogNames(int level, int facility, string levelName, string? facilityName)
    {
        var r = new KernelLogRecord(1, 0, level, facility, "C0", "x");
        Assert.Equal((levelName, facilityName), (r.LevelName, r.FacilityName));
    }
}
