namespace VmState.IO;

/// <summary>
/// Thrown (a <see cref="VmStateException"/>) when an input file does not have the structure a reader expects. The message names the byte offset,
/// the structure being read and what was expected, so a user can look at the bytes with a hex viewer.
/// </summary>
public sealed class VmStateFormatException : VmStateException
{
    /// <summary>Creates the exception for a problem found at <paramref name="offset"/>.</summary>
    public VmStateFormatException(long offset, string structure, string problem, Exception? inner = null)
        : base($"{structure} at offset {offset} (0x{offset:x}): {problem}", inner)
    {
        Offset = offset;
        Structure = structure;
        Problem = problem;
    }

    /// <summary>Byte offset in the input where the problem was found.</summary>
    public long Offset { get; }

    /// <summary>The structure that was being read, e.g. "migration section header".</summary>
    public string Structure { get; }

    /// <summary>What was expected and what was found.</summary>
    public string Problem { get; }
}
