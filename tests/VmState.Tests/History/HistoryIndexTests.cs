using VmState.History;
using VmState.IO;
using VmState.Tests.Support;

namespace VmState.Tests.History;

/// <summary>Capture indexes (their file), history diff's page counts and history find's byte search on synthetic streams.</summary>
public sealed class HistoryIndexTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-history-index-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Store => Path.Combine(_dir, "store");

    private static HistoryCaptureIndex Sample() => new(7, TimeSpan.FromMicroseconds(3250), TimeSpan.FromMilliseconds(812.5), null, 0xffffffff9a000000,
        [new HistoryProcess(1, 0, 0, "init", "init", 100, false), new HistoryProcess(2, 0, 0, "kthreadd", "kthreadd", 200, true), new HistoryProcess(4711, 1, 1000, "vmsd-alpha", "vmsd-alpha", 5_000_000_000, false)],
        [new HistoryModule("e1000", 0xffffffffc0000000, 0x24000)],
        [new HistoryNetDevice("eth0", 2, "52:54:00:12:34:56", 0x1003, 1500)],
        10, 40, 30, [new HistoryLogLine(30, 1_000_000, 6, "VMSTATE-KTICK 1"), new HistoryLogLine(39, 2_000_000, 5, "line with ünïcode")]);

    [Fact]
    public void AnIndexFileReadsBackAsItWasWritten()
    {
        HistoryCaptureIndex index = Sample();
        byte[] bytes = CaptureIndexFile.Serialize(index, 4096);
        HistoryCaptureIndex back = CaptureIndexFile.Parse(bytes, "index-000007");
        Assert.Equal(index with { Processes = [], Modules = [], NetDevices = [], NewLogLines = [] }, back with { Processes = [], Modules = [], NetDevices = [], NewLogLines = [] });
        Assert.Equal(index.Processes, back.Processes);
        Assert.Equal(index.Modules, back.Modules);
        Assert.Equal(index.NetDevices, back.NetDevices);
        Assert.Equal(index.NewLogLines, back.NewLogLines);

        HistoryCaptureIndex noKernel = new(8, null, null, "no kernel found", 0, [], [], [], 0, 0, 0, []);
        Assert.Equal(noKernel with { Processes = [], Modules = [], NetDevices = [], NewLogLines = [] },
            CaptureIndexFile.Parse(CaptureIndexFile.Serialize(noKernel, 4096), "index-000008") with { Processes = [], Modules = [], NetDevices = [], NewLogLines = [] });
    }

    [Fact]
    public void ADamagedOrInconsistentIndexFileIsRejectedWithItsOffset()
    {
        byte[] bytes = CaptureIndexFile.Serialize(Sample(), 4096);
        byte[] flipped = (byte[])bytes.Clone();
        flipped[40] ^= 1;
        var e = Assert.Throws<VmStateFormatException>(() => CaptureIndexFile.Parse(flipped, "index-000007"));
        Assert.Contains("checksum", e.Message, StringComparison.Ordinal);

        // Past the checksum: a log line numbered below the "after" sequence is not a new line.
        HistoryCaptureIndex bad = Sample() with { NewLogLines = [new HistoryLogLine(5, 0, 6, "old")] };
        e = Assert.Throws<VmStateFormatException>(() => CaptureIndexFile.Parse(CaptureIndexFile.Serialize(bad, 4096), "index-000007"));
        Assert.Contains("log line 0 sequence", e.Message, StringComparison.Ordinal);

        // A count larger than the bytes left is refused before anything is allocated for it.
        byte[] huge = CaptureIndexFile.Serialize(Sample() with { Processes = [] }, 4096);
        int countAt = 8 + 4 + 4 + 4 + 8 + 8 + 1 + 8;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(huge.AsSpan(countAt), 1_000_000);
        e = Assert.Throws<VmStateFormatException>(() => CaptureIndexFile.Parse(huge, "index-000007", checkHash: false));
        Assert.Contains("process count", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A stream whose pc.ram holds <paramref name="pages"/> at 1 MiB + 4 KiB × i.</summary>
    private string Stream(string name, params byte[][] pages)
    {
        var b = new StreamBuilder().Block("pc.ram", 8 << 20);
        for (int i = 0; i < pages.Length; i++)
        {
            b.Page("pc.ram", 0x100000 + ((ulong)i * 0x1000), pages[i]);
        }

        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, b.Build());
        return path;
    }

    private static byte[] Page(int seed)
    {
        byte[] p = RamPages.Pattern(seed);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(p.AsSpan(8), seed);
        return p;
    }

    [Fact]
    public void FindBytesNamesTheCapturesHoldingThePatternAlsoAcrossAPageBoundaryAndDiffCountsChangedPages()
    {
        byte[] needle = "VMSTATE-NEEDLE-0123456789"u8.ToArray();
        byte[] inside = Page(3);
        needle.CopyTo(inside, 100);
        byte[] endOfPage = Page(4);
        byte[] startOfNext = Page(5);
        needle.AsSpan(0, 10).CopyTo(endOfPage.AsSpan(4096 - 10));
        needle.AsSpan(10).CopyTo(startOfNext);

        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            foreach (string s in (string[])[Stream("1", Page(1), Page(2)), Stream("2", Page(1), inside), Stream("3", Page(1), Page(2)), Stream("4", Page(1), endOfPage, startOfNext), Stream("5", Page(1), endOfPage, Page(6))])
            {
                w.Append(File.OpenRead(s), s, DateTimeOffset.UnixEpoch);
            }
        }

        using HistoryStore store = HistoryStore.Open(Store);
        HistoryFindResult found = HistoryQuery.Bytes(store, needle);
        Assert.Equal([2, 4], found.Hits.Select(h => h.Capture.Number));
        Assert.Equal(["at physical 0x101064", "at physical 0x101ff6"], found.Hits.Select(h => h.Detail));
        Assert.Equal(store.UniquePages, found.PagesRead);

        // The synthetic guest has no kernel: the index says so, and the diff still counts pages from the page maps.
        HistoryCaptureIndex index = store.ReadIndex(store.Captures[0]);
        Assert.NotNull(index.KernelError);
        Assert.NotNull(store.TryReadIndex(store.Captures[0]));
        HistoryDiff d = store.Diff(store.Captures[0], store.Captures[3]);
        Assert.Equal(2, d.ChangedPages);
        Assert.NotNull(d.ProcessPagesError);
        Assert.Equal(0, store.Diff(store.Captures[0], store.Captures[2]).ChangedPages);
        HistoryFindResult init = HistoryQuery.Process(store, "init");
        Assert.Empty(init.Hits);
        Assert.Equal(5, init.Unknown.Count);
    }

    [Fact]
    public void AnIndexLeftByAnInterruptedCaptureIsRemovedAndAMissingOneIsComputed()
    {
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            w.Append(File.OpenRead(Stream("1", Page(1))), "1", DateTimeOffset.UnixEpoch);
        }

        // What a recorder killed after writing an index for a capture it never committed would leave.
        // (and a store whose capture 1 was never indexed: neither its file nor its record in the combined file).
        File.Copy(Path.Combine(Store, "index-000001"), Path.Combine(Store, "index-000002"));
        File.Delete(Path.Combine(Store, "index-000001"));
        File.WriteAllBytes(Path.Combine(Store, CaptureIndexLog.FileName), CaptureIndexLog.Header());
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Assert.False(File.Exists(Path.Combine(Store, "index-000002")));
        }

        using HistoryStore store = HistoryStore.Open(Store);
        Assert.Null(store.TryReadIndex(store.Captures[0]));
        Assert.Equal(1, store.ReadIndex(store.Captures[0]).Number);
        Assert.True(store.Verify().IsSound);
    }

    [Fact]
    public void NoOutputIsWrittenIntoAStoreACaptureIsReadFrom()
    {
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            w.Append(File.OpenRead(Stream("1", Page(1))), "1", DateTimeOffset.UnixEpoch);
        }

        OutputRules rules = OutputRules.ForInputs([Path.Combine(Store, "capture-000001")]);
        var e = Assert.Throws<ArgumentException>(() => rules.CheckTarget(Path.Combine(Store, "core.elf")));
        Assert.Contains("inside the history store", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => rules.CheckTarget(Path.Combine(Store, "pack-000001")));
        rules.CheckTarget(Path.Combine(_dir, "core.elf"));
    }

    [Fact]
    public void PruneKeepsTheChosenCapturesAsTheyWereAndReclaimsWhatOnlyTheDroppedOnesUsed()
    {
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            // Capture 2 alone has pages 20 and 21; the others share page 1 and have one page of their own.
            foreach (string s in (string[])[Stream("1", Page(1), Page(10)), Stream("2", Page(20), Page(21)), Stream("3", Page(1), Page(30)), Stream("4", Page(1), Page(40))])
            {
                w.Append(File.OpenRead(s), s, DateTimeOffset.FromUnixTimeSeconds(1_800_000_000 + (s[^1] - '0')));
            }
        }

        var before = new Dictionary<int, byte[]>();
        using (HistoryStore s = HistoryStore.Open(Store))
        {
            Assert.Equal(6, s.UniquePages);
            foreach (HistoryCapture c in s.Captures)
            {
                using VmState.Machine.MachineState m = s.OpenCapture(c);
                byte[] ram = new byte[0x3000];
                m.Memory.Read(0x100000, ram);
                before[c.Number] = ram;
            }
        }

        // A sibling left by a prune that was killed: removed, never taken for the store.
        Directory.CreateDirectory(Path.Combine(_dir, ".store.prune-1"));
        HistoryPruneResult r = HistoryStoreWriter.Prune(Store, c => c.Number != 2);
        Assert.Equal([2], r.Dropped.Select(c => c.Number));
        Assert.Equal((6L, 4L), (r.PagesBefore, r.PagesAfter));
        Assert.False(Directory.Exists(Path.Combine(_dir, ".store.prune-1")));
        Assert.Empty(Directory.EnumerateDirectories(_dir, ".store.prune-*"));

        using HistoryStore after = HistoryStore.Open(Store);
        Assert.Equal([1, 3, 4], after.Captures.Select(c => c.Number));
        Assert.Equal(4, after.UniquePages);
        Assert.True(after.Verify().IsSound);
        foreach (HistoryCapture c in after.Captures)
        {
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000 + c.Number), c.Time);
            using VmState.Machine.MachineState m = after.OpenCapture(c);
            byte[] ram = new byte[0x3000];
            m.Memory.Read(0x100000, ram);
            Assert.Equal(before[c.Number], ram);
            Assert.NotNull(after.TryReadIndex(c));
        }

        Assert.Throws<ArgumentException>(() => HistoryStoreWriter.Prune(Store, _ => false));
        using HistoryStoreWriter again = HistoryStoreWriter.Open(Store);
        Assert.Equal(5, again.Captures[^1].Number + 1);
    }
}
