using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

/// <summary>
/// Main RAM made of memory backends (QEMU 7.2 <c>-machine memory-backend=</c>, <c>-numa node,memdev=</c>): which
/// blocks, in which order, split where; and the errors when the stream does not tell.
/// </summary>
public sealed class X86MainRamTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong GiB = 1UL << 30;

    private static byte[] PageOf(byte b) => Enumerable.Repeat(b, 4096).ToArray();

    /// <summary>The RTC section with the memory bytes pc_cmos_init writes (QEMU 7.2 hw/i386/pc.c).</summary>
    private static StreamBuilder.Device Rtc(ulong below, ulong above)
    {
        byte[] cmos = new byte[128];
        ulong over1M = Math.Min((below - MiB) / 1024, 65535);
        ulong over16M = below > 16 * MiB ? Math.Min((below - (16 * MiB)) / (64 * 1024), 65535) : 0;
        ulong high = above / (64 * 1024);
        cmos[0x30] = (byte)over1M;
        cmos[0x31] = (byte)(over1M >> 8);
        cmos[0x34] = (byte)over16M;
        cmos[0x35] = (byte)(over16M >> 8);
        cmos[0x5b] = (byte)high;
        cmos[0x5c] = (byte)(high >> 8);
        cmos[0x5d] = (byte)(high >> 16);
        return new StreamBuilder.Device("mc146818rtc", 0, "mc146818rtc", 3) { Fields = { StreamBuilder.Field.Bytes("cmos_data", cmos) } };
    }

    private static MachineState Open(StreamBuilder b, IReadOnlyList<string>? mainRam = null) =>
        MigrationMachineReader.Read(new MemorySource(b.Build()), "t", mainRam: mainRam);

    private static IReadOnlyList<BlockMapping> MappingsOf(MachineState m, string block) => m.RamBlocks.Single(b => b.Name == block).Mappings;

    [Fact]
    public void MachineMemoryBackendIsMainRamOnQ35()
    {
        // -machine q35,memory-backend=m0 with 3 GiB: 2 GiB below 4 GiB, 1 GiB above.
        var b = new StreamBuilder("pc-q35-7.2").Block("m0", 3 * GiB).Block("0000:00:01.0/vga.vram", 16 * MiB).Block("pc.bios", 256 * 1024)
            .Page("m0", (2 * GiB) + 0x1000, PageOf(7));
        b.AddDevice(Rtc(2 * GiB, GiB));
        using MachineState m = Open(b);
        Assert.Equal([new BlockMapping(0, 0, 0xA0000), new BlockMapping(0xC0000, 0xC0000, (2 * GiB) - 0xC0000), new BlockMapping(4 * GiB, 2 * GiB, GiB)], MappingsOf(m, "m0"));
        byte[] page = new byte[4096];
        m.Memory.ReadExactly((4 * GiB) + 0x1000, page);
        Assert.Equal(PageOf(7), page);
        Assert.DoesNotContain(m.Warnings, w => w.Contains("CMOS", StringComparison.Ordinal) || w.Contains("RAM block", StringComparison.Ordinal));
    }

    [Fact]
    public void NumaNodesAreConcatenatedInNodeOrderWhateverTheStreamOrder()
    {
        // QEMU lists blocks biggest first; node 0 (ram-node0, 256 MiB) comes first in guest-physical memory.
        var b = new StreamBuilder().Block("ram-node1", 768 * MiB).Block("ram-node0", 256 * MiB).Block("pc.bios", 256 * 1024)
            .Page("ram-node1", 0, PageOf(1)).Page("ram-node0", 0x1000, PageOf(2));
        b.AddDevice(Rtc(GiB, 0));
        using MachineState m = Open(b);
        Assert.Equal([new BlockMapping(0, 0, 0xA0000), new BlockMapping(0xC0000, 0xC0000, (256 * MiB) - 0xC0000)], MappingsOf(m, "ram-node0"));
        Assert.Equal([new BlockMapping(256 * MiB, 0, 768 * MiB)], MappingsOf(m, "ram-node1"));
        byte[] page = new byte[4096];
        m.Memory.ReadExactly(256 * MiB, page);
        Assert.Equal(PageOf(1), page);
        m.Memory.ReadExactly(0x1000, page);
        Assert.Equal(PageOf(2), page);
    }

    [Fact]
    public void NodeStraddlingThePciHoleIsSplitAtTheCmosBoundary()
    {
        // pc with max-ram-below-4g=1G and two 1 GiB nodes: node 1 lies wholly above 4 GiB. The default rule would say
        // all 2 GiB are below 4 GiB; CMOS says 1 GiB.
        var b = new StreamBuilder().Block("ram-node0", GiB).Block("ram-node1", GiB);
        b.AddDevice(Rtc(GiB, GiB));
        using MachineState m = Open(b);
        Assert.Equal([new BlockMapping(4 * GiB, 0, GiB)], MappingsOf(m, "ram-node1"));
        Assert.Equal(GiB - 0xC0000, MappingsOf(m, "ram-node0")[1].Length);
    }

    [Fact]
    public void MemoryDeviceBackendIsLeftOutByTheCmosSize()
    {
        // -m 512 with memory-backend=m0 and a 128 MiB pc-dimm on backend dimm0: only m0 adds up to 512 MiB.
        var b = new StreamBuilder().Block("m0", 512 * MiB).Block("dimm0", 128 * MiB);
        b.AddDevice(Rtc(512 * MiB, 0));
        using MachineState m = Open(b);
        Assert.Equal(2, MappingsOf(m, "m0").Count);
        Assert.Empty(MappingsOf(m, "dimm0"));
        Assert.Contains(m.Warnings, w => w.Contains("\"dimm0\"", StringComparison.Ordinal));
    }

    [Fact]
    public void IgnoreSharedOffsetsGiveTheNodeOrder()
    {
        // Under x-ignore-shared the stream gives each node's offset in the RAM container (mr->addr).
        var b = new StreamBuilder().Block("fast", 256 * MiB, address: 256 * MiB).Block("slow", 256 * MiB, address: 0);
        b.Capabilities.Add("x-ignore-shared");
        b.AddDevice(Rtc(512 * MiB, 0));
        using MachineState m = Open(b);
        Assert.Equal([new BlockMapping(256 * MiB, 0, 256 * MiB)], MappingsOf(m, "fast"));
        Assert.Equal(0UL, MappingsOf(m, "slow")[0].GuestPhysicalAddress);
    }

    [Fact]
    public void UnnumberedNodesAreAnErrorNamingTheOption()
    {
        var b = new StreamBuilder().Block("x", 256 * MiB).Block("y", 256 * MiB);
        b.AddDevice(Rtc(512 * MiB, 0));
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => Open(b));
        Assert.Contains("--main-ram", e.Message, StringComparison.Ordinal);
        Assert.Contains("\"x\"", e.Message, StringComparison.Ordinal);
        // The first entry of the block list: after the section header (type, id, "ram", instance, version) and the total.
        Assert.Equal(b.Marks["ram-start"] + 1 + 4 + 1 + 3 + 4 + 4 + 8, e.Offset);
    }

    [Fact]
    public void RequestedOrderSettlesIt()
    {
        var b = new StreamBuilder().Block("x", 256 * MiB).Block("y", 256 * MiB).Page("x", 0, PageOf(3));
        b.AddDevice(Rtc(512 * MiB, 0));
        using MachineState m = Open(b, ["y", "x"]);
        Assert.Equal([new BlockMapping(256 * MiB, 0, 256 * MiB)], MappingsOf(m, "x"));
        byte[] page = new byte[4096];
        m.Memory.ReadExactly(256 * MiB, page);
        Assert.Equal(PageOf(3), page);
    }

    [Fact]
    public void RequestedBlockThatIsNotThereIsNotFound()
    {
        var b = new StreamBuilder().Block("m0", 256 * MiB);
        VmStateNotFoundException e = Assert.Throws<VmStateNotFoundException>(() => Open(b, ["m1"]));
        Assert.Equal(VmStateObjectKind.RamBlock, e.Kind);
        Assert.Equal("m1", e.Name);
    }

    [Fact]
    public void SeveralSetsAddingUpToTheRamSizeAreAnError()
    {
        // memory-backend=a (512 MiB) and a 512 MiB pc-dimm on b: either could be main RAM.
        var b = new StreamBuilder().Block("a", 512 * MiB).Block("b", 512 * MiB);
        b.AddDevice(Rtc(512 * MiB, 0));
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => Open(b));
        Assert.Contains("2 different sets", e.Message, StringComparison.Ordinal);
        Assert.Contains("--main-ram", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NoBlockAddingUpToTheRamSizeIsAnError()
    {
        var b = new StreamBuilder().Block("m0", 256 * MiB);
        b.AddDevice(Rtc(512 * MiB, 0));
        Assert.Throws<VmStateFormatException>(() => Open(b));
    }

    [Fact]
    public void OnlyDeviceBlocksIsAnError()
    {
        var b = new StreamBuilder().Block("0000:00:02.0/vga.vram", 16 * MiB).Block("pc.bios", 256 * 1024).Block("/rom@etc/acpi/tables", 128 * 1024);
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => Open(b));
        Assert.Contains("no RAM block can be the machine's main RAM", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SeveralBackendsWithoutCmosAreAnError()
    {
        var b = new StreamBuilder().Block("ram-node0", 256 * MiB).Block("ram-node1", 256 * MiB);
        Assert.Throws<VmStateFormatException>(() => Open(b));
        using MachineState m = Open(b, ["ram-node0", "ram-node1"]);
        Assert.Equal(256 * MiB, MappingsOf(m, "ram-node1")[0].GuestPhysicalAddress);
    }

    [Fact]
    public void LegacyCanonicalPathBackendIsMainRam()
    {
        // memory-backend-file on machine types up to 4.0: the block is named by the object's canonical path.
        var b = new StreamBuilder("pc-i440fx-4.0").Block("/objects/mem", 512 * MiB).Block("/rom@etc/acpi/tables", 128 * 1024);
        b.AddDevice(Rtc(512 * MiB, 0));
        using MachineState m = Open(b);
        Assert.Equal(2, MappingsOf(m, "/objects/mem").Count);
        Assert.Empty(MappingsOf(m, "/rom@etc/acpi/tables"));
    }

    [Fact]
    public void PcRamStillWinsAndCmosMismatchOnlyWarns()
    {
        var b = new StreamBuilder().Block("pc.ram", 512 * MiB).Block("other", 0x4000);
        b.AddDevice(Rtc(256 * MiB, 0));
        using MachineState m = Open(b);
        Assert.Equal(512 * MiB - 0xC0000, MappingsOf(m, "pc.ram")[1].Length);
        Assert.Contains(m.Warnings, w => w.Contains("CMOS", StringComparison.Ordinal));
    }

    [Fact]
    public void EveryCommandFailsThroughTheLoader()
    {
        // SnapshotLoader is what info, extract and ps open inputs with: the error reaches them, no empty machine.
        var b = new StreamBuilder().Block("x", 256 * MiB).Block("y", 256 * MiB);
        b.AddDevice(Rtc(512 * MiB, 0));
        string path = Path.Combine(Path.GetTempPath(), $"vmstate-mainram-{Guid.NewGuid():N}.mig");
        File.WriteAllBytes(path, b.Build());
        try
        {
            Assert.Throws<VmStateFormatException>(() => SnapshotLoader.Open(path));
            using MachineState m = SnapshotLoader.Open(path, new SnapshotOpenOptions { MainRam = ["x", "y"] });
            Assert.Equal(3, m.Memory.Ranges.Count(r => r.Name is "x" or "y"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("pc.ram", true)]
    [InlineData("ram-node0", true)]
    [InlineData("/objects/ram-node1", true)]
    [InlineData("/objects/a/b", false)]
    [InlineData("0000:00:02.0/vga.vram", false)]
    [InlineData("/rom@etc/acpi/tables", false)]
    [InlineData("pc.bios", false)]
    [InlineData("pc.rom", false)]
    [InlineData("system.flash0", false)]
    [InlineData("synic-0-msg-page", false)]
    public void BackendBlocksAreTheOnesWithoutADeviceOwner(string name, bool backend) =>
        Assert.Equal(backend, X86MainRam.IsBackendBlock(name));

    [Fact]
    public void CmosBelowSixteenMiBIsReadFromTheExtendedMemoryBytes()
    {
        var b = new StreamBuilder();
        b.AddDevice(Rtc(12 * MiB, 0));
        using MigrationStream s = MigrationStreamReader.Read(new MemorySource(b.Build()));
        Assert.Equal((12 * MiB, 0UL), X86MainRam.ReadCmosMemory(s.Devices));
    }
}
