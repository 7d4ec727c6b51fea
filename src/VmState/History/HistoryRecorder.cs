using System.Diagnostics;
using VmState.Live;

namespace VmState.History;

/// <summary>One capture <see cref="HistoryRecorder"/> took: what the store added and how the VM was captured.</summary>
/// <param name="Capture">The capture as the store's manifest lists it.</param>
/// <param name="Save">How QEMU saved the state: background snapshot or pause, guest pause, bytes, wall time.</param>
public sealed record RecordedCapture(HistoryCapture Capture, SaveResult Save)
{
    /// <summary>The capture's index (processes, modules, new kernel log lines), computed after QEMU finished the capture.</summary>
    public HistoryCaptureIndex? Index { get; init; }
}

/// <summary>What <see cref="HistoryRecorder.RecordAsync"/> should do.</summary>
public sealed record HistoryRecordOptions
{
    /// <summary>Time from the start of one capture to the start of the next (a capture that takes longer is followed at once).</summary>
    public TimeSpan Every { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Stop after this many captures (null: no limit).</summary>
    public int? Count { get; init; }

    /// <summary>Stop starting captures after this long (null: no limit).</summary>
    public TimeSpan? Duration { get; init; }

    /// <summary>The source each capture is listed with (e.g. the QMP socket).</summary>
    public string Source { get; init; } = "running VM";
}

/// <summary>
/// Records a running VM into a history store: each capture is QEMU's background snapshot streamed straight into the
/// store's writer (<see cref="LiveMachine.CaptureAsync"/> → <see cref="HistoryStoreWriter.Append"/>), never a file;
/// then indexed (<see cref="HistoryStoreWriter.IndexCapture"/>) with its guest pause and wall time.
/// A capture is committed whole or not at all: a failure in the middle leaves the store as it was before that capture,
/// and the guest running. Cancellation takes effect between captures: one in progress is finished and kept first.
/// </summary>
public static class HistoryRecorder
{
    /// <summary>Takes captures until the count or duration is reached or <paramref name="cancellationToken"/> is cancelled; returns them.</summary>
    /// <param name="live">The running VM.</param>
    /// <param name="writer">The store (open for writing: this process holds its lock).</param>
    /// <param name="options">Interval and limits.</param>
    /// <param name="onCapture">Called after each committed capture (e.g. to print it).</param>
    /// <param name="cancellationToken">Stops recording after the capture in progress (which is finished and kept).</param>
    /// <exception cref="OperationCanceledException">Never: cancellation ends the recording normally.</exception>
    public static async Task<IReadOnlyList<RecordedCapture>> RecordAsync(LiveMachine live, HistoryStoreWriter writer, HistoryRecordOptions options, Action<RecordedCapture>? onCapture = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(live);
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Every, TimeSpan.Zero);
        var taken = new List<RecordedCapture>();
        var clock = Stopwatch.StartNew();
        try
        {
            while (options.Count is not int n || taken.Count < n)
            {
                if (cancellationToken.IsCancellationRequested || (options.Duration is TimeSpan d && clock.Elapsed >= d))
                {
                    break;
                }

                TimeSpan started = clock.Elapsed;
                DateTimeOffset time = DateTimeOffset.UtcNow;
                HistoryCapture? capture = null;
                bool indexed = writer.IndexOnAppend;
                writer.IndexOnAppend = false;
                // A capture that has started is finished, not cancelled: QEMU 7.2 leaves the guest hung when a background
                // snapshot is cut off once RAM is write-protected (measured), so Ctrl-C takes effect between captures.
                SaveResult save = await live.CaptureAsync(
                    (stream, _) => Task.Run(() => capture = writer.Append(stream, options.Source, time)),
                    CancellationToken.None).ConfigureAwait(false);
                writer.IndexOnAppend = indexed;

                // The index is computed from the stored capture once QEMU is done, so it costs the guest nothing and
                // keeps the capture's guest pause and wall time.
                HistoryCaptureIndex index = writer.IndexCapture(capture!, save.GuestPause, save.Elapsed);
                var recorded = new RecordedCapture(capture!, save) { Index = index };
                taken.Add(recorded);
                onCapture?.Invoke(recorded);

                if (options.Count is int max && taken.Count >= max)
                {
                    break;
                }

                TimeSpan wait = started + options.Every - clock.Elapsed;
                if (options.Duration is TimeSpan limit && clock.Elapsed + (wait > TimeSpan.Zero ? wait : TimeSpan.Zero) >= limit)
                {
                    break;
                }

                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Ctrl-C while waiting for the next capture: the recording ends.
        }

        return taken;
    }
}
