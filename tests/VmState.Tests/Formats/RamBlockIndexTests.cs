using VmState.Formats.Migration;

namespace VmState.Tests.Formats;

/// <summary>
/// The page index of a RAM block, including chunks kept as runs of consecutive zero records, gives every page the
/// entry a plain table of the same records gives, and the same counts.
/// </summary>
public sealed class RamBlockIndexTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void EveryEntryIsWhatTheRecordsSay(int seed)
    {
        const int Pages = 300;
        var random = new Random(seed);
        var block = new RamBlock("pc.ram", Pages * 4096UL, 4096, null);
        long[] model = new long[Pages];
        long offset = 1000;

        // A first pass as QEMU writes it: runs of zero records 9 bytes apart, with data pages and gaps between.
        for (int p = 0; p < Pages; p++)
        {
            int r = random.Next(10);
            if (r < 7)
            {
                block.SetFill(p, 0, offset);
                model[p] = -((offset << 8) + 1);
                offset += 9;
            }
            else if (r < 9)
            {
                block.SetData(p, offset + 8);
                model[p] = offset + 8;
                offset += 8 + 4096;
            }
            else
            {
                offset += 100; // a page not sent here, and a gap in the stream (a section boundary)
            }
        }

        // A second pass: pages sent again as data, as another fill, as zero again.
        for (int i = 0; i < 60; i++)
        {
            int p = random.Next(Pages);
            switch (random.Next(3))
            {
                case 0:
                    block.SetData(p, offset + 8);
                    model[p] = offset + 8;
                    offset += 4104;
                    break;
                case 1:
                    block.SetFill(p, 0x5a, offset);
                    model[p] = -(((offset << 8) | 0x5a) + 1);
                    offset += 9;
                    break;
                default:
                    block.SetFill(p, 0, offset);
                    model[p] = -((offset << 8) + 1);
                    offset += 9;
                    break;
            }
        }

        for (int p = 0; p < Pages; p++)
        {
            Assert.True(model[p] == block.GetEntry(p), $"page {p}: expected {model[p]}, index has {block.GetEntry(p)}");
        }

        Assert.Equal(model.Count(e => e > 0), block.DataPages);
        Assert.Equal(model.Count(e => e < 0), block.ZeroPages);
    }

    [Theory]
    [InlineData(0, 200, 0, 9)]
    [InlineData(64, 128, 0, 9)]
    [InlineData(5, 300, 0, 9)]
    [InlineData(0, 130, 0x5a, 9)]
    [InlineData(0, 130, 0, 20)]
    public void ARunOfFillRecordsIsWhatTheRecordsOneByOneGive(long firstPage, long count, byte fill, long stride)
    {
        const long Pages = 512;
        var one = new RamBlock("pc.ram", Pages * 4096UL, 4096, null);
        var run = new RamBlock("pc.ram", Pages * 4096UL, 4096, null);
        // A page of the run's first chunk already holds data in both: the run must not overwrite it as a whole chunk.
        one.SetData(firstPage + 1, 77);
        run.SetData(firstPage + 1, 77);
        for (long i = 0; i < count; i++)
        {
            one.SetFill(firstPage + i, fill, 1000 + (i * stride));
        }

        run.SetFillRun(firstPage, count, fill, 1000, stride);
        for (long p = 0; p < Pages; p++)
        {
            Assert.True(one.GetEntry(p) == run.GetEntry(p), $"page {p}: one by one {one.GetEntry(p)}, as a run {run.GetEntry(p)}");
        }

        Assert.Equal((one.DataPages, one.ZeroPages), (run.DataPages, run.ZeroPages));
    }

    [Fact]
    public void AllUnsetSaysWhetherAnyPageOfTheRangeWasSent()
    {
        var block = new RamBlock("pc.ram", 512 * 4096UL, 4096, null);
        Assert.True(block.AllUnset(0, 512));
        block.SetFillRun(0, 70, 0, 1000, 9); // a whole chunk as a run, then 6 pages of the next
        block.SetData(200, 5000);
        Assert.False(block.AllUnset(0, 1));
        Assert.False(block.AllUnset(69, 1));
        Assert.True(block.AllUnset(70, 130));
        Assert.False(block.AllUnset(70, 131));
        Assert.True(block.AllUnset(201, 311));
        Assert.False(block.AllUnset(60, 20));
    }
}
