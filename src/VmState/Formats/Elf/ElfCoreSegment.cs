namespace VmState.Formats.Elf;

/// <summary>
/// One PT_LOAD program header of an <see cref="ElfCoreBuilder"/>: its addresses, flags, alignment and sizes, and
/// either a <see cref="Source"/> for its own file bytes or, for an alias, the segment whose file bytes it shares
/// (<see cref="AliasOf"/> at <see cref="AliasOffset"/>), or bytes already in the file (<see cref="PlacedAt"/>). Made by <see cref="ElfCoreBuilder.AddLoad"/>, <see cref="ElfCoreBuilder.AddPlaced"/> and
/// <see cref="ElfCoreBuilder.AddAlias"/>; the file offset is the layout's to choose.
/// </summary>
public sealed class ElfCoreSegment
{
    internal ElfCoreSegment(ElfCoreBuilder owner, int index, ulong virtualAddress, ulong physicalAddress, uint flags, ulong alignment, ulong fileSize, ulong memorySize, ElfSegmentSource? source, ElfCoreSegment? aliasOf, ulong aliasOffset)
    {
        Owner = owner;
        Index = index;
        VirtualAddress = virtualAddress;
        PhysicalAddress = physicalAddress;
        Flags = flags;
        Alignment = alignment;
        FileSize = fileSize;
        MemorySize = memorySize;
        Source = source;
        AliasOf = aliasOf;
        AliasOffset = aliasOffset;
    }

    /// <summary>Its position among the builder's segments (program header <c>Index + 1</c>; header 0 is the PT_NOTE).</summary>
    public int Index { get; }

    /// <summary><c>p_vaddr</c>.</summary>
    public ulong VirtualAddress { get; }

    /// <summary><c>p_paddr</c>.</summary>
    public ulong PhysicalAddress { get; }

    /// <summary><c>p_flags</c> (PF_X = 1, PF_W = 2, PF_R = 4).</summary>
    public uint Flags { get; }

    /// <summary><c>p_align</c>: 0 or a power of two; above 1 the layout makes <c>p_offset</c> ≡ <c>p_vaddr</c> modulo it.</summary>
    public ulong Alignment { get; }

    /// <summary><c>p_filesz</c>: the bytes the segment has in the file.</summary>
    public ulong FileSize { get; }

    /// <summary><c>p_memsz</c>: the bytes it covers in memory (at least <see cref="FileSize"/>; the rest reads as zeros).</summary>
    public ulong MemorySize { get; }

    /// <summary>Writes the file bytes; null leaves them all zero (a hole). Always null for an alias.</summary>
    public ElfSegmentSource? Source { get; }

    /// <summary>For an alias, the segment whose file bytes it points at; null for a segment with bytes of its own.</summary>
    public ElfCoreSegment? AliasOf { get; }

    /// <summary>For an alias, where its bytes start inside <see cref="AliasOf"/>'s file bytes.</summary>
    public ulong AliasOffset { get; }

    /// <summary>
    /// For a segment whose bytes were put in the file before the core is laid out
    /// (<see cref="ElfCoreBuilder.AddPlaced"/>), its fixed <c>p_offset</c>; null when the builder places it.
    /// </summary>
    public long? PlacedAt { get; init; }

    internal ElfCoreBuilder Owner { get; }
}
