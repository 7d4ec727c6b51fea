using VmState.Memory;

namespace VmState.Integration.Harness;

/// <summary>Compares two guest-physical memories range by range.</summary>
public static class RamAssert
{
    /// <summary>Asserts both have the same ranges with the same bytes, naming the first differing 4 MiB chunk.</summary>
    public static void Equal(IPhysicalMemory expected, IPhysicalMemory actual)
    {
        Assert.Equal(expected.Ranges.Select(r => (r.Start, r.Length)), actual.Ranges.Select(r => (r.Start, r.Length)));
        Covers(expected, actual);
    }

    /// <summary>Every byte of <paramref name="expected"/>'s ranges reads the same from <paramref name="actual"/> (whose ranges may be cut differently).</summary>
    public static void Covers(IPhysicalMemory expected, IPhysicalMemory actual)
    {
        byte[] a = new byte[4 << 20];
        byte[] b = new byte[4 << 20];
        foreach (MemoryRange r in expected.Ranges)
        {
            for (ulong done = 0; done < r.Length; done += (ulong)a.Length)
            {
                int n = (int)Math.Min((ulong)a.Length, r.Length - done);
                expected.ReadExactly(r.Start + done, a.AsSpan(0, n));
                actual.ReadExactly(r.Start + done, b.AsSpan(0, n));
                Assert.True(a.AsSpan(0, n).SequenceEqual(b.AsSpan(0, n)), $"RAM differs in [0x{r.Start + done:x}, +0x{n:x})");
            }
        }
    }
}
