using VmState.Arch.X86;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Gdb;

/// <summary>
/// The snapshot the gdb fuzz target serves (fuzz/VmState.Fuzz/gdb-target.mig): small, so each execution parses it
/// quickly, with one vCPU in long mode (page tables, so virtual reads and writes walk them) and one in real mode.
/// Made here; <c>VMSTATE_WRITE_FUZZ_SEEDS=1</c> rewrites it.
/// </summary>
public sealed class GdbFuzzTargetSnapshotTests
{
    private const ulong KernelText = 0xffffffff81000000UL;

    private static byte[] Build()
    {
        var tables = new PageTableBuilder(PagingMode.Level4, memorySize: 2 << 20);
        tables.Map(KernelText, 0x5000, 0x1000);
        tables.Map(0xffff888000000000UL, 0, 2 << 20);
        var b = new StreamBuilder().Block("pc.ram", 2 << 20).Page("pc.ram", 0x5000, [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 7))]);
        byte[] page = new byte[4096];
        for (ulong pa = 0x100000; pa < 0x110000; pa += 0x1000)
        {
            tables.Read(pa, page);
            if (page.AsSpan().ContainsAnyExcept((byte)0))
            {
                b.Page("pc.ram", pa, (byte[])page.Clone());
            }
        }

        b.Cpu(0, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x100 + i))], rip: KernelText + 0x10, cr3: tables.Root, efer: 0xd01);
        b.Cpu(1, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x200 + i))], rip: 0x7c00, cr3: 0, cr0: 0x11, efer: 0);
        return b.Build();
    }

    private static string TargetPath()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "VmState.slnx")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        Assert.NotNull(dir);
        return Path.Combine(dir, "fuzz", "VmState.Fuzz", "gdb-target.mig");
    }

    [Fact]
    public void TheCommittedSnapshotHasTwoVcpusAndMappedKernelText()
    {
        byte[] built = Build();
        string path = TargetPath();
        if (Environment.GetEnvironmentVariable("VMSTATE_WRITE_FUZZ_SEEDS") == "1")
        {
            File.WriteAllBytes(path, built);
        }

        Assert.Equal(built, File.ReadAllBytes(path));
        using MachineState m = MigrationMachineReader.Read(new MemorySource(built), "gdb-target.mig");
        Assert.Equal(2, m.Cpus.Count);
        byte[] text = new byte[4];
        Assert.Equal(4, AddressSpace.Of(m.Memory, m.Cpus[0]).Read(KernelText + 1, text));
        Assert.Equal(new byte[] { 7, 14, 21, 28 }, text);
    }
}
