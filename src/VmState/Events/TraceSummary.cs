namespace VmState.Events;

/// <summary>How a trace ended.</summary>
/// <param name="Hits">Breakpoint hits handled.</param>
/// <param name="Elapsed">From the first resume to the end.</param>
/// <param name="Reason">Why it ended: "max-events", "duration", "cancelled", "handler", "no breakpoints left".</param>
/// <param name="Breakpoints">The breakpoints with their hit counts.</param>
public sealed record TraceSummary(long Hits, TimeSpan Elapsed, string Reason, IReadOnlyList<TraceBreakpoint> Breakpoints);
