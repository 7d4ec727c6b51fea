namespace VmState.Arch.X86;

/// <summary>
/// The result of translating a virtual address: the physical address and page size on success, and the entry seen
/// at every level either way (for <c>--explain</c> and for errors that say which level failed).
/// </summary>
public sealed class Translation : IAddressTranslation
{
    internal Translation(ulong virtualAddress, IReadOnlyList<PagingEntry> entries, ulong? physicalAddress, ulong pageSize, string? failure)
    {
        VirtualAddress = virtualAddress;
        Entries = entries;
        PhysicalAddress = physicalAddress;
        PageSize = pageSize;
        Failure = failure;
    }

    /// <summary>The address translated.</summary>
    public ulong VirtualAddress { get; }

    /// <summary>Entries visited, from the root down.</summary>
    public IReadOnlyList<PagingEntry> Entries { get; }

    /// <summary>The physical address, or null when the translation failed.</summary>
    public ulong? PhysicalAddress { get; }

    /// <summary>Size of the page that maps the address (4 KiB, 2 MiB, 4 MiB or 1 GiB), 0 on failure.</summary>
    public ulong PageSize { get; }

    /// <summary>Why the translation failed (e.g. "PDE not present"), or null.</summary>
    public string? Failure { get; }

    /// <summary>True when the address is mapped.</summary>
    public bool Success => PhysicalAddress is not null;

    /// <summary>True when every level allows writes.</summary>
    public bool Writable => Success && Entries.All(e => e.Writable);

    /// <summary>True when every level allows user-mode access.</summary>
    public bool User => Success && Entries.All(e => e.User);

    /// <summary>True when any level sets execute-disable.</summary>
    public bool NoExecute => Entries.Any(e => e.NoExecute);
}
