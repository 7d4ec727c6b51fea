namespace VmState.Memory;

/// <summary>
/// Guest physical memory. Reads never throw on the hot path: a read of an address that is not backed by memory
/// returns fewer bytes than asked (0 when the first byte is not backed).
/// </summary>
public interface IPhysicalMemory
{
    /// <summary>A short name for messages.</summary>
    string Name { get; }

    /// <summary>The guest-physical ranges that are backed, sorted by address, not overlapping.</summary>
    IReadOnlyList<MemoryRange> Ranges { get; }

    /// <summary>Reads bytes at guest-physical <paramref name="address"/>; returns the count of contiguous bytes read.</summary>
    int Read(ulong address, Span<byte> destination);
}
