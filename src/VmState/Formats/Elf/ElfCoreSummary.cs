namespace VmState.Formats.Elf;

/// <summary>What <see cref="ElfCoreWriter"/> wrote.</summary>
public sealed record ElfCoreSummary(string Path, long FileSize, int LoadSegments, int Cpus, bool HasVmcoreinfo);
