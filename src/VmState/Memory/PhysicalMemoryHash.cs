using System.IO.Hashing;

namespace VmState.Memory;

/// <summary>
/// The 128-bit hashes (XxHash128, seed 0) of every 4 KiB page of a run of guest-physical memory, in address order:
/// <see cref="Hashes"/>[i] covers [<see cref="Start"/> + i × 4096, + 4096) (the last page of a run that does not end
/// on a page boundary covers only the bytes up to its end).
/// </summary>
/// <param name="Start">Guest-physical address of the first page.</param>
/// <param name="Length">Bytes in the run.</param>
/// <param name="Hashes">One hash per page.</param>
public sealed record PageHashRun(ulong Start, ulong Length, UInt128[] Hashes);

/// <summary>
/// Page hashing over guest-physical memory on <see cref="PhysicalMemoryScan"/> (all cores, every source): the hash a
/// history store keys pages by, so identical pages are found across captures and VMs.
/// </summary>
public static class PhysicalMemoryHash
{
    /// <summary>The hash of a 4 KiB page of zeros (what every known-zero page of a sparse source gets, unread).</summary>
    public static UInt128 ZeroPage { get; } = XxHash128.HashToUInt128(new byte[PhysicalMemoryScan.PageSize]);

    /// <summary>The 128-bit hash of one page's bytes (XxHash128, seed 0).</summary>
    public static UInt128 HashPage(ReadOnlySpan<byte> page) => XxHash128.HashToUInt128(page);

    /// <summary>
    /// Hashes every page <paramref name="scan"/> covers; one <see cref="PageHashRun"/> per scanned range. Runs must
    /// start on a page boundary (guest RAM ranges do).
    /// </summary>
    public static IReadOnlyList<PageHashRun> HashPages(PhysicalMemoryScan scan, CancellationToken cancellationToken = default)
    {
        var runs = new PageHashRun[scan.Ranges.Count];
        for (int i = 0; i < runs.Length; i++)
        {
            MemoryRange r = scan.Ranges[i];
            if (r.Start % PhysicalMemoryScan.PageSize != 0)
            {
                throw new ArgumentException($"range {r} does not start on a page boundary", nameof(scan));
            }

            runs[i] = new PageHashRun(r.Start, r.Length, new UInt128[(r.Length + PhysicalMemoryScan.PageSize - 1) / PhysicalMemoryScan.PageSize]);
        }

        scan.Run((in ScanBlock b) =>
        {
            int ri = FindRun(runs, b.Address);
            UInt128[] hashes = runs[ri].Hashes;
            long first = (long)((b.Address - runs[ri].Start) / PhysicalMemoryScan.PageSize);
            for (int off = 0, p = 0; off < b.Length; off += PhysicalMemoryScan.PageSize, p++)
            {
                int n = Math.Min(PhysicalMemoryScan.PageSize, b.Length - off);
                hashes[first + p] = b.IsZero && n == PhysicalMemoryScan.PageSize ? ZeroPage : XxHash128.HashToUInt128(b.Bytes.Slice(off, n));
            }
        }, cancellationToken);
        return runs;
    }

    private static int FindRun(PageHashRun[] runs, ulong address)
    {
        int lo = 0, hi = runs.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (runs[mid].Start <= address)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return lo;
    }
}
