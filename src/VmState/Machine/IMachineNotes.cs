namespace VmState.Machine;

/// <summary>
/// Small notes a later layer keeps about a machine's input between runs, such as where the guest kernel was found, so
/// that the next command on the same unchanged file skips the search (<see cref="Snapshots.IndexCache"/> keeps them
/// beside the file's RAM index). A note is tied to the file's identity and content: it is never returned for a file
/// that changed since it was written.
/// </summary>
public interface IMachineNotes
{
    /// <summary>The note of this <paramref name="kind"/>, or null when there is none for the input as it is now.</summary>
    byte[]? Read(string kind);

    /// <summary>Keeps a note (replacing one of the same kind); failing to keep it is not an error, it is just not kept.</summary>
    void Write(string kind, ReadOnlySpan<byte> value);
}
