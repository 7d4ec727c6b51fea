namespace VmState.Gdb;

/// <summary>A reply, console output to show before it (O packet), and whether the connection ends after it.</summary>
/// <param name="Reply">The reply packet's payload.</param>
/// <param name="Output">Text for gdb's console, sent first as an O packet; null for none.</param>
/// <param name="End">True when the connection ends after the reply.</param>
internal readonly record struct GdbAnswer(string Reply, string? Output = null, bool End = false);
