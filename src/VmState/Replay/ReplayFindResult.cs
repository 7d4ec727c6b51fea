namespace VmState.Replay;

/// <summary>What <see cref="ReplayFinder"/> found.</summary>
/// <param name="Predicate">The predicate's description.</param>
/// <param name="Transitions">The exact transitions found, in order (the first one only unless every one was asked for).</param>
/// <param name="CoarseFrom">The index point before the first transition (where the index or the scan of its points narrowed it to), or null.</param>
/// <param name="CoarseTo">The index point at or after the first transition, or null.</param>
/// <param name="Replays">How many replays were started.</param>
/// <param name="Stops">At how many instruction counts a replay was paused and read.</param>
/// <param name="Elapsed">The whole search's time.</param>
public sealed record ReplayFindResult(string Predicate, IReadOnlyList<ReplayTransition> Transitions, ulong? CoarseFrom, ulong? CoarseTo, int Replays, int Stops, TimeSpan Elapsed)
{
    /// <summary>How many times a replay loaded a checkpoint (<see cref="ReplayCheckpoints"/>) instead of replaying from power-on.</summary>
    public int CheckpointLoads { get; init; }

    /// <summary>How many times a breakpoint search skipped ahead with the breakpoint removed (<c>--break --before</c>: few stops, see <see cref="ReplayFinder.FindBreakAsync"/>).</summary>
    public int Skips { get; init; }
}
