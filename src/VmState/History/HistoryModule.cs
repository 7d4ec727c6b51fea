namespace VmState.History;

/// <summary>A loaded kernel module as a capture's index keeps it.</summary>
/// <param name="Name">The module's name.</param>
/// <param name="Base">The address of its core (text) section.</param>
/// <param name="Size">The size of its core section.</param>
public sealed record HistoryModule(string Name, ulong Base, ulong Size);
