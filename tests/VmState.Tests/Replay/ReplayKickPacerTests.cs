using System.Diagnostics;
using VmState.Replay;

namespace VmState.Tests.Replay;

public sealed class ReplayKickPacerTests
{
    private static long Ms(double ms) => (long)(ms * Stopwatch.Frequency / 1000);

    [Fact]
    public void AnIdleReplayIsAskedEveryKickIntervalAndABusyOneLessOftenUpToTheMaximum()
    {
        var pacer = new ReplayKickPacer();
        Assert.Equal(ReplaySession.KickInterval, pacer.Delay);
        pacer.Observe(1_000_000, Ms(0));
        Assert.Equal(ReplaySession.KickInterval, pacer.Delay);

        // Busy: 200,000 instructions a millisecond; the delay doubles, up to the maximum.
        long t = 0;
        ulong count = 1_000_000;
        var delays = new List<TimeSpan>();
        for (int i = 0; i < 8; i++)
        {
            t += Ms(pacer.Delay.TotalMilliseconds);
            count += (ulong)(200_000 * pacer.Delay.TotalMilliseconds);
            pacer.Observe(count, t);
            delays.Add(pacer.Delay);
        }

        Assert.Equal(ReplaySession.KickInterval * 2, delays[0]);
        Assert.Equal(ReplayKickPacer.MaxDelay, delays[^1]);
        Assert.All(delays.Zip(delays.Skip(1)), d => Assert.True(d.Second >= d.First));

        // Idle (the count stays, or creeps): back to every kick interval at once.
        pacer.Observe(count, t + Ms(64));
        Assert.Equal(ReplaySession.KickInterval, pacer.Delay);
        pacer.Observe(count + 1_000, t + Ms(66));
        Assert.Equal(ReplaySession.KickInterval, pacer.Delay);
    }
}
