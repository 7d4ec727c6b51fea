namespace VmState.Memory;

/// <summary>
/// Optional capability of an <see cref="IPhysicalMemory"/> whose bytes already lie in this process's address space
/// (a shared-memory mapping of a live guest's RAM): a consumer borrows them in place instead of copying them out.
/// <see cref="PhysicalMemoryScan"/> uses it to scan and hash without a copy.
/// </summary>
public interface ISpanMemory
{
    /// <summary>
    /// Borrows [<paramref name="address"/>, + <paramref name="length"/>) as a span without copying; false when the
    /// bytes are not all in one mapped range (the caller then reads them).
    /// </summary>
    bool TryGetSpan(ulong address, int length, out ReadOnlySpan<byte> span);
}
