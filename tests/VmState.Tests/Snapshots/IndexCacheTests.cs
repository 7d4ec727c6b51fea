using VmState.Formats;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Snapshots;

public sealed class IndexCacheTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-indexcache-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] PageOf(int seed)
    {
        byte[] p = new byte[4096];
        new Random(seed).NextBytes(p);
        return p;
    }

    /// <summary>
    /// A stream with runs of data pages in order, runs of zero pages, fill pages with other bytes, re-sent pages,
    /// pages out of order, three blocks switching back and forth (CONTINUE and named records) and a device.
    /// </summary>
    private static byte[] Sample(int seed = 1)
    {
        var rng = new Random(seed);
        var b = new StreamBuilder().Block("pc.ram", 8 << 20).Block("vga.vram", 1 << 20).Block("pc.bios", 0x40000);
        for (ulong p = 0; p < 300; p++)
        {
            b.Page("pc.ram", p * 4096, PageOf((int)p));
        }

        for (ulong p = 300; p < 900; p++)
        {
            b.Fill("pc.ram", p * 4096);
        }

        b.Fill("pc.ram", 901 * 4096, 0xAB).Fill("pc.ram", 902 * 4096, 0xAB).Fill("pc.ram", 903 * 4096, 0xCD);
        for (int i = 0; i < 200; i++)
        {
            ulong page = (ulong)rng.Next(0, 2048);
            string block = rng.Next(3) == 0 ? "vga.vram" : "pc.ram";
            page %= block == "vga.vram" ? 256UL : 2048UL;
            if (rng.Next(2) == 0)
            {
                b.Page(block, page * 4096, PageOf(i + 1000));
            }
            else
            {
                b.Fill(block, page * 4096, (byte)rng.Next(2));
            }
        }

        b.Page("pc.bios", 0x3F000, PageOf(7)).Page("pc.ram", 0, PageOf(8));
        b.AddDevice(new StreamBuilder.Device("serial", 0, "serial", 3) { Fields = { StreamBuilder.Field.Int("divider", "uint16", 2, 12) } });
        b.Cpu(0, new ulong[16], rip: 0xffffffff81000000, cr3: 0x1234000);
        return b.Build();
    }

    private static void AssertSameIndex(IReadOnlyList<RamBlock> expected, IReadOnlyList<RamBlock> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            RamBlock e = expected[i], a = actual[i];
            Assert.Equal((e.Name, e.Length, e.PageSize, e.PageCount, e.GuestPhysicalAddress, e.ListOffset, e.ListIndex, e.DataPages, e.ZeroPages),
                (a.Name, a.Length, a.PageSize, a.PageCount, a.GuestPhysicalAddress, a.ListOffset, a.ListIndex, a.DataPages, a.ZeroPages));
            for (long p = 0; p < e.PageCount; p++)
            {
                if (e.GetEntry(p) != a.GetEntry(p))
                {
                    Assert.Fail($"block {e.Name} page {p}: expected entry {e.GetEntry(p)}, found {a.GetEntry(p)}");
                }
            }
        }
    }

    private static RamIndexRecord RecordOf(MigrationStream s) => new(s.PageSize, s.RamBlocks, s.RamChunks);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RecordRoundTripAndReplayEqualAFreshParsePageForPage(int seed)
    {
        byte[] data = Sample(seed);
        using MigrationStream fresh = MigrationStreamReader.Read(new MemorySource(data));
        byte[] encoded = RecordOf(fresh).Encode();
        RamIndexRecord decoded = RamIndexRecord.Decode(encoded, data.Length, ReaderLimits.Default);
        AssertSameIndex(fresh.RamBlocks, decoded.Blocks);
        Assert.Equal(fresh.RamChunks, decoded.Chunks);

        using MigrationStream replayed = MigrationStreamReader.Read(new MemorySource(data), null, null, ownsSource: false, ram: null, decoded);
        Assert.True(replayed.RamIndexFromCache);
        Assert.False(fresh.RamIndexFromCache);
        AssertSameIndex(fresh.RamBlocks, replayed.RamBlocks);
        Assert.Equal(fresh.LastRamEosOffset, replayed.LastRamEosOffset);
        Assert.Equal(fresh.Warnings, replayed.Warnings);
        Assert.Equal(fresh.Devices.Select(d => (d.IdStr, d.InstanceId, d.Offset, d.Length)), replayed.Devices.Select(d => (d.IdStr, d.InstanceId, d.Offset, d.Length)));
    }

    [Fact]
    public void PagesSentInOrderTakeAFewBytesFor16GiB()
    {
        // 4 Mi pages of a 16 GiB block, each a data record 4104 bytes after the previous one, except one zero-page
        // run of 1 Mi pages 9 bytes apart: the runs make this a handful of numbers instead of 32 MiB of entries.
        const long Pages = 4L << 20;
        var block = new RamBlock("pc.ram", (ulong)Pages * 4096, 4096, null) { ListOffset = 20 };
        long offset = 100;
        for (long p = 0; p < Pages; p++)
        {
            if (p is >= 1 << 20 and < 2 << 20)
            {
                block.SetFill(p, 0, offset);
                offset += 9;
            }
            else
            {
                block.SetData(p, offset + 8);
                offset += 4104;
            }
        }

        var record = new RamIndexRecord(4096, [block], [new RamChunkSpan(40, offset + 8, 0)]);
        byte[] encoded = record.Encode();
        Assert.True(encoded.Length < 100, $"{encoded.Length} bytes");
        AssertSameIndex([block], RamIndexRecord.Decode(encoded, offset + 8, ReaderLimits.Default).Blocks);
    }

    [Fact]
    public void WholeChunksOfZeroRecordsAndOfUnsentPagesEncodeAsThePagesOneByOneSay()
    {
        // Chunks kept as runs are encoded 64 pages at a time; what decodes must be every page's entry, across runs
        // that start mid-chunk, gaps of never-sent chunks, and a run whose records jump between two chunks.
        const long Pages = 64 * 40;
        var block = new RamBlock("pc.ram", (ulong)Pages * 4096, 4096, null) { ListOffset = 20 };
        block.SetFillRun(10, 64 * 5, 0, 1000, 9);           // from mid-chunk over whole chunks
        block.SetFillRun(64 * 8, 64 * 3, 0, 50_000, 9);     // after two chunks never sent
        block.SetFillRun(64 * 11, 64 * 2, 0, 90_000, 9);    // consecutive in pages, not in the stream
        block.SetData(64 * 13 + 5, 200_000);
        block.SetFillRun(64 * 20, 64 * 10, 0, 300_000, 9);
        block.SetFill(64 * 25 + 3, 0x5a, 400_000);           // breaks one chunk of that run
        long end = 500_000;
        var record = new RamIndexRecord(4096, [block], [new RamChunkSpan(40, end, 0)]);
        AssertSameIndex([block], RamIndexRecord.Decode(record.Encode(), end, ReaderLimits.Default).Blocks);
    }

    [Fact]
    public void ReplayOfAnotherStreamsIndexIsAMismatchNotAnAnswer()
    {
        byte[] a = Sample(1);
        byte[] b = new StreamBuilder().Block("pc.ram", 1 << 20).Page("pc.ram", 0, PageOf(1)).Page("pc.ram", 4096, PageOf(2)).Build();
        using MigrationStream fa = MigrationStreamReader.Read(new MemorySource(a));
        RamIndexRecord record = RamIndexRecord.Decode(RecordOf(fa).Encode(), a.Length, ReaderLimits.Default);
        Assert.Throws<RamIndexMismatchException>(() => MigrationStreamReader.Read(new MemorySource(b), null, null, false, null, record));
    }

    [Fact]
    public void ReplayHonoursTheCallersLimits()
    {
        byte[] data = Sample();
        using MigrationStream fresh = MigrationStreamReader.Read(new MemorySource(data));
        RamIndexRecord record = RamIndexRecord.Decode(RecordOf(fresh).Encode(), data.Length, ReaderLimits.Default);
        var tight = new ReaderLimits { MaxRamBlocks = 2 };
        Assert.Throws<RamIndexMismatchException>(() => MigrationStreamReader.Read(new MemorySource(data), tight, null, false, null, record));
        Assert.Throws<VmStateFormatException>(() => RamIndexRecord.Decode(RecordOf(fresh).Encode(), data.Length, tight));
        Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data), tight));
    }

    public static TheoryData<string, byte[]> HostileRecords => new()
    {
        // page size, chunk count, ... as LEB128
        { "page size not a power of two", [0x81, 0x20, 0, 0] },
        { "2^63 chunks", [0x80, 0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F] },
        { "2^40 blocks", [0x80, 0x20, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20] },
        { "block of 2^62 bytes", [0x80, 0x20, 0, 1, 1, (byte)'a', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0, 0, 1] },
        { "run longer than the block", [0x80, 0x20, 0, 1, 1, (byte)'a', 0x80, 0x20, 0, 0, 1, 0, 2] },
        { "data run past the stream", [0x80, 0x20, 0, 1, 1, (byte)'a', 0x80, 0x40, 0, 0, 1, 1, 2, 0x80, 0x50, 0x88, 0x20] },
        { "stride smaller than a page", [0x80, 0x20, 0, 1, 1, (byte)'a', 0x80, 0x40, 0, 0, 1, 1, 2, 1, 8] },
        { "unknown run kind", [0x80, 0x20, 0, 1, 1, (byte)'a', 0x80, 0x20, 0, 0, 1, 3, 1] },
        { "varint longer than 64 bits", [0x80, 0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01] },
        { "truncated", [0x80, 0x20, 0, 1, 1] },
        { "trailing bytes", [0x80, 0x20, 0, 0, 0] },
        { "chunk outside the stream", [0x80, 0x20, 1, 0x80, 0x80, 0x04, 8, 0, 0] },
    };

    [Theory]
    [MemberData(nameof(HostileRecords))]
    public void HostileRecordsAreRejectedBeforeAllocating(string why, byte[] record)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<VmStateFormatException>(() => RamIndexRecord.Decode(record, 16384, ReaderLimits.Default));
        Assert.Contains("RAM index cache entry", e.Message, StringComparison.Ordinal);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, why);
    }

    private string WriteStream(byte[] data)
    {
        string path = Path.Combine(_dir, "guest.mig");
        File.WriteAllBytes(path, data);
        return path;
    }

    private (MachineState State, List<string> Reports) Open(string path, string? cacheDir = null, long minimum = 0)
    {
        var reports = new List<string>();
        var options = new SnapshotOpenOptions { IndexCache = new IndexCache(cacheDir ?? Path.Combine(_dir, "cache")) { MinimumStreamBytes = minimum, Report = reports.Add } };
        return (SnapshotLoader.Open(path, options), reports);
    }

    private static MigrationStream StreamOf(MachineState m) => ((MigrationStreamOrigin)m.Origin).Stream;

    [Fact]
    public void SecondOpenUsesTheEntryAndGivesTheSameMachine()
    {
        string path = WriteStream(Sample());
        using MachineState fresh = SnapshotLoader.Open(path);
        (MachineState first, List<string> r1) = Open(path);
        using (first)
        {
            Assert.False(StreamOf(first).RamIndexFromCache);
            Assert.Matches("^no entry; written \\([0-9]+ bytes\\)$", Assert.Single(r1));
        }

        string entry = Assert.Single(Directory.GetFiles(Path.Combine(_dir, "cache")));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(entry));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.Combine(_dir, "cache")));
        }

        (MachineState second, List<string> r2) = Open(path);
        using (second)
        {
            Assert.True(StreamOf(second).RamIndexFromCache);
            Assert.Equal("hit", Assert.Single(r2));
            AssertSameIndex(StreamOf(fresh).RamBlocks, StreamOf(second).RamBlocks);
            byte[] a = new byte[9 << 20], b = new byte[9 << 20];
            fresh.Memory.Read(0, a);
            second.Memory.Read(0, b);
            Assert.True(a.AsSpan().SequenceEqual(b));
            Assert.Equal(fresh.Cpus[0].Rip, second.Cpus[0].Rip);
            Assert.Equal(fresh.Warnings, second.Warnings);
        }
    }

    [Fact]
    public void NotesAreKeptBesideTheEntryAndBelongToTheFileAsItWas()
    {
        string path = WriteStream(Sample());
        (MachineState first, List<string> r1) = Open(path);
        using (first)
        {
            Assert.NotNull(first.Notes);
            Assert.Null(first.Notes.Read("test-note"));
            first.Notes.Write("test-note", "where the kernel is"u8);
            Assert.Equal(["no entry; written", "note test-note: no entry", "note test-note: written"], r1.Select(r => r.Split(" (")[0]));
        }

        string note = Assert.Single(Directory.GetFiles(Path.Combine(_dir, "cache"), "*.note"));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(note));
        }

        (MachineState second, List<string> r2) = Open(path);
        using (second)
        {
            Assert.Equal("where the kernel is"u8.ToArray(), second.Notes!.Read("test-note"));
            Assert.Null(second.Notes.Read("another-note"));
            Assert.Equal(["hit", "note test-note: hit", "note another-note: no entry"], r2);
        }

        // A damaged note is not believed.
        byte[] bytes = File.ReadAllBytes(note);
        bytes[^40] ^= 1;
        File.WriteAllBytes(note, bytes);
        using (MachineState third = Open(path).State)
        {
            Assert.Null(third.Notes!.Read("test-note"));
        }

        // The file changed: its notes are not returned, and none is written for the state that was read.
        using (MachineState fourth = Open(path).State)
        {
            fourth.Notes!.Write("test-note", "old"u8);
            File.SetLastWriteTimeUtc(path, File.GetLastWriteTimeUtc(path).AddSeconds(5));
            fourth.Notes.Write("test-note", "stale"u8);
        }

        (MachineState fifth, List<string> r5) = Open(path);
        using (fifth)
        {
            Assert.Null(fifth.Notes!.Read("test-note"));
            Assert.Equal("note test-note: the file changed since the entry was written", r5[^1]);
        }

        using MachineState uncached = SnapshotLoader.Open(path);
        Assert.Null(uncached.Notes);
    }

    [Fact]
    public void ATouchedFileIsParsedAfreshAndItsEntryReplaced()
    {
        string path = WriteStream(Sample());
        Open(path).State.Dispose();
        File.SetLastWriteTimeUtc(path, File.GetLastWriteTimeUtc(path).AddSeconds(5));
        AssertParsedAfreshThenCached(path, "the file changed since the entry was written; written");
    }

    [Fact]
    public void ChangedBytesUnderAnUnchangedModificationTimeAreNoticedByTheHeaderHash()
    {
        byte[] data = Sample();
        string path = WriteStream(data);
        DateTime mtime = File.GetLastWriteTimeUtc(path);
        Open(path).State.Dispose();
        using (FileStream f = File.OpenWrite(path))
        {
            // A byte of the first data page (in the first 64 KiB), rewritten in place with the time put back.
            int at = data.AsSpan().IndexOf(PageOf(0).AsSpan(0, 64)) + 10;
            Assert.InRange(at, 10, IndexCacheFileKey.HashedBytes);
            f.Position = at;
            int old = data[at];
            f.WriteByte((byte)(old ^ 0xFF));
        }

        File.SetLastWriteTimeUtc(path, mtime);
        (MachineState m, List<string> r) = Open(path);
        using (m)
        {
            Assert.False(StreamOf(m).RamIndexFromCache);
            Assert.StartsWith("the file changed", Assert.Single(r), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ACorruptEntryFallsBackToAFreshParse()
    {
        string path = WriteStream(Sample());
        using MachineState fresh = SnapshotLoader.Open(path);
        Open(path).State.Dispose();
        string entry = Assert.Single(Directory.GetFiles(Path.Combine(_dir, "cache")));
        byte[] bytes = File.ReadAllBytes(entry);
        for (int i = 0; i < 64; i++)
        {
            byte[] bad = (byte[])bytes.Clone();
            int at = new Random(i).Next(bad.Length);
            bad[at] ^= (byte)(1 << (i % 8));
            File.WriteAllBytes(entry, i % 2 == 0 ? bad : bad.AsSpan(0, at).ToArray());
            (MachineState m, List<string> r) = Open(path);
            using (m)
            {
                Assert.False(StreamOf(m).RamIndexFromCache);
                Assert.Contains("written", Assert.Single(r), StringComparison.Ordinal);
                AssertSameIndex(StreamOf(fresh).RamBlocks, StreamOf(m).RamBlocks);
            }
        }
    }

    [Fact]
    public void AWellFormedEntryWithAnotherStreamsIndexFallsBackToAFreshParse()
    {
        // The entry passes every identity check (it is forged with this file's key) but indexes another stream
        // whose first RAM chunk starts at the same offset: the jump lands inside this stream's page data, which does
        // not parse as a section, so the index is dropped and the stream parsed afresh.
        string path = WriteStream(Sample(1));
        byte[] other = Sample(2);
        using MachineState fresh = SnapshotLoader.Open(path);
        using MigrationStream o = MigrationStreamReader.Read(new MemorySource(other));
        IndexCacheFileKey key;
        using (var f = new FileSource(path))
        {
            key = IndexCacheFileKey.Of(path, f)!.Value;
        }

        string cache = Path.Combine(_dir, "cache");
        Directory.CreateDirectory(cache);
        long length = new FileInfo(path).Length;
        File.WriteAllBytes(Path.Combine(cache, IndexCacheEntry.FileName(key, "stream")), IndexCacheEntry.Encode(key, "stream", length, new RamIndexRecord(o.PageSize, o.RamBlocks, o.RamChunks.Select(c => c with { End = Math.Min(c.End, length) }).ToList())));
        (MachineState m, List<string> r) = Open(path);
        using (m)
        {
            Assert.False(StreamOf(m).RamIndexFromCache);
            Assert.Contains("does not", Assert.Single(r), StringComparison.Ordinal);
            AssertSameIndex(StreamOf(fresh).RamBlocks, StreamOf(m).RamBlocks);
        }
    }

    /// <summary>The entry is not used (the report says why) and the fresh parse writes one that the next open uses.</summary>
    private void AssertParsedAfreshThenCached(string path, string reason)
    {
        (MachineState m, List<string> r) = Open(path);
        using (m)
        {
            Assert.False(StreamOf(m).RamIndexFromCache);
            Assert.StartsWith(reason, Assert.Single(r), StringComparison.Ordinal);
        }

        (MachineState again, _) = Open(path);
        using (again)
        {
            Assert.True(StreamOf(again).RamIndexFromCache);
        }
    }

    private sealed class CountingObserver : VmState.Memory.IRamStreamObserver
    {
        public int Records { get; private set; }

        public void BlockList(IReadOnlyList<(string Name, ulong Length)> blocks, int pageSize)
        {
        }

        public void Page(int block, ulong offset, ReadOnlyMemory<byte> data) => Records++;

        public void Fill(int block, ulong offset, byte value, bool replaces) => Records++;

        public byte[] ExchangeBuffer(byte[] full) => new byte[full.Length];
    }

    [Fact]
    public void AJobThatObservesEveryPageRecordParsesAfreshEvenWithAnEntry()
    {
        string path = WriteStream(Sample());
        Open(path).State.Dispose();
        var counting = new CountingObserver();
        var reports = new List<string>();
        var options = new SnapshotOpenOptions { RamObserver = counting, IndexCache = new IndexCache(Path.Combine(_dir, "cache")) { MinimumStreamBytes = 0, Report = reports.Add } };
        using MachineState m = SnapshotLoader.Open(path, options);
        Assert.False(StreamOf(m).RamIndexFromCache);
        // Every data record was seen (zero records of pages that read as zero are not reported).
        long dataPages = StreamOf(m).RamBlocks.Sum(b => b.DataPages);
        Assert.True(dataPages > 0 && counting.Records >= dataPages, $"{counting.Records} records observed, {dataPages} data pages");
        Assert.StartsWith("not used: this job reads every page record", Assert.Single(reports), StringComparison.Ordinal);
    }

    [Fact]
    public void AnEntryOthersCouldHaveWrittenIsNotUsed()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        string path = WriteStream(Sample());
        Open(path).State.Dispose();
        string entry = Assert.Single(Directory.GetFiles(Path.Combine(_dir, "cache")));
        File.SetUnixFileMode(entry, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherWrite);
        // The fresh parse replaces the entry (a 0600 one), which is used again.
        AssertParsedAfreshThenCached(path, "not used: the entry or its directory is writable by group or others; written");
    }

    [Fact]
    public void SmallStreamsAndNoCacheWriteNothing()
    {
        string path = WriteStream(Sample());
        string cache = Path.Combine(_dir, "cache");
        (MachineState m, List<string> r) = Open(path, minimum: IndexCache.DefaultMinimumStreamBytes);
        m.Dispose();
        Assert.Empty(r);
        using (SnapshotLoader.Open(path, new SnapshotOpenOptions()))
        {
        }

        Assert.False(Directory.Exists(cache));
    }

    [Fact]
    public void AnEntryForAnotherFileStateIsNotUsed()
    {
        byte[] data = Sample();
        using MigrationStream s = MigrationStreamReader.Read(new MemorySource(data));
        var key = new IndexCacheFileKey(1, 2, data.Length, 3, new byte[32]);
        byte[] entry = IndexCacheEntry.Encode(key, "stream", data.Length, RecordOf(s));
        Assert.NotNull(IndexCacheEntry.Decode(entry, key, "stream", data.Length, ReaderLimits.Default, out _));
        foreach (IndexCacheFileKey other in new[] { key with { Device = 9 }, key with { Inode = 9 }, key with { Size = 9 }, key with { ModifiedTicks = 9 }, key with { HeaderHash = new byte[32].Select((_, i) => (byte)i).ToArray() } })
        {
            Assert.Null(IndexCacheEntry.Decode(entry, other, "stream", data.Length, ReaderLimits.Default, out string why));
            Assert.Equal("the file changed since the entry was written", why);
        }

        Assert.Null(IndexCacheEntry.Decode(entry, key, "qcow2 snapshot 1 a", data.Length, ReaderLimits.Default, out _));
        Assert.Null(IndexCacheEntry.Decode(entry, key, "stream", data.Length + 1, ReaderLimits.Default, out _));
    }
}
