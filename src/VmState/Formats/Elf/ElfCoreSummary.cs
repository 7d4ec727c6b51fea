namespace VmState.Formats.Elf;

/// <summary>What <see cref="ElfCoreWriter"/> wrote.</summary>
public sealed record ElfCoreSummary(string Path, long FileSize, int LoadSegments, int Cpus, bool HasVmcoreinfo)
{
    /// <summary>PT_LOADs added for kernel virtual addresses (aliases of physical segments).</summary>
    public int VirtualSegments { get; init; }
}
