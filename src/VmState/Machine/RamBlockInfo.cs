namespace VmState.Machine;

/// <summary>A RAM block of the source, and where (if anywhere) it is mapped into guest-physical address space.</summary>
/// <param name="Name">Block name, e.g. "pc.ram".</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="Mappings">The guest-physical ranges the block backs (empty for a block that is not mapped).</param>
/// <param name="DataPages">Pages stored with data (migration streams), or -1 when not known.</param>
/// <param name="ZeroPages">Pages stored as zero pages (migration streams), or -1 when not known.</param>
public sealed record RamBlockInfo(string Name, ulong Length, IReadOnlyList<BlockMapping> Mappings, long DataPages = -1, long ZeroPages = -1);
