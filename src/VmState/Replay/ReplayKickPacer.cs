using System.Diagnostics;

namespace VmState.Replay;

/// <summary>
/// How long a wait for a running replay to stop waits before it asks QEMU for the count again. Each question also wakes
/// QEMU's main loop, which is what replays a guest's idle time (<see cref="ReplaySession.KickInterval"/>), but while the
/// guest is busy every wake-up takes the replay from its vCPU for a moment (waking it every 2 ms made a busy stretch
/// replay about 1.5x slower here). So the wait asks every <see cref="ReplaySession.KickInterval"/> while the count
/// advances slowly (an idle guest) and backs off, doubling up to <see cref="MaxDelay"/>, while it advances fast.
/// </summary>
internal sealed class ReplayKickPacer
{
    /// <summary>Below this many instructions per millisecond the guest is taken to be idle (a busy TCG replay runs 200,000 or more here).</summary>
    internal const double IdleInstructionsPerMs = 20_000;

    /// <summary>The longest wait between two questions while the replay is busy.</summary>
    internal static readonly TimeSpan MaxDelay = TimeSpan.FromMilliseconds(64);

    private ulong? _count;
    private long _at;

    /// <summary>How long to wait before the next question.</summary>
    public TimeSpan Delay { get; private set; } = ReplaySession.KickInterval;

    /// <summary>Takes the count QEMU answered, and sets <see cref="Delay"/> from how fast it advanced since the last one.</summary>
    public void Observe(ulong count) => Observe(count, Stopwatch.GetTimestamp());

    /// <summary><see cref="Observe(ulong)"/> at the <see cref="Stopwatch"/> timestamp <paramref name="now"/>.</summary>
    internal void Observe(ulong count, long now)
    {
        if (_count is ulong before)
        {
            double ms = Stopwatch.GetElapsedTime(_at, now).TotalMilliseconds;
            bool idle = count <= before || (count - before) < IdleInstructionsPerMs * Math.Max(ms, 0.001);
            Delay = idle ? ReplaySession.KickInterval : TimeSpan.FromTicks(Math.Min(MaxDelay.Ticks, Delay.Ticks * 2));
        }

        (_count, _at) = (count, now);
    }
}
