using VmState.IO;

namespace VmState.Memory;

/// <summary>
/// Guest-physical memory backed by ranges of a file: an ELF core's PT_LOAD segments (by p_paddr), or a raw image
/// (one range, byte N at address N). Bytes of a range past what the file holds read as zeros.
/// </summary>
public sealed class FileRangeMemory : IPhysicalMemory
{
    private readonly IRandomAccessSource _source;
    private readonly MemoryRange[] _ranges;
    private readonly long[] _fileOffsets;
    private readonly ulong[] _fileSizes;

    /// <summary>Creates the memory from (range, file offset, bytes present in the file) triples, sorted, not overlapping.</summary>
    public FileRangeMemory(IRandomAccessSource source, IReadOnlyList<(MemoryRange Range, long FileOffset, ulong FileSize)> segments)
    {
        _source = source;
        _ranges = new MemoryRange[segments.Count];
        _fileOffsets = new long[segments.Count];
        _fileSizes = new ulong[segments.Count];
        for (int i = 0; i < segments.Count; i++)
        {
            (_ranges[i], _fileOffsets[i], _fileSizes[i]) = segments[i];
        }
    }

    /// <inheritdoc />
    public string Name => _source.Name;

    /// <inheritdoc />
    public IReadOnlyList<MemoryRange> Ranges => _ranges;

    /// <inheritdoc />
    public int Read(ulong address, Span<byte> destination)
    {
        int done = 0;
        foreach (RangePiece p in _ranges.Pieces(address, destination.Length))
        {
            int ri = p.RangeIndex;
            ulong inRange = p.Address - _ranges[ri].Start;
            int count = p.Length;
            Span<byte> d = destination.Slice(p.Offset, count);
            int fromFile = inRange >= _fileSizes[ri] ? 0 : (int)Math.Min((ulong)count, _fileSizes[ri] - inRange);
            if (fromFile > 0)
            {
                int n = _source.Read(_fileOffsets[ri] + (long)inRange, d[..fromFile]);
                if (n != fromFile)
                {
                    throw new VmStateFormatException(_fileOffsets[ri] + (long)inRange, "memory segment", $"the file ends before the segment's {fromFile} bytes");
                }
            }

            d[fromFile..].Clear();
            done = p.Offset + count;
        }

        return done;
    }
}
