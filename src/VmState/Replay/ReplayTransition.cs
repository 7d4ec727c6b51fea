namespace VmState.Replay;

/// <summary>A change of a predicate's state: at <see cref="Icount"/> it is <see cref="After"/>, one instruction earlier <see cref="Before"/>.</summary>
/// <param name="Icount">The first instruction count with the new state.</param>
/// <param name="Before">The state at <paramref name="Icount"/> - 1.</param>
/// <param name="After">The state at <paramref name="Icount"/>.</param>
public sealed record ReplayTransition(ulong Icount, string Before, string After);
