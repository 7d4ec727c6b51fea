using VmState.Formats;

namespace VmState.Snapshots;

/// <summary>How to open an input file.</summary>
public sealed record SnapshotOpenOptions
{
    /// <summary>For qcow2 images: the snapshot id or name; null picks the newest.</summary>
    public string? Snapshot { get; init; }

    /// <summary>Treat a file with no known magic as a raw physical memory image instead of failing.</summary>
    public bool AllowRaw { get; init; }

    /// <summary>
    /// Read through a block cache (fast random access: page-table walks, kernel structures) instead of plain
    /// positional reads (one-pass jobs such as extract). Inputs are never memory-mapped, so a file truncated while
    /// it is read is a clear error, not SIGBUS.
    /// </summary>
    public bool CacheReads { get; init; }

    /// <summary>Progress of stream parsing (0..1).</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>Limits on counts read from the file.</summary>
    public ReaderLimits? Limits { get; init; }
}
