using System.Diagnostics;
using VmState.History;
using VmState.Live;
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

    /// <summary>
    /// The <c>checkpointEvery</c> of <see cref="BuildAsync"/> that spaces checkpoints by their cost: after power-on's, a
    /// point gets one once the replay since the last checkpoint took at least <see cref="AdaptiveReplayPerSave"/> times
    /// as long as the last <c>savevm</c> (see there).
    /// </summary>
    public const int Adaptive = -1;

    /// <summary>The checkpoints when none are asked for: <see cref="Adaptive"/>.</summary>
    public const int DefaultCheckpointEvery = Adaptive;

    /// <summary>
    /// K of <see cref="Adaptive"/>: a checkpoint once the replay since the last one took K times the last save, so the
    /// saves cost at most 1/K of the replay (about: the next save is estimated by the last). Why 4: issue 14 asks for an
    /// index pass of at most 1.5x a plain replay, and the pass without checkpoints measured 1.01–1.32x (noisy, 2 shared
    /// cores: docs/benchmarks.md), which leaves 0.18x or more for checkpoints; at most a quarter of the replay, in
    /// practice 0.11–0.13x for the fixture (a point's replay is rarely an exact multiple, so the saves fall further
    /// apart), fits that, where a checkpoint at every point cost 0.41–0.42x. The spacing stays short for searches:
    /// 4 saves of the fixture (0.1–0.3 s each) are about a second of replay, the cost of starting a replay from a
    /// checkpoint at all (rr find's <c>CheckpointGain</c>). With a larger guest (a slower savevm) or a shorter
    /// interval the checkpoints thin out instead of the pass slowing down.
    /// </summary>
    public const int AdaptiveReplayPerSave = 4;

    /// <summary>
    /// Why checkpoints cannot be used for <paramref name="recording"/>, or null when they can: QEMU 7.2 loads a snapshot
    /// into a replay with <c>filter-replay</c> NICs, but the replay then stops advancing a few million instructions on
    /// (<c>benchmarks/rr-snapshot-repro.py nics</c>; QEMU issue #2634 reports snapshot loads in replay hanging).
    /// </summary>
    public static string? CheckpointsUnsupported(ReplayRecording recording)
    {
        ArgumentNullException.ThrowIfNull(recording);
        return QemuArguments.Parse(recording.Command).Options.Any(o => o.Name == "netdev")
            ? "the recording has network devices (-netdev): QEMU 7.2's replay stops advancing after it loads a snapshot with filter-replay NICs (QEMU issue #2634), so rr index saves no checkpoints and replays start at power-on"
            : null;
    }

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
    /// With <paramref name="checkpointEvery"/> above 0 it also saves a checkpoint (<see cref="ReplayCheckpoints"/>) at
    /// power-on and at every that many points, with <see cref="Adaptive"/> at power-on and where the replay since the
    /// last one took <see cref="AdaptiveReplayPerSave"/> times the last save (either way at the next point when QEMU
    /// refuses one because replay events are pending), into <c>REC/checkpoints</c>, which replaces the one there once
    /// the pass is complete. The points say where checkpoints were saved and what each cost
    /// (<see cref="ReplayIndexPoint.Checkpoint"/>, <see cref="ReplayIndexPoint.CheckpointTime"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="every"/> is 0, or makes more than <see cref="ReplayIndex.MaxPoints"/> points; <paramref name="checkpointEvery"/> is negative and not <see cref="Adaptive"/>.</exception>
    public static async Task<ReplayIndex> BuildAsync(ReplayRecording recording, ulong every, string workDirectory, TimeSpan? plainReplayTime = null, IProgress<ReplayIndexPoint>? progress = null, CancellationToken cancellationToken = default, int checkpointEvery = 0)
    {
        ArgumentNullException.ThrowIfNull(recording);
        ArgumentNullException.ThrowIfNull(workDirectory);
        if (checkpointEvery < 0 && checkpointEvery != Adaptive)
        {
            throw new ArgumentOutOfRangeException(nameof(checkpointEvery), checkpointEvery, "give 0 (no checkpoints), a number of points, or ReplayIndexer.Adaptive");
        }

        if (every == 0 || recording.InstructionCount / every >= ReplayIndex.MaxPoints)
        {
            throw new ArgumentOutOfRangeException(nameof(every), every, $"give an interval of at least one instruction and at most {ReplayIndex.MaxPoints} points ({recording.InstructionCount / ReplayIndex.MaxPoints + 1} instructions or more for this recording)");
        }

        if (checkpointEvery != 0 && CheckpointsUnsupported(recording) is string why)
        {
            throw new ArgumentException($"no checkpoints: {why}; index with --checkpoints 0");
        }

        string checkpointsFinal = ReplayCheckpoints.PathOf(recording);
        string? checkpointWork = checkpointEvery != 0 ? checkpointsFinal + ".new" : null;
        if (checkpointWork is not null && Directory.Exists(checkpointWork))
        {
            Directory.Delete(checkpointWork, recursive: true);
        }

        var clock = Stopwatch.StartNew();
        var points = new List<ReplayIndexPoint>();
        TimeSpan? powerOnSave = null;
        try
        {
            await using (ReplayProbe probe = await ReplayProbe.StartAsync(recording, checkpointWork ?? workDirectory, null, cancellationToken).ConfigureAwait(false))
            {
                HistoryCaptureIndex? previous = null;
                ReplayCheckpointPacer? pacer = null;
                if (checkpointWork is not null)
                {
                    long s0 = Stopwatch.GetTimestamp();
                    if (!await probe.Session.SaveCheckpointAsync(cancellationToken).ConfigureAwait(false))
                    {
                        throw new IOException("QEMU refused a checkpoint at power-on (replay events pending)");
                    }

                    powerOnSave = Stopwatch.GetElapsedTime(s0);
                    pacer = new ReplayCheckpointPacer(checkpointEvery, powerOnSave.Value);
                }

                for (ulong at = every; ; at = Math.Min(at + every, recording.InstructionCount))
                {
                    long t0 = Stopwatch.GetTimestamp();
                    if (!await probe.RunToAsync(at, cancellationToken).ConfigureAwait(false))
                    {
                        break;
                    }

                    long t1 = Stopwatch.GetTimestamp();
                    HistoryCaptureIndex view = await ReadAsync(probe, points.Count, previous, cancellationToken).ConfigureAwait(false);
                    long t2 = Stopwatch.GetTimestamp();
                    bool saved = pacer is not null && pacer.Due(Stopwatch.GetElapsedTime(t0, t1)) && at < recording.InstructionCount
                        && await probe.Session.SaveCheckpointAsync(cancellationToken).ConfigureAwait(false);
                    if (saved)
                    {
                        pacer!.Saved(Stopwatch.GetElapsedTime(t2));
                    }

                    var point = new ReplayIndexPoint(at, view)
                    {
                        Checkpoint = saved,
                        RunTime = Stopwatch.GetElapsedTime(t0, t1),
                        ReadTime = Stopwatch.GetElapsedTime(t1, t2),
                        CheckpointTime = Stopwatch.GetElapsedTime(t2),
                    };
                    points.Add(point);

                    progress?.Report(point);
                    previous = view;
                    if (at == recording.InstructionCount)
                    {
                        break;
                    }
                }
            }

            if (checkpointWork is not null)
            {
                // Only the checkpoint images and the disk overlays stay (not the replay's console files, nor its empty
                // snapshot image).
                var overlays = new HashSet<string>(recording.Drives.Where(d => !d.ReadOnly).Select(d => d.OverlayName), StringComparer.Ordinal);
                foreach (string f in Directory.EnumerateFiles(checkpointWork).Where(f => !overlays.Contains(Path.GetFileName(f))
                    && ReplayCheckpoints.ParseImageNames([Path.GetFileName(f)], checkpointWork).Count == 0))
                {
                    File.Delete(f);
                }

                if (Directory.Exists(checkpointsFinal))
                {
                    Directory.Delete(checkpointsFinal, recursive: true);
                }

                Directory.Move(checkpointWork, checkpointsFinal);
            }
        }
        finally
        {
            if (checkpointWork is not null && Directory.Exists(checkpointWork))
            {
                Directory.Delete(checkpointWork, recursive: true);
            }
        }

        var index = new ReplayIndex(every, recording.InstructionCount, clock.Elapsed, plainReplayTime, points) { PowerOnCheckpointTime = powerOnSave };
        index.Save(recording);
        return index;
    }

    /// <summary>What the Linux layer sees in the paused replay now.</summary>
    internal static async Task<HistoryCaptureIndex> ReadAsync(ReplayProbe probe, int number, HistoryCaptureIndex? previous, CancellationToken cancellationToken)
    {
        LinuxKernel? kernel = await probe.KernelAsync(cancellationToken).ConfigureAwait(false);
        if (kernel is null)
        {
            return new HistoryCaptureIndex(number, null, null, probe.KernelError, 0, [], [], [], 0, 0, 0, []);
        }

        HistoryCaptureIndex view = CaptureIndexBuilder.Build(number, kernel, previous, null, null);
        if (view.KernelError is string error)
        {
            // Located too early (the boot's first page tables, lists not yet set up): the next point locates it again,
            // or every later point would fail the same way (seen: an index with no processes at all).
            probe.ForgetKernel(error);
        }

        return view;
    }
}
