namespace VmState.Memory;

/// <summary>
/// One block of guest-physical memory handed to a <see cref="ScanBlockHandler"/>: <see cref="Length"/> bytes at
/// <see cref="Address"/> that belong to the block, followed in <see cref="Bytes"/> by up to the scan's overlap of
/// the bytes that come right after it (when the memory goes on without a hole), so a consumer can match patterns
/// that cross a block boundary while reporting only those that start inside its block.
/// </summary>
public readonly ref struct ScanBlock
{
    internal ScanBlock(ulong address, int length, ReadOnlySpan<byte> bytes, bool isZero, int worker)
    {
        Address = address;
        Length = length;
        Bytes = bytes;
        IsZero = isZero;
        Worker = worker;
    }

    /// <summary>Guest-physical address of the block's first byte.</summary>
    public ulong Address { get; }

    /// <summary>Bytes that belong to this block (every block but the last of a run is a whole number of pages).</summary>
    public int Length { get; }

    /// <summary>The block's bytes, then the overlap that follows it (shorter at a hole or the end of the ranges).</summary>
    public ReadOnlySpan<byte> Bytes { get; }

    /// <summary>
    /// True when the source knows, without reading, that the block's own bytes are all zero (a sparse source such as
    /// a migration stream's zero pages); its bytes were not read. The overlap after it is real memory.
    /// </summary>
    public bool IsZero { get; }

    /// <summary>The worker (0 to the degree of parallelism − 1) that runs this call: an index for per-worker state.</summary>
    public int Worker { get; }
}

/// <summary>Called once per block of a <see cref="PhysicalMemoryScan"/>, concurrently from several workers.</summary>
public delegate void ScanBlockHandler(in ScanBlock block);

/// <summary>
/// The one scan over guest-physical memory that hashing, searching and other whole-RAM features build on: the
/// backed pages of all RAM (or of given ranges) are cut into page-aligned blocks, and workers (all cores by default)
/// each take blocks and hand them to a consumer. A block's bytes are borrowed in place when the source can lend them
/// (<see cref="ISpanMemory"/>: a live guest's shared-memory RAM, no copy), else read with one large read into the
/// worker's own buffer (process memory, snapshot files); runs of pages a sparse source knows to be zero
/// (<see cref="ISparseMemory"/>) are not read. Works on every <see cref="IPhysicalMemory"/>; no allocation per page.
/// </summary>
public sealed class PhysicalMemoryScan
{
    /// <summary>The page size blocks are aligned to.</summary>
    public const int PageSize = 4096;

    /// <summary>The default block size: 4 MiB (large reads, few consumer calls, fits in a cache-friendly buffer).</summary>
    public const int DefaultBlockSize = 4 << 20;

    private readonly IPhysicalMemory _memory;
    private readonly MemoryRange[] _ranges;

    /// <summary>
    /// A scan of <paramref name="memory"/>: all its backed ranges, or the parts of <paramref name="ranges"/> that
    /// are backed (holes are skipped).
    /// </summary>
    public PhysicalMemoryScan(IPhysicalMemory memory, IReadOnlyList<MemoryRange>? ranges = null)
    {
        _memory = memory;
        _ranges = Intersect(memory.Ranges, ranges ?? memory.Ranges);
    }

    /// <summary>The backed ranges the scan covers, sorted by address.</summary>
    public IReadOnlyList<MemoryRange> Ranges => _ranges;

    /// <summary>Bytes the scan covers.</summary>
    public ulong TotalBytes => _ranges.Aggregate(0UL, (s, r) => s + r.Length);

    /// <summary>Bytes per block (a multiple of <see cref="PageSize"/>; default <see cref="DefaultBlockSize"/>).</summary>
    public int BlockSize
    {
        get;
        init => field = value >= PageSize && value % PageSize == 0 ? value : throw new ArgumentOutOfRangeException(nameof(BlockSize), "a positive multiple of 4096");
    } = DefaultBlockSize;

    /// <summary>Bytes after each block also handed to the consumer (for matches across block boundaries); default 0.</summary>
    public int Overlap
    {
        get;
        init => field = value >= 0 && value <= PageSize ? value : throw new ArgumentOutOfRangeException(nameof(Overlap), "0 to 4096");
    }

