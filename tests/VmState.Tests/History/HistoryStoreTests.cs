using System.Security.Cryptography;
using VmState.History;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.History;

public sealed class HistoryStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-history-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Store => Path.Combine(_dir, "store");

    /// <summary>A stream with <paramref name="pages"/> data pages of pattern seeds at consecutive pc.ram pages from 1 MiB, a fill page and a ROM page.</summary>
    private string Stream(string name, IEnumerable<int> pages, byte fill = 0x5a)
    {
        var b = new StreamBuilder().Block("pc.ram", 8 << 20).Block("unmapped.rom", 64 << 10);
        int i = 0;
        foreach (int seed in pages)
        {
            b.Page("pc.ram", 0x100000 + ((ulong)i++ * 0x1000), Page(seed));
        }

        b.Fill("pc.ram", 0x700000, fill).Fill("pc.ram", 0x701000, 0).Page("unmapped.rom", 0x1000, Page(9999));
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, b.Build());
        return path;
    }

    /// <summary>A page that differs for every seed (<see cref="RamPages.Pattern"/> differs only by the seed's low byte).</summary>
    private static byte[] Page(int seed)
    {
        byte[] p = RamPages.Pattern(seed);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(p.AsSpan(8), seed);
        return p;
    }

    private static HistoryCapture Append(HistoryStoreWriter w, string path, DateTimeOffset? time = null)
    {
        using FileStream f = File.OpenRead(path);
        // Forward only, as a pipe would give it.
        using var pipe = new ForwardOnly(f);
        return w.Append(pipe, path, time ?? DateTimeOffset.UnixEpoch);
    }

    private static void AssertSameMemory(IPhysicalMemory expected, IPhysicalMemory actual)
    {
        Assert.Equal(expected.Ranges.Select(r => (r.Start, r.Length)), actual.Ranges.Select(r => (r.Start, r.Length)));
        foreach (MemoryRange r in expected.Ranges)
        {
            byte[] a = new byte[r.Length];
            byte[] b = new byte[r.Length];
            expected.Read(r.Start, a);
            actual.Read(r.Start, b);
            Assert.True(a.AsSpan().SequenceEqual(b), $"range {r.Start:x}+{r.Length:x} differs");
        }
    }

    private Dictionary<string, byte[]> Snapshot() =>
        Directory.EnumerateFiles(Store).Where(f => Path.GetFileName(f) != "lock").ToDictionary(f => Path.GetFileName(f), f => File.ReadAllBytes(f));

    [Fact]
    public void EveryCaptureReadsBackAsItsStreamAndExportsAStreamWithTheSameMemory()
    {
        string s1 = Stream("a.mig", Enumerable.Range(0, 100));
        string s2 = Stream("b.mig", Enumerable.Range(0, 100).Select(i => i == 7 ? 777 : i), fill: 0x33);
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Append(w, s1, DateTimeOffset.Parse("2026-11-29T10:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
            Append(w, s2, DateTimeOffset.Parse("2026-11-29T10:05:00Z", System.Globalization.CultureInfo.InvariantCulture));
        }

        using HistoryStore store = HistoryStore.Open(Store);
        foreach ((string stream, int n) in new[] { (s1, 1), (s2, 2) })
        {
            using MachineState expected = SnapshotLoader.Open(stream);
            using MachineState actual = store.OpenCapture(store.Find(n.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            AssertSameMemory(expected.Memory, actual.Memory);
            Assert.Equal(expected.Cpus[0].Rip, actual.Cpus[0].Rip);
            Assert.Equal(MachineOriginKind.HistoryCapture, actual.Origin.Kind);

            string exported = Path.Combine(_dir, $"export-{n}.mig");
            using (FileStream o = File.Create(exported))
            {
                store.Export(store.Captures[n - 1], o);
            }

            RamPages.AssertSameRam(stream, exported);
        }

        // Through the front door, by number, from the latest, and by time (the latest at or before it).
        using (Vm vm = Vm.Open($"{Store}@-1"))
        {
            Assert.Equal(2, ((HistoryCaptureOrigin)vm.Origin).Capture.Number);
        }

        Assert.Equal(1, store.Find("2026-11-29T10:04:59").Number);
        Assert.Equal(2, store.Find("2026-11-29T10:05:00").Number);
        Assert.Equal(VmStateObjectKind.Snapshot, Assert.Throws<VmStateNotFoundException>(() => store.Find("2026-11-29T09:00:00")).Kind);
        Assert.Throws<VmStateNotFoundException>(() => store.Find("3"));
        Assert.True(store.Verify().IsSound);
    }

    [Fact]
    public void ImportTakesStreamsVirshSaveFilesAndQcow2Snapshots()
    {
        string stream = Stream("a.mig", Enumerable.Range(0, 30));
        byte[] bytes = File.ReadAllBytes(stream);
        byte[] xml = "<domain type='kvm'><name>t</name></domain>\0"u8.ToArray();
        byte[] save = new byte[92 + xml.Length + bytes.Length];
        "LibvirtQemudSave"u8.CopyTo(save);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(save.AsSpan(16), 2);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(save.AsSpan(20), (uint)xml.Length);
        xml.CopyTo(save, 92);
        bytes.CopyTo(save, 92 + xml.Length);
        string virsh = Path.Combine(_dir, "a.save");
        File.WriteAllBytes(virsh, save);
        string qcow2 = Path.Combine(_dir, "a.qcow2");
        File.WriteAllBytes(qcow2, VmState.Tests.Formats.Qcow2Tests.Image(bytes, name: "before-upgrade", id: "7"));

        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Assert.Contains("migration stream", w.Import(stream).Source, StringComparison.Ordinal);
            HistoryCapture v = w.Import(virsh);
            Assert.Contains("virsh save file", v.Source, StringComparison.Ordinal);
            Assert.Equal(0, v.NewPages);
            HistoryCapture q = w.Import(qcow2, "before-upgrade");
            Assert.Contains("qcow2 snapshot 7 \"before-upgrade\"", q.Source, StringComparison.Ordinal);
            Assert.Equal(0, q.NewPages);
            Assert.Equal(0, q.ChangedPages);
            Assert.Throws<VmStateNotFoundException>(() => w.Import(qcow2, "no-such-snapshot"));
            Assert.Equal(3, w.Captures.Count);
        }

        using HistoryStore store = HistoryStore.Open(Store);
        using MachineState expected = SnapshotLoader.Open(stream);
        foreach (HistoryCapture c in store.Captures)
        {
            using MachineState actual = store.OpenCapture(c);
            AssertSameMemory(expected.Memory, actual.Memory);
        }
    }

    [Fact]
    public void EachUniquePageIsStoredOnce()
    {
        // 50 distinct pages, then the same 50 repeated: 50 unique; the second capture changes one page and adds one.
        string s1 = Stream("a.mig", Enumerable.Range(0, 50).Concat(Enumerable.Range(0, 50)));
        string s2 = Stream("b.mig", Enumerable.Range(0, 50).Concat(Enumerable.Range(0, 50)).Select((s, i) => i == 60 ? 5000 : s));
        string s3 = Stream("c.mig", Enumerable.Range(0, 50).Concat(Enumerable.Range(0, 50)).Select((s, i) => i == 60 ? 5000 : s));
        using HistoryStoreWriter w = HistoryStoreWriter.Open(Store);
        HistoryCapture c1 = Append(w, s1);
        HistoryCapture c2 = Append(w, s2);
        HistoryCapture c3 = Append(w, s3);

        // 50 pc.ram patterns + the ROM page.
        Assert.Equal(51, c1.NewPages);
        Assert.Equal(101, c1.DataPages);
        Assert.Equal(2, c1.FillPages);
        Assert.Equal(1, c2.NewPages);
        Assert.Equal(1, c2.ChangedPages);
        Assert.Equal(0, c3.NewPages);
        Assert.Equal(0, c3.ChangedPages);
        Assert.Equal(52, w.UniquePages);
        Assert.True(c3.BytesAdded < 4096, $"an unchanged capture added {c3.BytesAdded} bytes");
    }

    [Fact]
    public void AnInterruptedAppendLeavesTheStoreAsItWas()
    {
        string s1 = Stream("a.mig", Enumerable.Range(0, 40));
        // 300 new pages: several frames are written to the pack before the stream fails.
        byte[] big = File.ReadAllBytes(Stream("b.mig", Enumerable.Range(1000, 300)));
        using HistoryStoreWriter w = HistoryStoreWriter.Open(Store);
        Append(w, s1);
        Dictionary<string, byte[]> before = Snapshot();

        // A malformed stream: cut inside the page records.
        Assert.Throws<VmStateFormatException>(() => w.Append(new MemoryStream(big[..(big.Length / 2)]), "cut", DateTimeOffset.UnixEpoch));
        Assert.Equal(before, Snapshot());

        // The source fails (a pipe closed, a disk error) after most of the stream.
        Assert.Throws<IOException>(() => w.Append(new FailingStream(new MemoryStream(big), big.Length - 100), "failing", DateTimeOffset.UnixEpoch));
        Assert.Equal(before, Snapshot());

        // Cancelled.
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => w.Append(new MemoryStream(big), "cancelled", DateTimeOffset.UnixEpoch, cancellationToken: cancel.Token));
        Assert.Equal(before, Snapshot());

        // And the writer still works, deduplicating against what is committed only.
        HistoryCapture c = w.Append(new MemoryStream(big), "whole", DateTimeOffset.UnixEpoch);
        Assert.Equal(300, c.NewPages);
        Assert.Equal(2, c.Number);
    }

    [Fact]
    public void WhatAKilledWriterLeftIsRemovedByTheNextOne()
    {
        string s1 = Stream("a.mig", Enumerable.Range(0, 40));
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Append(w, s1);
        }

        Dictionary<string, byte[]> before = Snapshot();

        // What a SIGKILL in the middle of a capture leaves: appended frames and records, a capture file, a temporary.
        File.AppendAllText(Path.Combine(Store, "pack-000001"), "partial frame");
        File.AppendAllText(Path.Combine(Store, "pages.idx"), new string('x', 40));
        File.WriteAllText(Path.Combine(Store, "capture-000002"), "half");
        File.WriteAllText(Path.Combine(Store, "pack-000002"), "VMSHPACK");
        File.WriteAllText(Path.Combine(Store, ".manifest.123.tmp"), "new manifest");

        // Readers see the committed store meanwhile.
        using (HistoryStore r = HistoryStore.Open(Store))
        {
            Assert.True(r.Verify().IsSound);
        }

        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Assert.Equal(before, Snapshot());
        }
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void StoreFilesAreOwnerOnly()
    {
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Append(w, Stream("a.mig", Enumerable.Range(0, 4)));
        }

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Store));
        foreach (string f in Directory.EnumerateFiles(Store))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(f));
        }
    }

    [Fact]
    public void ASecondWriterIsRefused()
    {
        using HistoryStoreWriter w = HistoryStoreWriter.Open(Store);
        IOException e = Assert.Throws<IOException>(() => HistoryStoreWriter.Open(Store));
        Assert.Contains("another process", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("manifest", 20, "manifest: checksum")]
    [InlineData("capture-000001", 30, "capture-000001: content")]
    public void DamagedFilesAreNamed(string file, int offset, string expected)
    {
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Append(w, Stream("a.mig", Enumerable.Range(0, 40)));
        }

        Flip(Path.Combine(Store, file), offset);
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() =>
        {
            using HistoryStore s = HistoryStore.Open(Store);
            s.OpenCapture(s.Captures[0]).Dispose();
        });
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void VerifyFindsDamagedPagesAndIndexRecords()
    {
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Append(w, Stream("a.mig", Enumerable.Range(0, 100)));
        }

        // A byte of a compressed frame, and a record whose frame offset points past the pack.
        Flip(Path.Combine(Store, "pack-000001"), 100);
        byte[] index = File.ReadAllBytes(Path.Combine(Store, "pages.idx"));
        index[PageIndex.HeaderSize + (PageIndex.RecordSize * 70) + 27] = 0x7f;
        File.WriteAllBytes(Path.Combine(Store, "pages.idx"), index);

        using HistoryStore s = HistoryStore.Open(Store);
        HistoryVerifyResult v = s.Verify();
        Assert.False(v.IsSound);
        Assert.Contains(v.Problems, p => p.Contains("pack-000001: frame", StringComparison.Ordinal) || p.Contains("pack-000001: page", StringComparison.Ordinal));
        Assert.Contains(v.Problems, p => p.Contains("pages.idx: page 70 record frame", StringComparison.Ordinal));

        // Reading a damaged page is an error naming the pack, never wrong bytes.
        using MachineState m = s.OpenCapture(s.Captures[0]);
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => m.Memory.Read(0x100000, new byte[4096]));
        Assert.Contains("pack-000001", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void HostileStoreFilesGiveFormatErrors()
    {
        // Truncations and random bytes of each parser's input: a VmStateFormatException, nothing else.
        using (HistoryStoreWriter w = HistoryStoreWriter.Open(Store))
        {
            Append(w, Stream("a.mig", Enumerable.Range(0, 40)));
        }

        byte[] manifest = File.ReadAllBytes(Path.Combine(Store, "manifest"));
        byte[] capture = File.ReadAllBytes(Path.Combine(Store, "capture-000001"));
        var rng = new Random(13);
        for (int i = 0; i < 200; i++)
        {
            byte[] m = manifest[..rng.Next(manifest.Length)];
            Assert.Throws<VmStateFormatException>(() => HistoryManifest.Parse(m, "manifest"));
            byte[] c = capture[..rng.Next(capture.Length)];
            Assert.Throws<VmStateFormatException>(() => CaptureFile.Parse(c, "capture", 1000));
        }

        Assert.Throws<VmStateFormatException>(() => HistoryManifest.Parse(RandomNumberGenerator.GetBytes(300), "manifest"));
    }

    private static void Flip(string path, int offset)
    {
        byte[] b = File.ReadAllBytes(path);
        b[offset] ^= 0xff;
        File.WriteAllBytes(path, b);
    }

    /// <summary>A stream that cannot seek and gives at most 4 KiB a read, like a pipe.</summary>
    private sealed class ForwardOnly(Stream inner) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, 4096));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Fails with an I/O error once <paramref name="failAt"/> bytes were read.</summary>
    private sealed class FailingStream(Stream inner, long failAt) : Stream
    {
        private long _read;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_read >= failAt)
            {
                throw new IOException("the pipe broke");
            }

            int n = inner.Read(buffer, offset, (int)Math.Min(count, failAt - _read));
            _read += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
