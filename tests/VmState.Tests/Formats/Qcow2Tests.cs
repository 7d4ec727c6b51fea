using System.Buffers.Binary;
using System.Text;
using VmState.Editing;
using VmState.Formats.Qcow2;
using VmState.IO;
using VmState.Machine;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

public class Qcow2Tests
{
    private const int Cluster = 1 << 16;

    /// <summary>A qcow2 v3 image (64 KiB clusters, 1 MiB disk) with one internal snapshot holding <paramref name="vmstate"/>.</summary>
    internal static byte[] Image(byte[] vmstate, string name = "snap1", string id = "1")
    {
        int dataClusters = (vmstate.Length + Cluster - 1) / Cluster;
        byte[] img = new byte[(5 + dataClusters) * Cluster];
        Span<byte> h = img;
        BinaryPrimitives.WriteUInt32BigEndian(h, Qcow2Image.Magic);
        BinaryPrimitives.WriteUInt32BigEndian(h[4..], 3);
        BinaryPrimitives.WriteUInt32BigEndian(h[20..], 16);
        BinaryPrimitives.WriteUInt64BigEndian(h[24..], 1 << 20);
        BinaryPrimitives.WriteUInt32BigEndian(h[36..], 1);
        BinaryPrimitives.WriteUInt64BigEndian(h[40..], 4 * Cluster); // active L1 (empty)
        BinaryPrimitives.WriteUInt32BigEndian(h[60..], 1);
        BinaryPrimitives.WriteUInt64BigEndian(h[64..], Cluster);
        BinaryPrimitives.WriteUInt32BigEndian(h[96..], 4);
        BinaryPrimitives.WriteUInt32BigEndian(h[100..], 104);

        // Snapshot table entry at cluster 1.
        Span<byte> e = img.AsSpan(Cluster);
        BinaryPrimitives.WriteUInt64BigEndian(e, 2 * Cluster);
        BinaryPrimitives.WriteUInt32BigEndian(e[8..], 2);
        BinaryPrimitives.WriteUInt16BigEndian(e[12..], (ushort)id.Length);
        BinaryPrimitives.WriteUInt16BigEndian(e[14..], (ushort)name.Length);
        BinaryPrimitives.WriteUInt32BigEndian(e[16..], 1_700_000_000);
        BinaryPrimitives.WriteUInt64BigEndian(e[24..], 5_000_000_000);
        BinaryPrimitives.WriteUInt32BigEndian(e[32..], (uint)vmstate.Length);
        BinaryPrimitives.WriteUInt32BigEndian(e[36..], 24);
        BinaryPrimitives.WriteUInt64BigEndian(e[40..], (ulong)vmstate.Length);
        BinaryPrimitives.WriteUInt64BigEndian(e[48..], 1 << 20);
        BinaryPrimitives.WriteInt64BigEndian(e[56..], -1);
        Encoding.ASCII.GetBytes(id).CopyTo(e[64..]);
        Encoding.ASCII.GetBytes(name).CopyTo(e[(64 + id.Length)..]);

        // Snapshot L1 at cluster 2: vmstate starts at 512 MiB = L1 index 1 (64 KiB clusters, 8192-entry L2).
        BinaryPrimitives.WriteUInt64BigEndian(img.AsSpan((2 * Cluster) + 8), (3UL * Cluster) | (1UL << 63));

        // L2 at cluster 3; data clusters stored in reverse order to exercise the translation.
        for (int i = 0; i < dataClusters; i++)
        {
            int host = 5 + (dataClusters - 1 - i);
            BinaryPrimitives.WriteUInt64BigEndian(img.AsSpan((3 * Cluster) + (i * 8)), (ulong)host * Cluster);
            int n = Math.Min(Cluster, vmstate.Length - (i * Cluster));
            vmstate.AsSpan(i * Cluster, n).CopyTo(img.AsSpan(host * Cluster));
        }

        return img;
    }

