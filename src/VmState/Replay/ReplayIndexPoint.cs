using VmState.History;

namespace VmState.Replay;

/// <summary>What the Linux layer saw in a replay paused at one instruction count (an entry of a <see cref="ReplayIndex"/>).</summary>
/// <param name="Icount">The instruction count the replay was paused at.</param>
/// <param name="View">
/// Processes (pid, comm, start time...), modules, network devices, the kernel log's sequence range and its lines new since
/// the previous point; <see cref="HistoryCaptureIndex.KernelError"/> says why there is none (early boot: no kernel yet).
/// <see cref="HistoryCaptureIndex.Number"/> is the point's position in the index.
/// </param>
public sealed record ReplayIndexPoint(ulong Icount, HistoryCaptureIndex View)
{
    /// <summary>The index pass saved a checkpoint here (<see cref="ReplayCheckpoints"/>; not kept in the index file).</summary>
    public bool Checkpoint { get; init; }

    /// <summary>How long the replay took to run from the previous point to this one (not kept in the index file).</summary>
    public TimeSpan RunTime { get; init; }

    /// <summary>How long reading the guest (the Linux layer) took here (not kept in the index file).</summary>
    public TimeSpan ReadTime { get; init; }

    /// <summary>How long saving the checkpoint took here (not kept in the index file).</summary>
    public TimeSpan CheckpointTime { get; init; }
}
