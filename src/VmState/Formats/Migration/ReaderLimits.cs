namespace VmState.Formats.Migration;

/// <summary>Caps on counts and sizes read from an untrusted file, so a hostile input can't make us allocate without bound.</summary>
public sealed record ReaderLimits
{
    /// <summary>The defaults.</summary>
    public static readonly ReaderLimits Default = new();

    /// <summary>Largest total guest RAM accepted (sum of RAMBlock lengths).</summary>
    public ulong MaxGuestRam { get; init; } = 1UL << 40;

    /// <summary>Most RAMBlocks accepted.</summary>
    public int MaxRamBlocks { get; init; } = 4096;

    /// <summary>Largest VM description JSON accepted.</summary>
    public int MaxVmDescriptionBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most sections accepted.</summary>
    public int MaxSections { get; init; } = 1_000_000;

    /// <summary>Most vCPUs accepted.</summary>
    public int MaxCpus { get; init; } = 4096;
}
