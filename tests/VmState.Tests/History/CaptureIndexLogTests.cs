using System.Buffers.Binary;
using VmState.History;
using VmState.IO;
using VmState.Tests.Support;

namespace VmState.Tests.History;

/// <summary>The combined index file (<c>indexes</c>): written beside the per-capture index files, read in one go, repaired by the next writer, checked by verify.</summary>
public sealed class CaptureIndexLogTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-history-indexlog-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Store => Path.Combine(_dir, "store");

    private string Log => Path.Combine(Store, CaptureIndexLog.FileName);

    private string IndexFile(int number) => Path.Combine(Store, CaptureIndexFile.Name(number));

    private static byte[] Page(int seed)
    {
        byte[] p = RamPages.Pattern(seed);
        BinaryPrimitives.WriteInt32LittleEndian(p.AsSpan(8), seed);
        return p;
    }

    /// <summary>A store of <paramref name="count"/> captures of a synthetic guest (one changed page each).</summary>
    private void Record(int count)
    {
        using HistoryStoreWriter w = HistoryStoreWriter.Open(Store);
        for (int i = 0; i < count; i++)
        {
            var b = new StreamBuilder().Block("pc.ram", 8 << 20).Page("pc.ram", 0x100000, Page(1)).Page("pc.ram", 0x101000, Page(100 + w.Captures.Count));
            b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
            w.Append(new MemoryStream(b.Build()), "synthetic", DateTimeOffset.UnixEpoch.AddSeconds(w.Captures.Count));
        }
    }

    private Dictionary<int, (int Offset, int Length)> Records(out byte[] data, out int valid)
    {
        data = File.ReadAllBytes(Log);
        return CaptureIndexLog.Scan(data, Log, out valid);
    }

    [Fact]
    public void EveryIndexIsAppendedToTheCombinedFileAndReadFromIt()
    {
        Record(3);
        Dictionary<int, (int Offset, int Length)> records = Records(out byte[] data, out int valid);
        Assert.Equal(data.Length, valid);
        Assert.Equal([1, 2, 3], records.Keys.Order());
        foreach ((int number, (int offset, int length)) in records)
        {
            Assert.Equal(File.ReadAllBytes(IndexFile(number)), data.AsSpan(offset, length).ToArray());
        }

        // Without the per-capture files the indexes still read: from the combined file alone.
        for (int n = 1; n <= 3; n++)
        {
            File.Delete(IndexFile(n));
        }

        using HistoryStore store = HistoryStore.Open(Store);
        Assert.Equal([1, 2, 3], store.Captures.Select(c => store.TryReadIndex(c)!.Number));
        Assert.True(store.Verify().IsSound);
    }

    [Fact]
    public void AStoreWithoutTheCombinedFileReadsAndTheNextWriterAddsIt()
    {
        Record(2);
        byte[] written = File.ReadAllBytes(Log);
        File.Delete(Log);
        using (HistoryStore old = HistoryStore.Open(Store))
        {
            Assert.Equal([1, 2], old.Captures.Select(c => old.TryReadIndex(c)!.Number));
            Assert.True(old.Verify().IsSound);
        }

        // Opening it for writing (record, import, prune) migrates it: the same records as if it had always been kept.
        Record(1);
        Dictionary<int, (int Offset, int Length)> records = Records(out byte[] data, out _);
        Assert.Equal([1, 2, 3], records.Keys.Order());
        Assert.Equal(written, data[..written.Length]);
    }

    [Fact]
    public void ARecordCutOffByACrashIsIgnoredAndAMissingOneIsAppendedByTheNextWriter()
    {
        Record(2);
        Dictionary<int, (int Offset, int Length)> records = Records(out byte[] data, out _);

        // A writer killed after writing capture 2's index file, while appending its record: half of it is there.
        int cut = records[2].Offset - CaptureIndexLog.RecordHeaderSize + 100;
        File.WriteAllBytes(Log, data[..cut]);
        using (HistoryStore s = HistoryStore.Open(Store))
        {
            Assert.Equal(2, s.TryReadIndex(s.Captures[1])!.Number);
            Assert.True(s.Verify().IsSound);
        }

        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
        }

        Dictionary<int, (int Offset, int Length)> repaired = Records(out byte[] again, out int valid);
        Assert.Equal(again.Length, valid);
        Assert.Equal(data, again);
        Assert.Equal(records, repaired);
    }

    [Fact]
    public void DamageInTheCombinedFileIsNamedAndVerifyReportsIt()
    {
        Record(2);
        Dictionary<int, (int Offset, int Length)> records = Records(out byte[] data, out _);
        data[records[2].Offset + 40] ^= 0xff;
        File.WriteAllBytes(Log, data);
        using (HistoryStore s = HistoryStore.Open(Store))
        {
            var e = Assert.Throws<VmStateFormatException>(() => s.TryReadIndex(s.Captures[1]));
            Assert.Contains("indexes at ", e.Message, StringComparison.Ordinal);
            Assert.Contains("(capture 2): checksum", e.Message, StringComparison.Ordinal);
            Assert.Equal(1, s.TryReadIndex(s.Captures[0])!.Number);
            HistoryVerifyResult v = s.Verify();
            Assert.False(v.IsSound);
            Assert.Contains(v.Problems, p => p.Contains("(capture 2): checksum", StringComparison.Ordinal));
        }

        // A record that parses but is not the capture's index file: the two copies disagree.
        byte[] other = CaptureIndexFile.Serialize(new HistoryCaptureIndex(2, null, null, "another index", 0, [], [], [], 0, 0, 0, []), 4096);
        File.WriteAllBytes(Log, [.. data[..(records[2].Offset - CaptureIndexLog.RecordHeaderSize)], .. CaptureIndexLog.Record(2, other)]);
        using (HistoryStore s = HistoryStore.Open(Store))
        {
            HistoryVerifyResult v = s.Verify();
            Assert.Contains(v.Problems, p => p.Contains("the record of capture 2", StringComparison.Ordinal) && p.Contains("differs from", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void AMalformedCombinedFileIsRefusedWithTheFieldNamed()
    {
        byte[] header = CaptureIndexLog.Header();
        Assert.Empty(CaptureIndexLog.Scan(header, "indexes", out int valid));
        Assert.Equal(CaptureIndexLog.HeaderSize, valid);

        byte[] magic = (byte[])header.Clone();
        magic[0] = (byte)'X';
        Assert.Contains("magic", Assert.Throws<VmStateFormatException>(() => CaptureIndexLog.Scan(magic, "indexes", out _)).Message, StringComparison.Ordinal);
        byte[] version = (byte[])header.Clone();
        version[8] = 2;
        Assert.Contains("version", Assert.Throws<VmStateFormatException>(() => CaptureIndexLog.Scan(version, "indexes", out _)).Message, StringComparison.Ordinal);
        Assert.Contains("length", Assert.Throws<VmStateFormatException>(() => CaptureIndexLog.Scan(header[..10], "indexes", out _)).Message, StringComparison.Ordinal);

        byte[] zero = [.. header, .. new byte[8]];
        Assert.Contains("record capture number", Assert.Throws<VmStateFormatException>(() => CaptureIndexLog.Scan(zero, "indexes", out _)).Message, StringComparison.Ordinal);
        byte[] huge = [.. header, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0];
        Assert.Contains("capture 1 record length", Assert.Throws<VmStateFormatException>(() => CaptureIndexLog.Scan(huge, "indexes", out _)).Message, StringComparison.Ordinal);

        // A record longer than what is left is an append cut off: not part of the file.
        byte[] cut = [.. header, .. CaptureIndexLog.Record(1, new byte[50]), 2, 0, 0, 0, 100, 0, 0, 0, 1, 2, 3];
        Dictionary<int, (int Offset, int Length)> records = CaptureIndexLog.Scan(cut, "indexes", out valid);
        Assert.Equal([1], records.Keys);
        Assert.Equal(CaptureIndexLog.HeaderSize + CaptureIndexLog.RecordHeaderSize + 50, valid);
    }
}
