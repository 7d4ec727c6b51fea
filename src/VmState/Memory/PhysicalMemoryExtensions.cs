namespace VmState.Memory;

/// <summary>Convenience reads on top of <see cref="IPhysicalMemory"/>.</summary>
public static class PhysicalMemoryExtensions
{
    /// <summary>Reads exactly <c>destination.Length</c> bytes, or throws naming the first unbacked address.</summary>
    public static void ReadExactly(this IPhysicalMemory memory, ulong address, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int n = memory.Read(address + (ulong)done, destination[done..]);
            if (n <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(address), $"guest-physical address 0x{address + (ulong)done:x} is not backed by memory in {memory.Name}");
            }

            done += n;
        }
    }

    /// <summary>Finds the range containing <paramref name="address"/> by binary search; -1 when none does.</summary>
    public static int FindRange(this IReadOnlyList<MemoryRange> ranges, ulong address)
    {
        int lo = 0;
        int hi = ranges.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            MemoryRange r = ranges[mid];
            if (address < r.Start)
            {
                hi = mid - 1;
            }
            else if (address >= r.End)
            {
                lo = mid + 1;
            }
            else
            {
                return mid;
            }
        }

        return -1;
    }

    /// <summary>The pieces of [address, address + length) that fall in each range, in order (see <see cref="RangePieces"/>).</summary>
    public static RangePieces Pieces(this IReadOnlyList<MemoryRange> ranges, ulong address, int length, int maxPiece = int.MaxValue) =>
        new(ranges, address, length, maxPiece);

    /// <summary>Total bytes in all ranges.</summary>
    public static ulong TotalSize(this IPhysicalMemory memory)
    {
        ulong total = 0;
        foreach (MemoryRange r in memory.Ranges)
        {
            total += r.Length;
        }

        return total;
    }
}
