namespace VmState.History;

/// <summary>One kernel log record as a capture's index keeps it.</summary>
/// <param name="Sequence">The printk sequence number.</param>
/// <param name="TimestampNs">Nanoseconds since boot.</param>
/// <param name="Level">The log level (0 emerg to 7 debug).</param>
/// <param name="Text">The message.</param>
public sealed record HistoryLogLine(ulong Sequence, ulong TimestampNs, int Level, string Text)
{
    /// <summary>The line as <c>dmesg</c> prints it: "[  seconds.micros] text".</summary>
    public string Format() => $"[{TimestampNs / 1_000_000_000,5}.{TimestampNs % 1_000_000_000 / 1000:D6}] {Text}";
}
