using System.Diagnostics;
using VmState.History;
using VmState.Linux;

namespace VmState.Replay;

/// <summary>
/// Indexes a recording (<c>vmstate rr index</c>): one replay, paused at every <c>every</c> instructions
/// (<c>replay-break</c>, then <c>cont</c>), where the Linux layer reads the guest through the live path (QEMU's
/// process memory, attached on the replay's QMP socket): processes, modules, network devices and the kernel log.
/// </summary>
public static class ReplayIndexer
{
    /// <summary>The interval when none is given: about this many points over the recording.</summary>
    public const int DefaultPoints = 100;

    /// <summary>The default interval for <paramref name="recording"/>: <see cref="DefaultPoints"/> points, at least a million instructions apart.</summary>
    public static ulong DefaultEvery(ReplayRecording recording)
    {
        ArgumentNullException.ThrowIfNull(recording);
        return Math.Max(1_000_000UL, recording.InstructionCount / DefaultPoints);
    }

    /// <summary>
    /// Replays <paramref name="recording"/> once in <paramref name="workDirectory"/>, reads the guest at every
    /// <paramref name="every"/> instructions and at the end, and saves the index in the recording directory.
    /// <paramref name="plainReplayTime"/> (a plain replay's time, when measured) is kept in the index to report the cost.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="every"/> is 0, or makes more than <see cref="ReplayIndex.MaxPoints"/> points.</exception>
    public static async Task<ReplayIndex> BuildAsync(ReplayRecording recording, ulong every, string workDirectory, TimeSpan? plainReplayTime = null, IProgress<ReplayIndexPoint>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(recording);
        ArgumentNullException.ThrowIfNull(workDirectory);
        if (every == 0 || recording.InstructionCount / every >= ReplayIndex.MaxPoints)
        {
            throw new ArgumentOutOfRangeException(nameof(every), every, $"give an interval of at least one instruction and at most {ReplayIndex.MaxPoints} points ({recording.InstructionCount / ReplayIndex.MaxPoints + 1} instructions or more for this recording)");
        }

        var clock = Stopwatch.StartNew();
        var points = new List<ReplayIndexPoint>();
        await using (ReplayProbe probe = await ReplayProbe.StartAsync(recording, workDirectory, null, cancellationToken).ConfigureAwait(false))
        {
            HistoryCaptureIndex? previous = null;
            for (ulong at = every; ; at = Math.Min(at + every, recording.InstructionCount))
            {
                if (!await probe.RunToAsync(at, cancellationToken).ConfigureAwait(false))
                {
                    break;
                }

                HistoryCaptureIndex view = await ReadAsync(probe, points.Count, previous, cancellationToken).ConfigureAwait(false);
                var point = new ReplayIndexPoint(at, view);
                points.Add(point);
                progress?.Report(point);
                previous = view;
                if (at == recording.InstructionCount)
                {
                    break;
                }
            }
        }

        var index = new ReplayIndex(every, recording.InstructionCount, clock.Elapsed, plainReplayTime, points);
        index.Save(recording);
        return index;
    }

    /// <summary>What the Linux layer sees in the paused replay now.</summary>
    internal static async Task<HistoryCaptureIndex> ReadAsync(ReplayProbe probe, int number, HistoryCaptureIndex? previous, CancellationToken cancellationToken)
    {
        LinuxKernel? kernel = await probe.KernelAsync(cancellationToken).ConfigureAwait(false);
        return kernel is null
            ? new HistoryCaptureIndex(number, null, null, probe.KernelError, 0, [], [], [], 0, 0, 0, [])
            : CaptureIndexBuilder.Build(number, kernel, previous, null, null);
    }
}
