namespace VmState.Arch.X86;

/// <summary>One paging-structure entry visited by a translation.</summary>
/// <param name="Level">Level name: PML5E, PML4E, PDPTE, PDE, PTE.</param>
/// <param name="Address">Guest-physical address of the entry.</param>
/// <param name="Value">The entry's value (0 when it could not be read).</param>
public readonly record struct PagingEntry(string Level, ulong Address, ulong Value)
{
    /// <summary>Present bit.</summary>
    public bool Present => (Value & 1) != 0;

    /// <summary>Read/write bit.</summary>
    public bool Writable => (Value & 2) != 0;

    /// <summary>User/supervisor bit.</summary>
    public bool User => (Value & 4) != 0;

    /// <summary>Page-size bit (a large page ends the walk at this level).</summary>
    public bool PageSize => (Value & 0x80) != 0;

    /// <summary>Execute-disable bit (bit 63, with EFER.NXE).</summary>
    public bool NoExecute => (Value & (1UL << 63)) != 0;
}
