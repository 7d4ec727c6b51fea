namespace VmState.IO;

/// <summary>
/// An input file changed under a command that was reading it: it ended before the length it had when opened
/// (truncated, or rewritten by another program). Reads never fault on such a file (no memory mapping of inputs);
/// they fail with this error, and a long-running server answers that one request with it.
/// </summary>
public sealed class InputChangedException : IOException
{
    /// <summary>Creates the error for <paramref name="name"/>, which ended at <paramref name="endsAt"/> where <paramref name="offset"/> was being read.</summary>
    public InputChangedException(string name, long offset, long openedLength, long endsAt)
        : base($"{name} changed while being read: {openedLength:N0} bytes long when opened, but it now ends at {endsAt:N0} (reading offset {offset:N0}); was it truncated or rewritten by another program?")
    {
        Offset = offset;
    }

    /// <summary>The offset that could not be read.</summary>
    public long Offset { get; }
}
