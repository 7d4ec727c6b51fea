using VmState.Formats;
using VmState.Linux;
using VmState.Snapshots;

namespace VmState;

/// <summary>How <see cref="Vm.Open"/> opens a snapshot file, and how <see cref="Vm.Linux"/> finds its kernel.</summary>
public sealed record VmOpenOptions
{
    /// <summary>For qcow2 images: the internal snapshot's id or name; null picks the newest.</summary>
    public string? Snapshot { get; init; }

    /// <summary>Treat a file with no known magic as a raw physical memory image instead of failing.</summary>
    public bool AllowRaw { get; init; }

    /// <summary>
    /// Read through a block cache (on by default: introspection reads page tables and kernel structures all over
    /// the file). Turn it off for one pass over all of RAM, such as writing a core, where the cache would only be
    /// churned.
    /// </summary>
    public bool CacheReads { get; init; } = true;

    /// <summary>Progress of stream parsing (0..1).</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>
    /// The RAM blocks that make up the machine's main RAM, in NUMA node order; null works them out from the snapshot
    /// (see <see cref="SnapshotOpenOptions.MainRam"/>).
    /// </summary>
    public IReadOnlyList<string>? MainRam { get; init; }

    /// <summary>
    /// Where to keep and reuse the RAM page index of large snapshot files (see <see cref="Snapshots.IndexCache"/>:
    /// keyed by the file's identity and contents, never trusted once the file changed); null, the default, uses no
    /// cache. <c>new IndexCache(IndexCache.DefaultDirectory!)</c> is the CLI's choice.
    /// </summary>
    public IndexCache? IndexCache { get; init; }

    /// <summary>
    /// Sees every RAM page record while a migration stream (also inside a <c>virsh save</c> file or a qcow2 snapshot)
    /// is parsed (<see cref="SnapshotOpenOptions.RamObserver"/>); null for none.
    /// </summary>
    public Memory.IRamStreamObserver? RamObserver { get; init; }

    /// <summary>Limits on counts read from the file; null for <see cref="ReaderLimits.Default"/>.</summary>
    public ReaderLimits? Limits { get; init; }

    /// <summary>
    /// Which sources locate the guest kernel, and the System.map / BTF files that override the in-memory symbols
    /// and types; null for <see cref="KernelLocatorOptions.Default"/>.
    /// </summary>
    public KernelLocatorOptions? Kernel { get; init; }

    /// <summary>The options for <see cref="SnapshotLoader"/>.</summary>
    public SnapshotOpenOptions ToSnapshotOptions() => new()
    {
        Snapshot = Snapshot,
        AllowRaw = AllowRaw,
        CacheReads = CacheReads,
        Progress = Progress,
        Limits = Limits ?? ReaderLimits.Default,
        MainRam = MainRam,
        IndexCache = IndexCache,
        RamObserver = RamObserver,
    };
}
