using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Gdb;
using VmState.IO;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Gdb;

/// <summary>
/// <see cref="GdbTarget"/> and <see cref="GdbCommandDispatcher"/> without a connection: what a session reads and
/// changes, register blocks written all or nothing, and read-only inputs.
/// </summary>
public sealed class GdbTargetTests
{
    private static MachineState Stream()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20).Page("pc.ram", 0x5000, Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray());
        b.Cpu(0, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x100 + i))], rip: 0xffffffff81000000, cr3: 0, cr0: 0x11, efer: 0);
        b.Cpu(1, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x200 + i))], rip: 0xffffffff81000010, cr3: 0, cr0: 0x11, efer: 0);
        return MigrationMachineReader.Read(new MemorySource(b.Build()), "synthetic");
    }

    private static int IndexOf(string gdbName) => X86TargetDescription.Registers.ToList().FindIndex(r => r.Name == gdbName);

    private static byte[] Block(GdbTarget target) => [.. Enumerable.Range(0, X86TargetDescription.Registers.Count).SelectMany(target.ReadRegister)];

    [Fact]
    public void ARegisterBlockWithOneUnwritableChangeWritesNothing()
    {
        using MachineState m = Stream();
        var target = new GdbTarget(m, TextWriter.Null, null);
        byte[] before = Block(target);
        byte[] block = [.. before];
        block[0] = 0xef;                                                    // rax: writable
        int st0 = X86TargetDescription.Registers.Take(IndexOf("st0")).Sum(r => r.Bits / 8);
        block[st0] = 1;                                                     // st0: not kept by the model

        ArgumentException e = Assert.Throws<ArgumentException>(() => target.WriteRegisters(block));

        Assert.Equal("writing st0 is not supported", e.Message);
        Assert.Equal(before, Block(target));
        Assert.Empty(target.Edits);

        block[st0] = before[st0];
        target.WriteRegisters(block);
        Assert.Equal(block, Block(target));
        Assert.Single(target.Edits);
    }

    [Fact]
    public void TheSelectedThreadDecidesWhichVcpuIsReadAndTheStopReplyNamesIt()
    {
        using MachineState m = Stream();
        var target = new GdbTarget(m, TextWriter.Null, null);
        var dispatcher = new GdbCommandDispatcher(target, TextWriter.Null);

        Assert.Equal("0001000000000000", dispatcher.Handle("p0", CancellationToken.None).Reply);
        Assert.Equal("OK", dispatcher.Handle("Hg2", CancellationToken.None).Reply);
        Assert.Equal(1, target.Thread);
        Assert.Equal("0002000000000000", dispatcher.Handle("p0", CancellationToken.None).Reply);
        Assert.Equal("T05thread:2;", dispatcher.Handle("?", CancellationToken.None).Reply);
        Assert.Equal("QC2", dispatcher.Handle("qC", CancellationToken.None).Reply);

        Assert.False(dispatcher.KillRequested);
        Assert.Equal(new GdbAnswer(string.Empty, End: true), dispatcher.Handle("k", CancellationToken.None));
        Assert.True(dispatcher.KillRequested);
    }

    [Fact]
    public void AnInputThatCannotBeWrittenRefusesWritesAndSaves()
    {
        var memory = new PageTableBuilder(PagingMode.Level4, memorySize: 1 << 20);
        memory.WritePhysical(0x3000, "abcd"u8);
        var cpu = new X86CpuState { Cr0 = 0x80050033, Cr4 = 0x6b0, Efer = 0xd01, Cr3 = memory.Root };
        using var m = new MachineState(new ElfCoreOrigin("core.elf", "ELF core", [], null), null, memory, [cpu], [], [], [], null);
        var target = new GdbTarget(m, TextWriter.Null, null) { PhysicalMode = true };

        byte[] read = new byte[4];
        Assert.Equal(4, target.ReadMemory(0x3000, read));
        Assert.Equal("abcd"u8.ToArray(), read);
        Assert.Equal("ELF core inputs are read-only", Assert.Throws<InvalidOperationException>(() => target.WriteMemory(0x3000, [1])).Message);
        Assert.Equal("ELF core inputs are read-only", Assert.Throws<InvalidOperationException>(() => target.WriteRegister(0, new byte[8])).Message);
        (string output, bool ok) = target.Save("x", CancellationToken.None);
        Assert.False(ok);
        Assert.StartsWith("cannot save: core.elf is a ELF core", output, StringComparison.Ordinal);
    }
}
