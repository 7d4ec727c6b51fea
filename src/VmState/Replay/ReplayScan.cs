namespace VmState.Replay;

/// <summary>
/// What one forward run looking for the last hit of a breakpoint found (<see cref="ReplayGdb.LastHitAsync"/>): it began
/// at <paramref name="Start"/>; <paramref name="Last"/> is the last hit before its end, or null. When null and
/// <paramref name="Gap"/> is given, the run skipped that part with the breakpoint removed and saw no hit after it: the
/// answer lies in the gap, or is the gap's floor (the last hit before it). With neither, nothing from
/// <paramref name="Start"/> to the end was hit.
/// </summary>
internal sealed record ReplayScan(ulong Start, ulong? Last, ReplayGap? Gap);

/// <summary>Instructions <paramref name="From"/> to <paramref name="To"/> (exclusive) run with no breakpoint; <paramref name="Floor"/>: the last hit before them, if any.</summary>
internal sealed record ReplayGap(ulong From, ulong To, ulong? Floor);
