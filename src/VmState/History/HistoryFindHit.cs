namespace VmState.History;

/// <summary>One capture where a <c>history find</c> predicate holds.</summary>
/// <param name="Capture">The capture.</param>
/// <param name="Detail">What was found there (the process, the value, where the bytes are, the log line).</param>
public sealed record HistoryFindHit(HistoryCapture Capture, string Detail);
