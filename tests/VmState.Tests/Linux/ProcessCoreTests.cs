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
    public void EachThreadOfASleepingProcessGetsTheUserRegistersSavedOnItsKernelStack()
    {
        var linux = new SyntheticLinux();
        LinuxKernel k = KernelLocator.Locate(linux.Machine);
        int[] tids = [100, 101];
        for (int i = 0; i < tids.Length; i++)
        {
            ulong task = linux.Tasks[tids[i]];
            ulong stack = linux.PageOffsetBase + 0x5400000 + ((ulong)i * 0x4000);
            linux.WriteU64(task + SyntheticLinux.TaskStack, stack);
            ulong regs = stack + 0x4000 - SyntheticLinux.PtRegsSize;
            linux.WriteU64(regs + (16 * 8), 0x401000 + (ulong)tids[i]);   // ip
            linux.WriteU64(regs + (17 * 8), 0x33);                        // cs
            linux.WriteU64(regs + (19 * 8), 0x7ffd0000 + (ulong)tids[i]); // sp
            linux.WriteU64(regs + (20 * 8), 0x2b);                        // ss
            linux.WriteU64(task + SyntheticLinux.TaskThread + SyntheticLinux.ThreadFsbase, 0x7f0000000000 + (ulong)tids[i]);
        }

        string core = Path.Combine(_dir, "worker.core");
        ProcessCoreSummary summary = ProcessCore.Write(k, 101, core);

        // The thread asked for comes first (gdb's current thread), then the rest of the group; both from pt_regs.
        Assert.Equal(100, summary.Pid);
        Assert.Equal([101, 100], summary.Threads.Select(t => t.Tid));
        Assert.All(summary.Threads, t => Assert.Contains("THREAD_SIZE 16 KiB", t.RegisterSource, StringComparison.Ordinal));
        List<ElfNote> prstatus = [.. Notes(File.ReadAllBytes(core)).Where(n => n.Type == ElfNote.NtPrstatus)];
        Assert.Equal([101, 100], prstatus.Select(n => BinaryPrimitives.ReadInt32LittleEndian(n.Descriptor.AsSpan(X86CoreNotes.PrstatusPidOffset))));
        foreach (ElfNote n in prstatus)
        {
            int tid = BinaryPrimitives.ReadInt32LittleEndian(n.Descriptor.AsSpan(X86CoreNotes.PrstatusPidOffset));
            ulong Reg(int index) => BinaryPrimitives.ReadUInt64LittleEndian(n.Descriptor.AsSpan(X86CoreNotes.PrstatusRegsOffset + (8 * index)));
            Assert.Equal(0x401000UL + (ulong)tid, Reg(16));
            Assert.Equal(0x7ffd0000UL + (ulong)tid, Reg(19));
            Assert.Equal(0x7f0000000000UL + (ulong)tid, Reg(21)); // fs_base from thread.fsbase
        }

        // A stack whose top holds no user frame (cs is not __USER_CS) is refused by name, not dumped with junk.
        linux.WriteU64(linux.PageOffsetBase + 0x5400000 + 0x4000 - SyntheticLinux.PtRegsSize + (17 * 8), 0x10);
        KernelDataException e = Assert.Throws<KernelDataException>(() => ProcessCore.Write(k, 100, Path.Combine(_dir, "bad.core")));
        Assert.Contains("no saved user pt_regs", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir, "bad.core")));
    }

    private static List<ElfNote> Notes(byte[] file)
    {
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(56));
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> ph = file.AsSpan(64 + (56 * i), 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) == 4)
            {
                long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
                return ElfNote.DecodeAll(file.AsSpan((int)offset, (int)BinaryPrimitives.ReadUInt64LittleEndian(ph[32..])), offset);
            }
        }

        return [];
    }

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
    [Fact]
    public void AProcessWithMoreThan65534VmasGetsPnXnumNumbering()
    {
        // 65,533 one-page VMAs (every other one VM_DONTDUMP), then the mapped stack page: 65,535 program headers, the
        // first count e_phnum cannot hold (before: refused as "needs PN_XNUM, which is not written").
        var linux = new SyntheticLinux();
        MachineState machine = linux.Machine;
        (LinuxKernel k, ulong mm, ulong[] vmas) = MemoryMapsTests.WithVmas(linux, machine);
        const int Count = 65_533;
        ulong first = linux.PageOffsetBase + 0x6800000;
        for (int i = 0; i < Count; i++)
        {
            ulong vma = first + ((ulong)i * 0x80);
            ulong start = 0x10000000 + ((ulong)i * 0x2000);
            linux.WriteU64(vma + MemoryMapsTests.VmaStart, start);
            linux.WriteU64(vma + MemoryMapsTests.VmaEnd, start + 0x1000);
            linux.WriteU64(vma + MemoryMapsTests.VmaFlags, i % 2 == 0 ? 0x3UL : 0x0400_0003UL);
            linux.WriteU64(vma + MemoryMapsTests.VmaNext, i + 1 < Count ? vma + 0x80 : vmas[^1]);
        }

        linux.WriteU64(mm + SyntheticLinux.MmMmap, first);
        linux.WriteU32(mm + SyntheticLinux.MmMapCount, (uint)Count + 1);
        X86CpuState cpu = machine.Cpus[1];
        cpu.Segments[X86CpuState.Cs] = new X86Segment(0x33, 0, 0xffffffff, 0xa0fb00);
        cpu.Segments[X86CpuState.Ss] = new X86Segment(0x2b, 0, 0xffffffff, 0xc0f300);
        string core = Path.Combine(_dir, "many.core");
        ProcessCoreSummary summary = ProcessCore.Write(k, 1, core);

        Assert.Equal(Count + 1, summary.Segments);
        Assert.Equal((1L, (Count / 2) + 1L), (summary.PagesWritten, summary.PagesMissing));
        byte[] file = new byte[128 + (56 * (Count + 2))];
        using (FileStream f = File.OpenRead(core))
        {
            f.ReadExactly(file);
        }

        Assert.Equal(0xffff, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(56)));          // e_phnum = PN_XNUM
        Assert.Equal(64UL, BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(40)));            // e_shoff
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(60)));              // e_shnum
        Assert.Equal((uint)Count + 2, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(64 + 44))); // sh_info
        Assert.Equal(128UL, BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(32)));           // e_phoff
        (ulong Vaddr, ulong FileSize, ulong MemSize) Load(int index)
        {
            ReadOnlySpan<byte> ph = file.AsSpan(128 + (56 * index), 56);
            Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(ph));
            return (BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]), BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]), BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]));
        }

        Assert.Equal((0x10000000UL, 0x1000UL, 0x1000UL), Load(1));
        Assert.Equal((0x10000000UL + ((Count - 1) * 0x2000UL), 0x1000UL, 0x1000UL), Load(Count));
        Assert.Equal((0x10000000UL + ((Count - 2) * 0x2000UL), 0UL, 0x1000UL), Load(Count - 1)); // VM_DONTDUMP: no file bytes
        (ulong stackVaddr, ulong stackSize, _) = Load(Count + 1);
        Assert.Equal((0x7ffd0000UL, 0x1000UL), (stackVaddr, stackSize));
        long stackOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(128 + (56 * (Count + 1)) + 8));
        byte[] expected = new byte[4096];
        machine.Memory.Read(0x5000000, expected);
        byte[] got = new byte[4096];
        using (FileStream f = File.OpenRead(core))
        {
            f.Position = stackOffset;
            f.ReadExactly(got);
            Assert.Equal(stackOffset + 4096, f.Length);
        }

        Assert.Equal(expected, got);
    }
}
