using System.Buffers.Binary;
using VmState.Export;
using VmState.Formats.Elf;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

/// <summary>
/// Extract in one read of a migration stream: RAM written into the core while the stream is parsed
/// (<see cref="MachineExport.Begin"/> with its RAM observer) gives the core the two-pass copy gives, page for page, for
/// every kind of record: runs that span the parser's read buffers, pages sent twice, data replaced by zero and fill
/// records, blocks that are not mapped.
/// </summary>
public sealed class StreamedExtractTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-streamed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A note as the kernel lays it out: header, "VMCOREINFO\0" padded to 12, then the text.</summary>
    private static byte[] Note()
    {
        byte[] text = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\n"u8.ToArray();
        byte[] note = new byte[24 + ((text.Length + 3) & ~3)];
        BinaryPrimitives.WriteUInt32LittleEndian(note, 11);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(4), (uint)text.Length);
        "VMCOREINFO"u8.CopyTo(note.AsSpan(12));
        text.CopyTo(note, 24);
        return note;
    }

    private string Stream(Action<StreamBuilder>? more = null)
    {
        var b = new StreamBuilder().Block("pc.ram", 8 << 20).Block("unmapped.rom", 64 << 10);
        // 200 consecutive pages (about 800 KiB of records: several of the parser's 256 KiB read buffers).
        for (int i = 0; i < 200; i++)
        {
            b.Page("pc.ram", 0x100000 + ((ulong)i * 0x1000), RamPages.Pattern(i));
        }

        b.Page("pc.ram", 0x400000, RamPages.Pattern(300))
            .Page("pc.ram", 0x401000, RamPages.Pattern(301))
            .Fill("pc.ram", 0x402000, 0x5a)
            .Page("unmapped.rom", 0x1000, RamPages.Pattern(400))
            // A second pass: a page sent again, data replaced by a zero record and by a fill record, a fill replaced by zero.
            .Page("pc.ram", 0x100000, RamPages.Pattern(500))
            .Fill("pc.ram", 0x400000, 0)
            .Fill("pc.ram", 0x401000, 0x11)
            .Fill("pc.ram", 0x402000, 0);
        more?.Invoke(b);
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string path = Path.Combine(_dir, $"g-{Guid.NewGuid():N}.mig");
        File.WriteAllBytes(path, b.Build());
        return path;
    }

    private string Extract(string stream) => ExtractWithNote(stream).Core;

    private (string Core, string? How) ExtractWithNote(string stream)
    {
        string dir = Path.Combine(_dir, $"out-{Guid.NewGuid():N}");
        using MachineExport.Session export = MachineExport.Begin(dir, stream, xml: false);
        using MachineState m = SnapshotLoader.Open(stream, new SnapshotOpenOptions { RamObserver = export.RamObserver });
        (byte[] Note, string How)? note = VmcoreinfoLocator.Find(m, scan: true, export.VmcoreinfoCandidates(m));
        export.Finish(m, new MachineExport.Options(false, note?.Note, []));
        return (Path.Combine(dir, MachineExport.CoreName), note?.How);
    }

    [Fact]
    public void TheStreamedCoreHoldsWhatTheStreamHolds()
    {
        string stream = Stream();
        string core = Extract(stream);
        RamPages.AssertSameRam(stream, core);
        using MachineState elf = SnapshotLoader.Open(core);
        byte[] page = new byte[4096];
        elf.Memory.ReadExactly(0x100000, page);
        Assert.Equal(RamPages.Pattern(500), page);
        elf.Memory.ReadExactly(0x400000, page);
        Assert.All(page, x => Assert.Equal(0, x));
        elf.Memory.ReadExactly(0x401000, page);
        Assert.All(page, x => Assert.Equal(0x11, x));
        elf.Memory.ReadExactly(0x402000, page);
        Assert.All(page, x => Assert.Equal(0, x));

        // The RAM was placed while parsing: it sits after the room left for the headers, not right after them.
        using var f = File.OpenRead(core);
        byte[] header = new byte[64];
        f.ReadExactly(header);
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(32));
        byte[] ph = new byte[56];
        f.Position = phoff + 56; // the first PT_LOAD, after the PT_NOTE
        f.ReadExactly(ph);
        Assert.True((long)BinaryPrimitives.ReadUInt64LittleEndian(ph.AsSpan(8)) >= StreamedRamWriter.HeaderRoom);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RunsOfZeroRecordsGiveWhatTheRecordsSayInTheIndexAndInTheCore(int seed)
    {
        // Runs of zero records for consecutive pages are stored as runs: over pages never sent, over pages holding
        // data or a fill (a second pass), across 64-page chunks and the parser's 256 KiB read buffers, broken by
        // fill records, gaps and data. The expected RAM is a model of the records, not our parser.
        const int Pages = 2048;
        var random = new Random(seed);
        var model = new byte[Pages][];
        var b = new StreamBuilder().Block("pc.ram", Pages * 4096UL);
        void Zero(int p)
        {
            b.Fill("pc.ram", (ulong)p * 4096);
            model[p] = new byte[4096];
        }

        void Data(int p, int pattern)
        {
            b.Page("pc.ram", (ulong)p * 4096, RamPages.Pattern(pattern));
            model[p] = RamPages.Pattern(pattern);
        }

        void Fill(int p, byte fill)
        {
            b.Fill("pc.ram", (ulong)p * 4096, fill);
            model[p] = Enumerable.Repeat(fill, 4096).ToArray();
        }

        for (int p = 0; p < Pages; p++)
        {
            int r = random.Next(100);
            if (r < 80)
            {
                Zero(p);
            }
            else if (r < 88)
            {
                Data(p, p);
            }
            else if (r < 93)
            {
                Fill(p, 0x5a);
            }
        }

        for (int i = 0; i < 12; i++)
        {
            int start = random.Next(Pages);
            int end = Math.Min(Pages, start + random.Next(1, 300));
            for (int p = start; p < end; p++)
            {
                Zero(p);
            }

            Data(random.Next(Pages), 1000 + i);
            Fill(random.Next(Pages), 0x33);
        }

        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string stream = Path.Combine(_dir, $"runs-{seed}.mig");
        File.WriteAllBytes(stream, b.Build());

        void AssertModel(IPhysicalMemory memory, string what)
        {
            byte[] page = new byte[4096];
            for (int p = 0; p < Pages; p++)
            {
                if (p is >= 0xa0 and < 0x100)
                {
                    continue; // the pc machine's VGA and ROM hole: not RAM in the guest-physical map
                }

                memory.ReadExactly((ulong)p * 4096, page);
                Assert.True(page.AsSpan().SequenceEqual(model[p] ?? new byte[4096]), $"{what}: page {p} differs from its records");
            }
        }

        using (MachineState m = SnapshotLoader.Open(stream))
        {
            AssertModel(m.Memory, "index");
        }

        using MachineState core = SnapshotLoader.Open(Extract(stream));
        AssertModel(core.Memory, "streamed core");
    }

    [Fact]
    public void TheStreamedCoreIsTheTwoPassCoreByContent()
    {
        string stream = Stream();
        string twoPass = Path.Combine(_dir, "two-pass.elf");
        using (MachineState m = SnapshotLoader.Open(stream))
        {
            ElfCoreWriter.Write(m, twoPass, null);
        }

        RamPages.AssertSameRam(twoPass, Extract(stream));
    }

    [Fact]
    public void TheNoteIsFoundAroundTheCandidatePagesAsByAFullScan()
    {
        // The note's name straddles a page boundary: the page where it starts ends with the name's first bytes.
        byte[] note = Note();
        byte[] first = RamPages.Pattern(600);
        byte[] second = RamPages.Pattern(601);
        const int At = 4096 - 16;
        note.AsSpan(0, 16).CopyTo(first.AsSpan(At));
        note.AsSpan(16).CopyTo(second);
        string stream = Stream(b => b.Page("pc.ram", 0x600000, first).Page("pc.ram", 0x601000, second));
        (string core, string? how) = ExtractWithNote(stream);
        Assert.Equal($"RAM scan (guest physical 0x{0x600000 + At:x})", how);
        using MachineState elf = SnapshotLoader.Open(core);
        Assert.Equal(note, elf.Origin.CarriedVmcoreinfoNote);

        // The full scan (no candidates) finds the same note.
        using MachineState mig = SnapshotLoader.Open(stream);
        Assert.Equal(how, VmcoreinfoLocator.Find(mig, scan: true)!.Value.How);
        Assert.True(VmcoreinfoLocator.MayStartName(first));
        Assert.False(VmcoreinfoLocator.MayStartName(second));
        Assert.False(VmcoreinfoLocator.MayStartName(RamPages.Pattern(602)));
    }

    [Fact]
    public void PlacedBytesInsideTheHeadersAreRefusedAndTheWriterCopiesInstead()
    {
        var builder = new ElfCoreBuilder();
        builder.AddPlaced(0x1000, 0x1000, 0, 0, 0x1000, 64);
        Assert.Contains(builder.Verify(), p => p.Contains("inside the", StringComparison.Ordinal));

        string stream = Stream();
        string core = Path.Combine(_dir, "fallback.elf");
        using (MachineState m = SnapshotLoader.Open(stream))
        using (OutputFile output = OutputFile.Create(core, OutputRules.ForInputs([stream])))
        {
            // Every range "placed" at offset 0: the headers cannot fit before it, so the file is emptied and copied.
            ElfCoreWriter.WriteTo(m, output, null, [], _ => 0L);
            output.Commit();
        }

        RamPages.AssertSameRam(stream, core);
    }
}
