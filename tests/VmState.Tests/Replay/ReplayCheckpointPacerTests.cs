using VmState.Replay;

namespace VmState.Tests.Replay;

public sealed class ReplayCheckpointPacerTests
{
    private static TimeSpan Ms(int ms) => TimeSpan.FromMilliseconds(ms);

    [Fact]
    public void EveryNthPointIsDueWhateverTheTimes()
    {
        var pacer = new ReplayCheckpointPacer(3, Ms(100));
        var due = new List<bool>();
        for (int i = 0; i < 7; i++)
        {
            bool d = pacer.Due(Ms(1));
            due.Add(d);
            if (d)
            {
                pacer.Saved(Ms(10_000));
            }
        }

        Assert.Equal([false, false, true, false, false, true, false], due);
    }

    [Fact]
    public void AdaptiveIsDueOnceTheReplaySinceTheLastTookKTimesTheLastSave()
    {
        // K = 4. Power-on saved in 100 ms: due at 400 ms of replay (two points of 300 ms); that save took 200 ms: due
        // at 800 ms (three more points); a save of 50 ms then makes the very next point due.
        Assert.Equal(4, ReplayIndexer.AdaptiveReplayPerSave);
        var pacer = new ReplayCheckpointPacer(ReplayIndexer.Adaptive, Ms(100));
        Assert.False(pacer.Due(Ms(300)));
        Assert.True(pacer.Due(Ms(300)));
        pacer.Saved(Ms(200));
        Assert.False(pacer.Due(Ms(300)));
        Assert.False(pacer.Due(Ms(300)));
        Assert.True(pacer.Due(Ms(300)));
        pacer.Saved(Ms(50));
        Assert.True(pacer.Due(Ms(300)));
    }

    [Fact]
    public void ARefusedSaveLeavesTheNextPointDue()
    {
        var pacer = new ReplayCheckpointPacer(ReplayIndexer.Adaptive, Ms(100));
        Assert.True(pacer.Due(Ms(500)));
        // (QEMU refused: Saved not called.)
        Assert.True(pacer.Due(Ms(10)));
        var every = new ReplayCheckpointPacer(2, Ms(100));
        Assert.False(every.Due(Ms(1)));
        Assert.True(every.Due(Ms(1)));
        Assert.True(every.Due(Ms(1)));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-2)]
    public void NoneOrAnotherNegativeIsNoPace(int every) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReplayCheckpointPacer(every, TimeSpan.Zero));

    [Fact]
    public void AdaptiveSavesCostAtMostAQuarterOfTheReplay()
    {
        // A seeded property: random replay stretches and save times (the next save costs what the last did, as the
        // estimate assumes); the saves never add up to more than 1/K of the replay before them.
        var random = new Random(14);
        for (int run = 0; run < 200; run++)
        {
            TimeSpan save = Ms(random.Next(1, 500));
            var pacer = new ReplayCheckpointPacer(ReplayIndexer.Adaptive, save);
            TimeSpan replay = TimeSpan.Zero, saves = TimeSpan.Zero;
            for (int point = 0; point < 100; point++)
            {
                TimeSpan r = Ms(random.Next(1, 1000));
                replay += r;
                if (pacer.Due(r))
                {
                    saves += save;
                    pacer.Saved(save);
                }
            }

            Assert.True(saves * ReplayIndexer.AdaptiveReplayPerSave <= replay, $"run {run}: saves {saves} for a replay of {replay}");
        }
    }
}