    private static byte[] Stream()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20);
        for (int i = 0; i < 40; i++)
        {
            b.Page("pc.ram", (ulong)i * 4096, Enumerable.Repeat((byte)(i + 1), 4096).ToArray());
        }

        b.Cpu(0, new ulong[16], rip: 0x1234, cr3: 0x9000);
        return b.Build();
    }

    [Fact]
    public void ListsSnapshotsAndReadsVmStateThroughL1AndL2()
    {
        byte[] stream = Stream();
        Assert.True(stream.Length > Cluster);
        byte[] img = Image(stream);
        using Qcow2Image image = Qcow2Image.Open(new MemorySource(img), ownsSource: false);
        Qcow2Snapshot s = Assert.Single(image.Snapshots);
        Assert.Equal("snap1", s.Name);
        Assert.Equal("1", s.Id);
        Assert.Equal((ulong)stream.Length, s.VmStateSize);
        using IRandomAccessSource vm = image.OpenVmState(s);
        byte[] back = new byte[vm.Length];
        Assert.Equal(back.Length, vm.Read(0, back));
        Assert.Equal(stream, back);
    }

    [Fact]
    public void LoaderOpensSnapshotByNameAndById()
    {
        byte[] img = Image(Stream());
        foreach (string which in new[] { "snap1", "1" })
        {
            using MachineState m = SnapshotLoader.OpenSource(new MemorySource(img), "img", new SnapshotOpenOptions { Snapshot = which });
            Assert.Equal(0x1234UL, m.Cpus[0].Rip);
            byte[] page = new byte[4096];
            m.Memory.Read(39 * 4096, page);
            Assert.All(page, b => Assert.Equal(40, b));
            Assert.Contains("snap1", m.Origin.Description, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void UnknownSnapshotListsTheKnownOnes()
    {
        byte[] img = Image(Stream());
        var e = Assert.Throws<VmStateNotFoundException>(() => SnapshotLoader.OpenSource(new MemorySource(img), "img", new SnapshotOpenOptions { Snapshot = "nope" }));
        Assert.Equal(VmStateObjectKind.Snapshot, e.Kind);
        Assert.Equal("nope", e.Name);
        Assert.Contains("\"snap1\"", e.Message);
    }

    [Theory]
    [InlineData(4, "version")]
    [InlineData(20, "cluster_bits")]
    [InlineData(32, "encrypted")]
    public void CorruptHeaderFieldsAreNamed(int offset, string what)
    {
        byte[] img = Image(Stream());
        img[offset + 3] ^= 0x77;
        var e = Assert.Throws<VmStateFormatException>(() => Qcow2Image.Open(new MemorySource(img), ownsSource: false));
        Assert.Contains(what, e.Message);
    }

    [Fact]
    public void L2PointingOutsideTheFileIsAnError()
    {
        byte[] img = Image(Stream());
        BinaryPrimitives.WriteUInt64BigEndian(img.AsSpan((2 * Cluster) + 8), 0x7000_0000_0000UL);
        using Qcow2Image image = Qcow2Image.Open(new MemorySource(img), ownsSource: false);
        using IRandomAccessSource vm = image.OpenVmState(image.Snapshots[0]);
        var e = Assert.Throws<VmStateFormatException>(() => vm.Read(0, new byte[16]));
        Assert.Contains("past the end", e.Message);
    }

    [Fact]
    public void TruncatedSnapshotTableIsAnError()
    {
        byte[] img = Image(Stream())[..(Cluster + 30)];
        var e = Assert.Throws<VmStateFormatException>(() => Qcow2Image.Open(new MemorySource(img), ownsSource: false));
        Assert.Contains("snapshot table entry 0", e.Message);
    }

    [Fact]
    public void ANameTooLongForTheSnapshotTableIsRefusedBeforeTheImageChanges()
    {
        // Before: the 16-bit length was written truncated (70,000 & 0xffff) after the clusters were allocated.
        string dir = Directory.CreateTempSubdirectory("vmstate-qcow2-").FullName;
        try
        {
            string path = Path.Combine(dir, "i.qcow2");
            byte[] img = Image(Stream());
            File.WriteAllBytes(path, img);
            string name = new('n', 70_000);
            var e = Assert.Throws<ArgumentException>(() => Qcow2SnapshotWriter.AddSnapshot(path, "1", name, new MemorySource(Stream())));
            Assert.Contains($"at most {Qcow2SnapshotWriter.MaxNameBytes} bytes", e.Message);
            Assert.Contains("70000 bytes", e.Message);
            Assert.Equal(img, File.ReadAllBytes(path));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void NameLengthLimitCountsUtf8Bytes()
    {
        Qcow2SnapshotWriter.ValidateName(new string('a', 65_535));
        Assert.Throws<ArgumentException>(() => Qcow2SnapshotWriter.ValidateName(new string('a', 65_536)));

        // 21,846 three-byte characters are 65,538 bytes: too long, although only 21,846 chars.
        Assert.Throws<ArgumentException>(() => Qcow2SnapshotWriter.ValidateName(new string('\u20ac', 21_846)));
    }
}
