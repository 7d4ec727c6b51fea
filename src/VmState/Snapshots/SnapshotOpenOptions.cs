using VmState.Formats;
using VmState.Memory;

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

    /// <summary>
    /// For migration streams, qcow2 snapshots and virsh save files of x86 machines: the RAM blocks that make up the
    /// machine's main RAM, in NUMA node order (the ids of the memory backends given to <c>-machine memory-backend=</c>
    /// or <c>-numa node,memdev=</c>). Null works them out from the snapshot (<see cref="Formats.Migration.X86MainRam"/>),
    /// which fails with a message naming this option when the snapshot does not settle it. A running VM's order is
    /// read with <see cref="Live.LiveMachine.ReadMainRamAsync"/>.
    /// </summary>
    public IReadOnlyList<string>? MainRam { get; init; }

    /// <summary>
    /// Keep the RAM page index of large migration streams (also inside virsh save files and qcow2 snapshots) in this
    /// cache and reuse it while the file is unchanged, so opening it again does not read every page record; null
    /// (the default) neither reads nor writes a cache. See <see cref="Snapshots.IndexCache"/>.
    /// </summary>
    public IndexCache? IndexCache { get; init; }

    /// <summary>
    /// For inputs that hold a migration stream: sees every RAM page record while the stream is parsed, so a job that
    /// uses all of RAM (extract) reads the input once. Null for none.
    /// </summary>
    public IRamStreamObserver? RamObserver { get; init; }

    /// <summary>Limits on counts read from the file.</summary>
    public ReaderLimits? Limits { get; init; }
}
