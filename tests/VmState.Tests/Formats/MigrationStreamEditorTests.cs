using VmState.Editing;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

public sealed class MigrationStreamEditorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-edit-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Page(byte b) => Enumerable.Repeat(b, 4096).ToArray();

    private (string Path, StreamBuilder Builder) Original()
    {
        var b = new StreamBuilder()
            .Block("pc.ram", 1 << 20)
            .Block("other", 0x4000)
            .Page("pc.ram", 0x0000, Page(1))
            .Fill("pc.ram", 0x1000, 0)      // zero page, first of its block run: carries the block name
            .Fill("pc.ram", 0x2000, 0x7)    // zero page with CONTINUE
            .Page("other", 0x1000, Page(9));
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        b.AddDevice(new StreamBuilder.Device("dev", 0, "dev", 1) { Fields = { StreamBuilder.Field.Int("reg", "uint32", 4, 5), StreamBuilder.Field.Int("s", "int8", 1, 0) } });
        string path = Path.Combine(_dir, "orig.mig");
        File.WriteAllBytes(path, b.Build());
        return (path, b);
    }

    private static byte[] ReadPa(MachineState m, ulong a, int n)
    {
        byte[] b = new byte[n];
        m.Memory.ReadExactly(a, b);
        return b;
    }

    [Fact]
    public void WritesToDataZeroAndUnsentPagesAllReadBack()
    {
        (string path, _) = Original();
        string outPath = Path.Combine(_dir, "new.mig");
        using (MachineState m = SnapshotLoader.Open(path))
        {
            var e = new SnapshotEditor(m);
            e.WritePhysical(0x10, [0xAA, 0xBB]);           // data page
            e.WritePhysical(0x1FFE, [1, 2, 3, 4]);          // spans the zero page (with name) into the CONTINUE zero page
            e.WritePhysical(0x50000, [0xCC]);               // never sent
            e.Stream.WriteBlock(((MigrationStreamOrigin)m.Origin).Stream.RamBlocks[1], 0x3000, [0xDD]); // never sent, other block
            e.Save(outPath);
        }

        using MachineState after = SnapshotLoader.Open(outPath);
        using MachineState before = SnapshotLoader.Open(path);
        Assert.Equal([1, 0xAA, 0xBB, 1], ReadPa(after, 0xF, 4));
        Assert.Equal([0, 1, 2, 3], ReadPa(after, 0x1FFD, 4));
        Assert.Equal([4, 7, 7], ReadPa(after, 0x2001, 3));
        Assert.Equal([0, 0xCC, 0], ReadPa(after, 0x4FFFF, 3));
        MigrationStream afterStream = ((MigrationStreamOrigin)after.Origin).Stream;
        var other = new MigrationRamMemory(afterStream.Source, afterStream.RamBlocks, after.RamBlocks, 4096);
        byte[] o = new byte[2];
        other.ReadBlock(afterStream.RamBlocks[1], 0x2FFF, o);
        Assert.Equal([0, 0xDD], o);
        other.ReadBlock(afterStream.RamBlocks[1], 0x1000, o);
        Assert.Equal([9, 9], o);

        // Everything not edited reads the same.
        foreach (ulong a in new ulong[] { 0x100, 0x3000, 0x40000, 0xF0000 })
        {
            Assert.Equal(ReadPa(before, a, 64), ReadPa(after, a, 64));
        }

        Assert.Equal(before.Cpus[0].Rip, after.Cpus[0].Rip);
    }

    [Fact]
    public void FieldEditsAreRangeCheckedAndApplied()
    {
        (string path, _) = Original();
        string outPath = Path.Combine(_dir, "f.mig");
        using (MachineState m = SnapshotLoader.Open(path))
        {
            var e = new SnapshotEditor(m);
            Assert.Equal("reg", Assert.Throws<InvalidEditException>(() => e.SetDeviceField("dev", "reg", "0x100000000")).Target);
            Assert.Equal("s", Assert.Throws<InvalidEditException>(() => e.SetDeviceField("dev", "s", "200")).Target);
            Assert.Equal("nope", Assert.Throws<InvalidEditException>(() => e.SetDeviceField("dev", "nope", "1")).Target);
            e.SetDeviceField("dev", "reg", "0xfffffffe");
            e.SetDeviceField("dev", "s", "-3");
            e.SetRegister(0, "rip", 0xffffffff81000000);
            e.Save(outPath);
        }

        using MachineState after = SnapshotLoader.Open(outPath);
        VmsdState dev = after.FindDevice("dev")!.State!;
        Assert.Equal(0xfffffffeUL, dev.Field("reg")!.Integer);
        Assert.Equal(-3, dev.Field("s")!.SignedInteger);
        Assert.Equal(0xffffffff81000000UL, after.Cpus[0].Rip);
        Assert.Equal(new FileInfo(path).Length, new FileInfo(outPath).Length);
    }

    [Fact]
    public void UnchangedSaveIsByteIdenticalAndTheInputIsUntouched()
    {
        (string path, _) = Original();
        byte[] original = File.ReadAllBytes(path);
        string outPath = Path.Combine(_dir, "same.mig");
        using (MachineState m = SnapshotLoader.Open(path))
        {
            new SnapshotEditor(m).Save(outPath);
        }

        Assert.Equal(original, File.ReadAllBytes(outPath));
        Assert.Equal(original, File.ReadAllBytes(path));
    }

    [Fact]
    public void ElfInputsCannotBeEdited()
    {
        var machine = new MachineState(new ElfCoreOrigin("x.elf", "ELF64 core", [], null), null, new ElfCoreTestsMemory(), [], [], [], [], null);
        Assert.Throws<ArgumentException>(() => new SnapshotEditor(machine));
    }

    private sealed class ElfCoreTestsMemory : IPhysicalMemory
    {
        public string Name => "m";

        public IReadOnlyList<MemoryRange> Ranges => [];

        public int Read(ulong address, Span<byte> destination) => 0;
    }
}
