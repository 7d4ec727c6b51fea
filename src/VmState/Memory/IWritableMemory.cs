namespace VmState.Memory;

/// <summary>
/// Optional capability of an <see cref="IPhysicalMemory"/> that can be written: a running guest's RAM (the guest
/// sees the bytes at once), or a snapshot's memory as edited in an overlay (written out when the snapshot is saved).
/// A caller tests for it (<c>memory is IWritableMemory w</c>, or <c>vm.TryGet&lt;IWritableMemory&gt;</c>) instead
/// of trying a write and catching.
/// </summary>
public interface IWritableMemory : IPhysicalMemory
{
    /// <summary>
    /// Writes <paramref name="source"/> at guest-physical <paramref name="address"/>; returns the count of contiguous
    /// bytes written from the start, which is less than asked when the access leaves the backed ranges (0 when the
    /// first byte is not backed), as for <see cref="IPhysicalMemory.Read"/>.
    /// </summary>
    int Write(ulong address, ReadOnlySpan<byte> source);
}
