using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

public class MigrationStreamReaderTests
{
    private static byte[] PageOf(byte b)
    {
        byte[] p = new byte[4096];
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = (byte)(b + i);
        }

        return p;
    }

    private static StreamBuilder Sample()
    {
        var b = new StreamBuilder()
            .Block("pc.ram", 1 << 20)
            .Block("pc.bios", 0x40000)
            .Page("pc.ram", 0x1000, PageOf(1))
            .Page("pc.ram", 0x2000, PageOf(2))
            .Fill("pc.ram", 0x3000, 0)
            .Fill("pc.ram", 0x4000, 0xAB)
            .Page("pc.bios", 0x3F000, PageOf(9))
            .Page("pc.ram", 0x1000, PageOf(7)); // a re-sent page replaces the first copy
        var serial = new StreamBuilder.Device("serial", 0, "serial", 3)
        {
            Fields =
            {
                StreamBuilder.Field.Int("divider", "uint16", 2, 0x000c),
                StreamBuilder.Field.Int("lcr", "uint8", 1, 0x13),
                StreamBuilder.Field.Bytes("scratch", [1, 2, 3]),
            },
            Subsections = { new StreamBuilder.Device("serial/tsr", 0, "serial/tsr", 1) { Fields = { StreamBuilder.Field.Int("tsr_retry", "uint32", 4, 5) } } },
        };
        b.AddDevice(serial);
        b.Cpu(0, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x1000 + i))], rip: 0xffffffff81000000, cr3: 0x1234000);
        b.Cpu(1, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x2000 + i))], rip: 0xffffffff81000010, cr3: 0x5678000);
        return b;
    }

    [Fact]
    public void ParsesConfigurationRamDevicesAndCpus()
    {
        byte[] data = Sample().Build();
        using MachineState m = MigrationMachineReader.Read(new MemorySource(data), "t");
        Assert.Equal("pc-i440fx-7.2", m.MachineType);
        Assert.Equal(["pc.ram", "pc.bios"], m.RamBlocks.Select(b => b.Name));
        Assert.Equal(2, m.Cpus.Count);
        Assert.Equal(0xffffffff81000010UL, m.Cpus[1].Rip);
        Assert.Equal(0x5678000UL, m.Cpus[1].Cr3);
        Assert.Equal(0x2004UL, m.Cpus[1].Regs[4]);
        Assert.Equal(0x28u, m.Cpus[0].Segments[3].Selector);
        Assert.Equal(0xfffffe0000001000UL, m.Cpus[0].Gdt.Base);

        DeviceState serial = m.FindDevice("serial")!;
        Assert.Equal(0x0cUL, serial.State!.Field("divider")!.Integer);
        Assert.Equal(new byte[] { 1, 2, 3 }, serial.State.Field("scratch")!.Bytes);
        Assert.Equal(5UL, serial.State.Subsection("serial/tsr")!.Field("tsr_retry")!.Integer);
    }

    [Fact]
    public void RamReadsGiveLatestPageFillAndZeroes()
    {
        using MachineState m = MigrationMachineReader.Read(new MemorySource(Sample().Build()), "t");
        byte[] buf = new byte[4 * 4096];
        m.Memory.ReadExactly(0x1000, buf);
        Assert.Equal(PageOf(7), buf[..4096]);
        Assert.Equal(PageOf(2), buf[4096..8192]);
        Assert.All(buf[8192..12288], b => Assert.Equal(0, b));
        Assert.All(buf[12288..], b => Assert.Equal(0xAB, b));

        // pc.bios sits just below 4 GiB.
        byte[] bios = new byte[4096];
        m.Memory.ReadExactly(0xFFFFF000, bios);
        Assert.Equal(PageOf(9), bios);

        // The VGA window 0xA0000-0xBFFFF is not RAM.
        Assert.Equal(0, m.Memory.Read(0xA0000, new byte[16]));
        RamBlockInfo ram = m.RamBlocks[0];
        Assert.Equal(2, ram.DataPages);
        Assert.Equal(2, ram.ZeroPages);
    }

    [Fact]
    public void ReadSpanningManyPagesMatchesPageByPageReads()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20);
        for (int i = 0; i < 150; i++)
        {
            if (i % 17 == 5)
            {
                b.Fill("pc.ram", (ulong)i * 4096, (byte)i);
            }
            else
            {
                b.Page("pc.ram", (ulong)i * 4096, PageOf((byte)i));
            }
        }

        using MachineState m = MigrationMachineReader.Read(new MemorySource(b.Build()), "t");
        byte[] bulk = new byte[150 * 4096];
        m.Memory.ReadExactly(0, bulk);
        for (int i = 0; i < 150; i++)
        {
            byte[] one = new byte[4096];
            m.Memory.ReadExactly((ulong)i * 4096, one);
            Assert.Equal(one, bulk[(i * 4096)..((i + 1) * 4096)]);
            byte[] expected = i % 17 == 5 ? Enumerable.Repeat((byte)i, 4096).ToArray() : PageOf((byte)i);
            Assert.Equal(expected, one);
        }
    }

    [Fact]
    public void BadMagicNamesOffsetZero()
    {
        byte[] data = Sample().Build();
        data[0] = (byte)'X';
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Equal(0, e.Offset);
        Assert.Contains("QEVM", e.Message);
    }

    [Fact]
    public void ObsoleteVersionIsNamed()
    {
        byte[] data = Sample().Build();
        data[7] = 2;
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Contains("version 2", e.Message);
    }

    [Fact]
    public void UnknownSectionTypeGivesItsOffset()
    {
        StreamBuilder b = Sample();
        byte[] data = b.Build();
        long at = b.Marks["device:serial#0"];
        data[at] = 0x44;
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Equal(at, e.Offset);
        Assert.Contains("unknown section type 0x44", e.Message);
    }

    [Fact]
    public void FooterMismatchIsReported()
    {
        StreamBuilder b = Sample();
        byte[] data = b.Build();
        long eof = b.Marks["eof"];
        data[eof - 1] ^= 0x40; // the last footer's section id
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Contains("footer", e.Message);
        Assert.Equal(eof - 5, e.Offset);
    }

    [Theory]
    [InlineData(0x40UL, "XBZRLE")]
    [InlineData(0x100UL, "compress")]
    [InlineData(0x80UL, "RDMA")]
    public void UnsupportedPageEncodingsAreNamed(ulong flag, string name)
    {
        StreamBuilder b = Sample();
        byte[] data = b.Build();
        long part = b.Marks["ram-part"] + 5; // first record of the PART chunk
        data[part + 6] = (byte)(flag >> 8);
        data[part + 7] = (byte)flag;
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Contains(name, e.Message);
        Assert.Equal(part, e.Offset);
    }

    [Fact]
    public void AbsurdRamSizeIsRejectedBeforeAllocating()
    {
        StreamBuilder b = new StreamBuilder().Block("pc.ram", 1UL << 50);
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(b.Build())));
        Assert.Contains("exceeds the limit", e.Message);
    }

    [Fact]
    public void PageOutsideItsBlockIsRejected()
    {
        StreamBuilder b = new StreamBuilder().Block("pc.ram", 0x2000).Page("pc.ram", 0x5000, PageOf(1));
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(b.Build())));
        Assert.Contains("past the end of block", e.Message);
    }

    [Fact]
    public void BrokenJsonIsReportedWithItsOffset()
    {
        StreamBuilder b = Sample();
        byte[] data = b.Build();
        long json = b.Marks["vmdesc"] + 5;
        int colon = Array.IndexOf(data, (byte)':', (int)json);
        data[colon] = (byte)'#';
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Contains("invalid JSON", e.Message);
        Assert.True(e.Offset >= json);
    }

    [Fact]
    public void StreamWithoutDescriptionSaysWhyDevicesCannotBeRead()
    {
        StreamBuilder b = Sample();
        b.WriteVmDescription = false;
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(b.Build())));
        Assert.Contains("no VM description", e.Message);
    }

    [Fact]
    public void DescriptionSizeMismatchIsDetected()
    {
        StreamBuilder b = Sample();
        byte[] data = b.Build();
        // Drop the subsection marker of serial/tsr: the description still lists the subsection.
        long serial = b.Marks["device:serial#0"];
        int header = 1 + 4 + 1 + 6 + 4 + 4;
        long marker = serial + header + 2 + 1 + 3;
        Assert.Equal(0x05, data[marker]);
        data[marker] = 0x06;
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Equal(marker, e.Offset);
        Assert.Contains("subsection marker", e.Message);
    }

    [Fact]
    public void TruncationAtAnyOffsetGivesAFormatErrorNeverACrash()
    {
        byte[] data = Sample().Build();
        for (int cut = 0; cut < data.Length; cut += Math.Max(1, cut < 200 ? 1 : 97))
        {
            byte[] part = data[..cut];
            try
            {
                using MachineState m = SnapshotLoader.OpenSource(new MemorySource(part), "t", new SnapshotOpenOptions());
                Assert.Fail($"a stream cut at {cut} of {data.Length} bytes was accepted");
            }
            catch (VmStateFormatException e)
            {
                Assert.InRange(e.Offset, 0, data.Length);
            }
        }
    }

    [Fact]
    public void ACorruptByteReadAsEofIsAnErrorNotAnEmptyMachine()
    {
        // Before: the reader stopped at the false EOF and returned 0 vCPUs with a warning.
        StreamBuilder b = Sample();
        byte[] data = b.Build();
        long cpu0 = b.Marks["device:cpu#0"];
        Assert.Equal(0x04, data[cpu0]);
        data[cpu0] = 0x00;
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data)));
        Assert.Equal(cpu0, e.Offset);
        Assert.Contains("EOF section", e.Message);
        Assert.Contains($"the VM description starts at {b.Marks["vmdesc"]}", e.Message);
    }

    [Fact]
    public void SectionsTheDescriptionListsButTheStreamLacksAreNamed()
    {
        // Drop the two cpu sections from the stream but keep the description that lists them: the EOF byte is
        // then exactly where the description begins, so only the description's list can tell.
        StreamBuilder b = Sample();
        byte[] data = b.Build();
        long cpu0 = b.Marks["device:cpu#0"];
        long eof = b.Marks["eof"];
        byte[] cut = [.. data[..(int)cpu0], .. data[(int)eof..]];
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(cut)));
        Assert.Equal(cpu0, e.Offset);
        Assert.Contains("2 device section(s) that never appeared", e.Message);
        Assert.Contains("\"cpu\" instance 0", e.Message);
        Assert.Contains("\"cpu\" instance 1", e.Message);
    }

    [Fact]
    public void BytesAfterEofThatAreNotADescriptionAreAnError()
    {
        var b = new StreamBuilder { WriteVmDescription = false }.Block("pc.ram", 1 << 20).Page("pc.ram", 0, PageOf(3));
        byte[] data = b.Build();
        using (MigrationStream ok = MigrationStreamReader.Read(new MemorySource(data)))
        {
            // A RAM-only stream without a description stays readable (with its warning).
            Assert.Null(ok.Description);
            Assert.Contains(ok.Warnings, w => w.Contains("no VM description", StringComparison.Ordinal));
        }

        byte[] junk = [.. data, 0x06, 0, 0, 0, 9, (byte)'{'];
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(junk)));
        Assert.Equal(b.Marks["eof"], e.Offset);
        Assert.Contains("6 bytes follow the EOF byte but they are not a VM description", e.Message);
    }

    [Fact]
    public void RepeatedIdStrAndInstanceUseTheirOwnDescriptionsInOrder()
    {
        // QEMU 7.2 writes two "slirp" sections with instance 0 for two user-mode netdevs.
        var b = new StreamBuilder();
        b.AddDevice(new StreamBuilder.Device("slirp", 0, "slirp", 4) { Fields = { StreamBuilder.Field.Bytes("a", [1, 2]) } });
        b.AddDevice(new StreamBuilder.Device("slirp", 0, "slirp", 4) { Fields = { StreamBuilder.Field.Bytes("a", [3, 4, 5]) } });
        using MigrationStream s = MigrationStreamReader.Read(new MemorySource(b.Build()));
        Assert.Equal(new byte[] { 1, 2 }, s.Devices[0].State!.Field("a")!.Bytes);
        Assert.Equal(new byte[] { 3, 4, 5 }, s.Devices[1].State!.Field("a")!.Bytes);
    }

    [Fact]
    public void ConfigurationCapabilitiesAreRead()
    {
        StreamBuilder b = Sample();
        b.Capabilities.Add("validate-uuid-like");
        using MigrationStream s = MigrationStreamReader.Read(new MemorySource(b.Build()));
        Assert.Equal(["validate-uuid-like"], s.Capabilities);
    }

    [Theory]
    [InlineData("pc", 512UL << 20, 512UL << 20)]
    [InlineData("pc", 3584UL << 20, 3UL << 30)]
    [InlineData("pc", 3583UL << 20, 3583UL << 20)]
    [InlineData("q35", 2816UL << 20, 2UL << 30)]
    [InlineData("q35", 2815UL << 20, 2815UL << 20)]
    public void BelowFourGiBFollowsQemuRules(string family, ulong ram, ulong expected) =>
        Assert.Equal(expected, X86MachineLayout.BelowFourGiB(family, ram));

    [Fact]
    public void RamAboveFourGiBIsMappedThere()
    {
        var b = new StreamBuilder("pc-q35-7.2").Block("pc.ram", 3UL << 30).Page("pc.ram", (2UL << 30) + 0x1000, PageOf(3));
        using MachineState m = MigrationMachineReader.Read(new MemorySource(b.Build()), "t");
        byte[] page = new byte[4096];
        m.Memory.ReadExactly((4UL << 30) + 0x1000, page);
        Assert.Equal(PageOf(3), page);
        Assert.Equal(0, m.Memory.Read(0x80000000, new byte[1]));
    }
}
