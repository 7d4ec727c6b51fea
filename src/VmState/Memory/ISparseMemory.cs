namespace VmState.Memory;

/// <summary>
/// Optional capability of an <see cref="IPhysicalMemory"/> that knows, without reading, which ranges are all zero
/// (for example a migration stream's index of zero pages), so bulk writers can leave holes cheaply.
/// </summary>
public interface ISparseMemory
{
    /// <summary>True only when every byte of [address, address + length) is known to be zero.</summary>
    bool IsZero(ulong address, ulong length);
}
