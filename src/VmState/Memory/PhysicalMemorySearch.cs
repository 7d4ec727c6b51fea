namespace VmState.Memory;

/// <summary>
/// Byte-pattern search over guest-physical memory on <see cref="PhysicalMemoryScan"/> (all cores, every source):
/// every occurrence, with its guest-physical address, including those that cross a block or range boundary where
/// memory goes on without a hole.
/// </summary>
public static class PhysicalMemorySearch
{
    /// <summary>
    /// The guest-physical addresses where <paramref name="pattern"/> (1 to 4096 bytes) starts inside the memory
    /// <paramref name="memory"/> backs (or inside <paramref name="ranges"/>), in address order: the first
    /// <paramref name="maxHits"/> of them. The same answer whatever <paramref name="maxDegreeOfParallelism"/> is.
    /// <paramref name="progress"/>, when given, is told the bytes of each block searched (see
    /// <see cref="PhysicalMemoryScan.Progress"/>).
    /// </summary>
    public static IReadOnlyList<ulong> Find(IPhysicalMemory memory, ReadOnlySpan<byte> pattern, int maxHits = 1000, IReadOnlyList<MemoryRange>? ranges = null, int maxDegreeOfParallelism = 0, CancellationToken cancellationToken = default, IProgress<ulong>? progress = null)
    {
        var scan = new PhysicalMemoryScan(memory, ranges)
        {
            Overlap = pattern.Length - 1,
            MaxDegreeOfParallelism = maxDegreeOfParallelism > 0 ? maxDegreeOfParallelism : Environment.ProcessorCount,
            Progress = progress,
        };
        return Find(scan, pattern, maxHits, cancellationToken);
    }

    /// <summary>
    /// As <see cref="Find(IPhysicalMemory, ReadOnlySpan{byte}, int, IReadOnlyList{MemoryRange}?, int, CancellationToken, IProgress{ulong}?)"/>
    /// on a prepared scan, whose <see cref="PhysicalMemoryScan.Overlap"/> must be at least the pattern's length − 1.
    /// </summary>
    public static IReadOnlyList<ulong> Find(PhysicalMemoryScan scan, ReadOnlySpan<byte> pattern, int maxHits = 1000, CancellationToken cancellationToken = default)
    {
        if (pattern.Length is 0 or > PhysicalMemoryScan.PageSize)
        {
            throw new ArgumentException("the pattern must be 1 to 4096 bytes", nameof(pattern));
        }

        if (scan.Overlap < pattern.Length - 1)
        {
            throw new ArgumentException($"the scan's overlap ({scan.Overlap}) is shorter than the pattern's length - 1", nameof(scan));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(maxHits);
        byte[] needle = pattern.ToArray();
        bool zeroNeedle = !pattern.ContainsAnyExcept((byte)0);

        // Each block keeps its own first maxHits hits; merged and cut at the end, that is the first maxHits overall.
        var found = new List<ulong>[scan.MaxDegreeOfParallelism];
        for (int i = 0; i < found.Length; i++)
        {
            found[i] = [];
        }

        if (maxHits == 0)
        {
            return [];
        }

        scan.Run((in ScanBlock b) =>
        {
            List<ulong> hits = found[b.Worker];
            int from = 0;
            if (b.IsZero && !zeroNeedle)
            {
                // Only a match that starts in the zeros and runs into the bytes after them can be here.
                from = Math.Max(0, b.Length - (needle.Length - 1));
            }

            ReadOnlySpan<byte> bytes = b.Bytes;
            int inBlock = 0;
            while (from < b.Length && inBlock < maxHits)
            {
                int i = bytes[from..].IndexOf(needle);
                if (i < 0 || from + i >= b.Length)
                {
                    break;
                }

                hits.Add(b.Address + (ulong)(from + i));
                inBlock++;
                from += i + 1;
            }

            if (hits.Count > 2L * maxHits)
            {
                // A worker's own first maxHits are enough: the overall first maxHits are among them.
                hits.Sort();
                hits.RemoveRange(maxHits, hits.Count - maxHits);
            }
        }, cancellationToken);

        var all = new List<ulong>();
        foreach (List<ulong> f in found)
        {
            all.AddRange(f);
        }

        all.Sort();
        return all.Count > maxHits ? all.GetRange(0, maxHits) : all;
    }
}
