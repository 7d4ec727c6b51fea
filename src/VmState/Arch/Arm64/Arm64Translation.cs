namespace VmState.Arch.Arm64;

/// <summary>
/// The result of translating a virtual address through AArch64 stage 1 tables: the physical address and the size of
/// the page or block on success, and the descriptor seen at every level either way (for <c>--explain</c>).
/// </summary>
public sealed class Arm64Translation : IAddressTranslation
{
    internal Arm64Translation(ulong virtualAddress, string tableBase, ulong root, IReadOnlyList<Arm64PagingEntry> entries, ulong? physicalAddress, ulong pageSize, string? failure)
    {
        VirtualAddress = virtualAddress;
        TableBase = tableBase;
        Root = root;
        Entries = entries;
        PhysicalAddress = physicalAddress;
        PageSize = pageSize;
        Failure = failure;
    }

    /// <summary>The address translated.</summary>
    public ulong VirtualAddress { get; }

    /// <summary>"TTBR0_EL1" or "TTBR1_EL1": which half of the address space the address is in.</summary>
    public string TableBase { get; }

    /// <summary>Physical address of the first-level table used.</summary>
    public ulong Root { get; }

    /// <summary>Descriptors visited, from the first level down.</summary>
    public IReadOnlyList<Arm64PagingEntry> Entries { get; }

    /// <summary>The physical address, or null when the translation failed.</summary>
    public ulong? PhysicalAddress { get; }

    /// <summary>Size of the page or block that maps the address (4 KiB, 2 MiB or 1 GiB), 0 on failure.</summary>
    public ulong PageSize { get; }

    /// <summary>Why the translation failed (e.g. "level 2 descriptor invalid"), or null.</summary>
    public string? Failure { get; }

    /// <summary>True when the address is mapped.</summary>
    public bool Success => PhysicalAddress is not null;

    /// <summary>True when the last descriptor allows writes (AP[2] clear).</summary>
    public bool Writable => Success && !Entries[^1].ReadOnly;

    /// <summary>True when the last descriptor allows EL0 access (AP[1]).</summary>
    public bool User => Success && Entries[^1].User;
}
