using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Tests.Support;

/// <summary>Page contents for synthetic streams, and the check that two inputs hold the same guest RAM.</summary>
public static class RamPages
{
    /// <summary>A 4 KiB page of a pattern that differs by seed and is never all zero.</summary>
    public static byte[] Pattern(int seed)
    {
        byte[] p = new byte[4096];
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = (byte)((i * 31) ^ seed ^ (i >> 8));
        }

        p[0] = (byte)(seed | 1);
        return p;
    }

    /// <summary>The two inputs have the same RAM ranges with the same bytes (each opened with <see cref="SnapshotLoader"/>).</summary>
    public static void AssertSameRam(string expected, string actual)
    {
        using MachineState a = SnapshotLoader.Open(expected);
        using MachineState b = SnapshotLoader.Open(actual);
        Assert.Equal(a.Memory.Ranges.Select(r => (r.Start, r.Length)), b.Memory.Ranges.Select(r => (r.Start, r.Length)));
        foreach (MemoryRange r in a.Memory.Ranges)
        {
            byte[] x = new byte[r.Length];
            byte[] y = new byte[r.Length];
            a.Memory.ReadExactly(r.Start, x);
            b.Memory.ReadExactly(r.Start, y);
            Assert.True(x.AsSpan().SequenceEqual(y), $"range {r.Name} at 0x{r.Start:x} differs");
        }
    }
}
