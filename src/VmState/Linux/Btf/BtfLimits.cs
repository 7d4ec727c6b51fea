namespace VmState.Linux.Btf;

/// <summary>Caps on what a BTF blob may make the parser do (the blob is guest memory, hence hostile).</summary>
public sealed record BtfLimits
{
    /// <summary>Defaults fit any real kernel (vmlinux BTF is ~5 MiB and ~100k types) with a wide margin.</summary>
    public static BtfLimits Default { get; } = new();

    /// <summary>Largest blob accepted.</summary>
    public int MaxBlobSize { get; init; } = 256 << 20;

    /// <summary>Most types accepted.</summary>
    public int MaxTypes { get; init; } = 4 << 20;

    /// <summary>Longest chain of typedefs/qualifiers/arrays followed before declaring a loop.</summary>
    public int MaxChainDepth { get; init; } = 64;

    /// <summary>Deepest nesting of anonymous members searched.</summary>
    public int MaxAnonymousDepth { get; init; } = 32;
}
