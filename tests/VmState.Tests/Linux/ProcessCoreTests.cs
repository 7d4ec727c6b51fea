using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Tests.Linux;

/// <summary>
/// procdump on the synthetic kernel, for what the fixture guest cannot show: a process running in user mode on a
/// vCPU at snapshot time (its registers come from the vCPU, not from a stale pt_regs), its auxv, and holes.
/// </summary>
public sealed class ProcessCoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-procdump-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void AProcessRunningInUserModeTakesItsRegistersFromTheVcpu()
    {
        var linux = new SyntheticLinux();
        MachineState machine = linux.Machine;
        (LinuxKernel k, ulong mm, _) = MemoryMapsTests.WithVmas(linux, machine);

        // Task 1 is current_task on CPU 1 (SyntheticLinux); put that vCPU in user mode at a known RIP/RSP.
        X86CpuState cpu = machine.Cpus[1];
        cpu.Segments[X86CpuState.Cs] = new X86Segment(0x33, 0, 0xffffffff, 0xa0fb00);
        cpu.Segments[X86CpuState.Ss] = new X86Segment(0x2b, 0, 0xffffffff, 0xc0f300);
        cpu.Rip = 0x401234;
        cpu.Regs[4] = 0x7ffd0ff0;
        cpu.Regs[0] = 0xabcdef;

        // auxv: AT_PAGESZ 4096, AT_ENTRY 0x401000, AT_NULL, then junk that must not be copied.
        ulong[] auxv = [6, 4096, 9, 0x401000, 0, 0, 0x1111, 0x2222];
        for (int i = 0; i < auxv.Length; i++)
        {
            linux.WriteU64(mm + SyntheticLinux.MmSavedAuxv + (8 * (ulong)i), auxv[i]);
        }

        string core = Path.Combine(_dir, "init.core");
        ProcessCoreSummary summary = ProcessCore.Write(k, 1, core);

        Assert.Equal("vCPU 1 (running in user mode)", Assert.Single(summary.Threads).RegisterSource);
        Assert.Equal(3, summary.Segments);
        byte[] file = File.ReadAllBytes(core);
        Assert.Equal(4, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(16))); // ET_CORE
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(56));
        var loads = new List<(ulong Vaddr, long Offset, long FileSize, ulong MemSize, uint Flags)>();
        List<ElfNote> notes = [];
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = file.AsSpan(64 + (56 * i), 56);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(ph);
            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
            long filesz = (long)BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
            if (type == 4)
            {
                notes = ElfNote.DecodeAll(file.AsSpan((int)offset, (int)filesz), offset);
            }
            else if (type == 1)
            {
                loads.Add((BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]), offset, filesz, BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]), BinaryPrimitives.ReadUInt32LittleEndian(ph[4..])));
            }
        }

        // NT_PRSTATUS: pid 1, then user_regs_struct with rax, rip, cs, rsp, ss from the vCPU.
        ElfNote prstatus = Assert.Single(notes, n => n.Type == ElfNote.NtPrstatus);
        Assert.Equal(1, BinaryPrimitives.ReadInt32LittleEndian(prstatus.Descriptor.AsSpan(X86CoreNotes.PrstatusPidOffset)));
        ulong Reg(int index) => BinaryPrimitives.ReadUInt64LittleEndian(prstatus.Descriptor.AsSpan(X86CoreNotes.PrstatusRegsOffset + (8 * index)));
        Assert.Equal(0xabcdefUL, Reg(10));
        Assert.Equal(0x401234UL, Reg(16));
        Assert.Equal(0x33UL, Reg(17));
        Assert.Equal(0x7ffd0ff0UL, Reg(19));
        Assert.Equal(0x2bUL, Reg(20));

        // NT_AUXV stops after AT_NULL; NT_PRPSINFO names the process; NT_FILE lists no file (all anonymous).
        Assert.Equal(auxv[..6].SelectMany(BitConverter.GetBytes), Assert.Single(notes, n => n.Type == 6).Descriptor);
        Assert.Equal("init", System.Text.Encoding.ASCII.GetString(Assert.Single(notes, n => n.Type == 3).Descriptor, 40, 4));
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(Assert.Single(notes, n => n.Type == 0x46494c45).Descriptor));

        // The stack VMA (0x7ffd0000, mapped to the user page) carries its bytes; the unmapped r-x VMA is a hole.
        byte[] expected = new byte[4096];
        machine.Memory.Read(0x5000000, expected);
        var stack = loads.Single(l => l.Vaddr == 0x7ffd0000);
        Assert.Equal(expected, file.AsSpan((int)stack.Offset, 4096).ToArray());
        Assert.Equal(6u, stack.Flags); // R + W
        var text = loads.Single(l => l.Vaddr == 0x400000);
        Assert.Equal(5u, text.Flags); // R + X
        Assert.All(file.AsSpan((int)text.Offset, (int)text.FileSize).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal((1L, 34L), (summary.PagesWritten, summary.PagesMissing)); // 1 + 33 + 1 pages; only the stack page is mapped
    }
}
