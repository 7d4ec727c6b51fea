using VmState.Memory;

namespace VmState.Tests.IO;

public class RangePiecesTests
{
    private static readonly MemoryRange[] s_ranges = [new(0x1000, 0x1000, "a"), new(0x2000, 0x800, "b"), new(0x4000, 0x1000, "c")];

    [Fact]
    public void AnAccessIsSplitAtRangeBoundariesAndStopsAtAHole()
    {
        var pieces = new List<RangePiece>();
        foreach (RangePiece p in s_ranges.Pieces(0x1F00, 0x1000))
        {
            pieces.Add(p);
        }

        Assert.Equal([new RangePiece(0, 0x1F00, 0, 0x100), new RangePiece(1, 0x2000, 0x100, 0x800)], pieces);
    }

    [Fact]
    public void PiecesAreCappedAndAnUnbackedStartGivesNone()
    {
        var pieces = new List<RangePiece>();
        foreach (RangePiece p in s_ranges.Pieces(0x4000, 0x1000, maxPiece: 0x600))
        {
            pieces.Add(p);
        }

        Assert.Equal([new RangePiece(2, 0x4000, 0, 0x600), new RangePiece(2, 0x4600, 0x600, 0x600), new RangePiece(2, 0x4C00, 0xC00, 0x400)], pieces);
        foreach (RangePiece _ in s_ranges.Pieces(0x3000, 16))
        {
            Assert.Fail("0x3000 is not backed");
        }
    }
}