    /// <summary>Workers to run (default: <see cref="Environment.ProcessorCount"/>; 1 runs in address order on the caller's thread).</summary>
    public int MaxDegreeOfParallelism
    {
        get;
        init => field = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(MaxDegreeOfParallelism), "at least 1");
    } = Environment.ProcessorCount;

    /// <summary>
    /// Told each block's length once the consumer has had it (from the worker's thread, so concurrently): for a
    /// progress display over a large guest. Null (the default) reports nothing.
    /// </summary>
    public IProgress<ulong>? Progress { get; init; }

    /// <summary>
    /// The blocks the scan hands out, in address order: (address, length). Blocks never cross a range; each range
    /// is cut at multiples of <see cref="BlockSize"/> from its start.
    /// </summary>
    public IEnumerable<(ulong Address, int Length)> Blocks()
    {
        foreach (MemoryRange r in _ranges)
        {
            for (ulong a = r.Start; a < r.End; a += (ulong)BlockSize)
            {
                yield return (a, (int)Math.Min((ulong)BlockSize, r.End - a));
            }
        }
    }

    /// <summary>
    /// Runs the scan: <paramref name="consumer"/> gets every block once, from up to
    /// <see cref="MaxDegreeOfParallelism"/> threads at once (so it must be safe to call concurrently; use
    /// <see cref="ScanBlock.Worker"/> to index per-worker state). Throws <see cref="IOException"/> when a block
    /// the source lists as backed cannot be read.
    /// </summary>
    public void Run(ScanBlockHandler consumer, CancellationToken cancellationToken = default)
    {
        (ulong Address, int Length)[] blocks = Blocks().ToArray();
        int workers = Math.Max(1, Math.Min(MaxDegreeOfParallelism, blocks.Length));
        if (workers == 1)
        {
            var w = new Worker(this, 0);
            foreach ((ulong a, int n) in blocks)
            {
                cancellationToken.ThrowIfCancellationRequested();
                w.Scan(a, n, consumer);
                Progress?.Report((ulong)n);
            }

            return;
        }

        // Each worker takes the next block from a shared counter: neighbouring blocks run at the same time, so a
        // source with a read-ahead (a file) still sees a mostly forward sweep.
        int next = -1;
        var threads = new Thread[workers];
        Exception? failure = null;
        for (int t = 0; t < workers; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                try
                {
                    var w = new Worker(this, id);
                    int i;
                    while ((i = Interlocked.Increment(ref next)) < blocks.Length && Volatile.Read(ref failure) is null)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        w.Scan(blocks[i].Address, blocks[i].Length, consumer);
                        Progress?.Report((ulong)blocks[i].Length);
                    }
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref failure, e, null);
                }
            })
            {
                IsBackground = true,
                Name = $"vmstate scan {id}",
            };
            threads[t].Start();
        }

        foreach (Thread t in threads)
        {
            t.Join();
        }

        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
    }

    private static MemoryRange[] Intersect(IReadOnlyList<MemoryRange> backed, IReadOnlyList<MemoryRange> wanted)
    {
        var result = new List<MemoryRange>();
        foreach (MemoryRange w in wanted.OrderBy(r => r.Start))
        {
            foreach (MemoryRange b in backed)
            {
                ulong s = Math.Max(w.Start, b.Start);
                ulong e = Math.Min(w.End, b.End);
                if (s < e)
                {
                    if (result.Count > 0 && result[^1].End > s)
                    {
                        // Overlapping requests: scan each byte once.
                        s = Math.Max(s, result[^1].End);
                        if (s >= e)
                        {
                            continue;
                        }
                    }

                    result.Add(new MemoryRange(s, e - s, b.Name));
                }
            }
        }

        result.Sort((x, y) => x.Start.CompareTo(y.Start));
        return [.. result];
    }

    /// <summary>One worker's buffers: a block plus its overlap, and a zero block for runs a sparse source knows are zero.</summary>
    private sealed class Worker(PhysicalMemoryScan scan, int id)
    {
        private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(scan.BlockSize + scan.Overlap);
        private readonly ISpanMemory? _spans = scan._memory as ISpanMemory;
        private readonly ISparseMemory? _sparse = scan._memory as ISparseMemory;
        private byte[]? _zero;

        public void Scan(ulong address, int length, ScanBlockHandler consumer)
        {
            ulong end = address + (ulong)length;
            if (_sparse is null)
            {
                Data(address, length, consumer);
                return;
            }

            // Split the block into runs of known-zero pages (not read) and other pages (read in one piece each).
            ulong a = address;
            while (a < end)
            {
                bool zero = _sparse.IsZero(a, Math.Min((ulong)PageSize, end - a));
                ulong b = a;
                while (b < end && _sparse.IsZero(b, Math.Min((ulong)PageSize, end - b)) == zero)
                {
                    b += Math.Min((ulong)PageSize, end - b);
                }

                if (zero)
                {
                    Zero(a, (int)(b - a), consumer);
                }
                else
                {
                    Data(a, (int)(b - a), consumer);
                }

                a = b;
            }
        }

        private void Data(ulong address, int length, ScanBlockHandler consumer)
        {
            int want = length + scan.Overlap;
            if (_spans is not null && _spans.TryGetSpan(address, length, out ReadOnlySpan<byte> own))
            {
                // In place; the overlap too when it is on the same mapping (else the block alone, then copied).
                if (scan.Overlap > 0 && _spans.TryGetSpan(address, want, out ReadOnlySpan<byte> withOverlap))
                {
                    consumer(new ScanBlock(address, length, withOverlap, isZero: false, id));
                    return;
                }

                if (scan.Overlap == 0 || Tail(address, length) == 0)
                {
                    consumer(new ScanBlock(address, length, own, isZero: false, id));
                    return;
                }
            }

            int n = scan._memory.Read(address, _buffer.AsSpan(0, length));
            if (n != length)
            {
                throw new IOException($"{scan._memory.Name}: guest-physical 0x{address + (ulong)n:x} is listed as backed but could not be read");
            }

            int tail = scan.Overlap > 0 ? scan._memory.Read(address + (ulong)length, _buffer.AsSpan(length, scan.Overlap)) : 0;
            consumer(new ScanBlock(address, length, _buffer.AsSpan(0, length + tail), isZero: false, id));
        }

        private void Zero(ulong address, int length, ScanBlockHandler consumer)
        {
            _zero ??= new byte[scan.BlockSize + scan.Overlap];
            int tail = scan.Overlap > 0 ? scan._memory.Read(address + (ulong)length, _zero.AsSpan(length, scan.Overlap)) : 0;
            consumer(new ScanBlock(address, length, _zero.AsSpan(0, length + tail), isZero: true, id));
            _zero.AsSpan(length, tail).Clear();
        }

        private int Tail(ulong address, int length)
        {
            Span<byte> probe = stackalloc byte[1];
            return scan._memory.Read(address + (ulong)length, probe);
        }
    }
}
