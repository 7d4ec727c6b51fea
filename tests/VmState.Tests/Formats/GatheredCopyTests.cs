using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

/// <summary>
/// The gathered copy of a migration stream's RAM into a core (page records read in runs, pages written straight from
/// the read buffer, zero pages left as holes) gives the bytes the flat read gives, for every kind of page record.
/// </summary>
public sealed class GatheredCopyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-gather-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Stream()
    {
        // 9 MiB of pc.ram: three 4 MiB chunks. A run of records that follow each other (one read), a data page that
        // is all zero, a fill page, a zero page, unsent pages, records out of address order (separate reads), a page
        // sent twice (the later record wins), and a run that crosses a chunk boundary.
        var b = new StreamBuilder().Block("pc.ram", 9 << 20);
        for (int i = 0; i < 40; i++)
        {
            b.Page("pc.ram", 0x100000 + ((ulong)i * 0x1000), RamPages.Pattern(i));
        }

        b.Page("pc.ram", 0x200000, new byte[4096])
            .Fill("pc.ram", 0x201000, 0x7)
            .Fill("pc.ram", 0x202000, 0)
            .Page("pc.ram", 0x305000, RamPages.Pattern(200))
            .Page("pc.ram", 0x303000, RamPages.Pattern(201))
            .Page("pc.ram", 0x304000, RamPages.Pattern(202))
            .Page("pc.ram", 0x110000, RamPages.Pattern(203));
        for (int i = 0; i < 8; i++)
        {
            b.Page("pc.ram", (4 << 20) - 0x4000 + ((ulong)i * 0x1000), RamPages.Pattern(100 + i));
        }

        b.Page("pc.ram", (8 << 20) + 0x3000, RamPages.Pattern(150));
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string path = Path.Combine(_dir, "g.mig");
        File.WriteAllBytes(path, b.Build());
        return path;
    }

    [Fact]
    public void TheCoreHoldsTheSameRamAsAFlatReadOfTheStream()
    {
        string path = Stream();
        string core = Path.Combine(_dir, "core.elf");
        using (MachineState m = SnapshotLoader.Open(path))
        {
            Assert.IsAssignableFrom<IGatherMemory>(m.Memory);
            ElfCoreWriter.Write(m, core, null);
        }

        RamPages.AssertSameRam(path, core);
        using MachineState elf = SnapshotLoader.Open(core);

        // Spot checks against what was put in the stream.
        byte[] page = new byte[4096];
        elf.Memory.ReadExactly(0x110000, page);
        Assert.Equal(RamPages.Pattern(203), page);
        elf.Memory.ReadExactly(0x201000, page);
        Assert.All(page, x => Assert.Equal(0x7, x));
        elf.Memory.ReadExactly(0x303000, page);
        Assert.Equal(RamPages.Pattern(201), page);
        elf.Memory.ReadExactly((4 << 20) - 0x1000, page);
        Assert.Equal(RamPages.Pattern(103), page);
        elf.Memory.ReadExactly((4 << 20) + 0x1000, page);
        Assert.Equal(RamPages.Pattern(105), page);
    }

    [Fact]
    public void GatherListsOnlyPagesThatAreNotZero()
    {
        string path = Stream();
        using MachineState m = SnapshotLoader.Open(path);
        var gather = Assert.IsAssignableFrom<IGatherMemory>(m.Memory);
        // [1 MiB, 4 MiB): inside main RAM whatever the low-memory layout; piece offsets are relative to 1 MiB.
        const int Length = 3 << 20;
        byte[] buffer = new byte[gather.GatherBufferSize(Length)];
        var pieces = new List<GatherPiece>();
        Assert.True(gather.TryGather(0x100000, Length, buffer, pieces));

        // 40 + 8 - 4 data pages (0x110000 is one of the 40), the 0x7 fill page, 3 out-of-order pages, 4 of the run
        // that crosses into the next chunk; not the all-zero data page, the zero page or unsent pages.
        int[] offsets = pieces.Select(p => p.Offset).ToArray();
        Assert.Equal(40 + 1 + 3 + 4, offsets.Length);
        Assert.Equal(offsets.Order(), offsets);
        Assert.DoesNotContain(0x100000, offsets);
        Assert.DoesNotContain(0x102000, offsets);
        Assert.All(pieces, p => Assert.Equal(4096, p.Length));
        GatherPiece fill = Assert.Single(pieces, p => p.Offset == 0x101000);
        Assert.All(fill.Data.ToArray(), x => Assert.Equal(0x7, x));
        Assert.Equal(RamPages.Pattern(203), pieces.Single(p => p.Offset == 0x10000).Data.ToArray());
        Assert.Equal(RamPages.Pattern(5), pieces.Single(p => p.Offset == 0x5000).Data.ToArray());

        // Not page-aligned: refused, the caller reads it flat.
        Assert.False(gather.TryGather(0x100800, 0x1000, buffer, pieces));
    }
}
