using VmState.Memory;

namespace VmState.Tests.Support;

/// <summary>Physical memory whose content is a function of the address, over given ranges (no storage).</summary>
public sealed class SyntheticMemory(IReadOnlyList<MemoryRange> ranges, Func<ulong, byte> content) : IPhysicalMemory
{
    public string Name => "synthetic";

    public IReadOnlyList<MemoryRange> Ranges => ranges;

    public int Read(ulong address, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            ulong a = address + (ulong)done;
            int ri = ranges.FindRange(a);
            if (ri < 0)
            {
                break;
            }

            int n = (int)Math.Min((ulong)(destination.Length - done), ranges[ri].End - a);
            for (int i = 0; i < n; i++)
            {
                destination[done + i] = content(a + (ulong)i);
            }

            done += n;
        }

        return done;
    }
}
