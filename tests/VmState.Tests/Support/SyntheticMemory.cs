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
        foreach (RangePiece p in ranges.Pieces(address, destination.Length))
        {
            for (int i = 0; i < p.Length; i++)
            {
                destination[p.Offset + i] = content(p.Address + (ulong)i);
            }

            done = p.Offset + p.Length;
        }

        return done;
    }
}
