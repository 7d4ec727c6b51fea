namespace VmState.Snapshots;

/// <summary>How to open an input file.</summary>
public sealed record SnapshotOpenOptions
{
    /// <summary>For qcow2 images: the snapshot id or name; null picks the newest.</summary>
    public string? Snapshot { get; init; }

    /// <summary>Treat a file with no known magic as a raw physical memory image instead of failing.</summary>
    public bool AllowRaw { get; init; }

    /// <summary>
    /// Map the file into memory (fast random access) instead of positional reads (small resident set for one-pass
    /// jobs such as extract).
    /// </summary>
    public bool MemoryMap { get; init; }

    /// <summary>Progress of stream parsing (0..1).</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>Limits on counts read from the file.</summary>
    public Formats.Migration.ReaderLimits? Limits { get; init; }
}
